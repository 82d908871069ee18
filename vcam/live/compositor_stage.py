"""The compositor stage: the effect and the mirror on its own thread, so compositing frame n overlaps the
segmentation of frame n+1."""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from vcam.compositing.compositor_i420 import I420Compositor
from vcam.compositing.effects import EFFECTS
from vcam.frames import i420
from vcam.live.segmenter_stage import MattedFrame
from vcam.live.slot import OneSlot
from vcam.live.stats import FailureLog, StageStats

log = logging.getLogger(__name__)


class CompositorStage:
    """Compositing: (frame, Matte, state) -> the output frame, mirrored if asked.

    Inputs: matte_slot, MattedFrame items from the segmenter, each with the LiveState it is to be composited
    with (its look and mirror).
    Outputs: out_slot, I420 frames at the output size (buffers recycled through the slot); the camera's
    buffer a MattedFrame item carried goes back to camera_slot.
    Options: none of its own: everything comes with the item's state; stats ("composite" ms) and
    frames_processed (the frames composited).
    """

    def __init__(self, matte_slot: OneSlot[MattedFrame], out_slot: OneSlot[np.ndarray],
                 camera_slot: OneSlot[np.ndarray], stop: threading.Event, stats: StageStats,
                 failures: FailureLog) -> None:
        self._matte_slot = matte_slot
        self._out_slot = out_slot
        self._cam_slot = camera_slot
        self._stop = stop
        self.stats = stats
        self._failures = failures
        self._compositor = I420Compositor()
        self.frames_processed = 0  # camera frames composited

    def _log_failure(self, what: str) -> None:
        self._failures.exception(log, what)

    def run(self) -> None:
        """The thread: until stop, composite the newest MattedFrame item into an output frame."""
        done: MattedFrame | None = None
        out_buf: np.ndarray | None = None
        while not self._stop.is_set():
            item = self._matte_slot.take(0.2, give_back=done)
            done = None
            if item is None:
                continue
            matted: MattedFrame = item.image
            done = matted
            look, state = matted.state.look, matted.state
            try:
                t0 = time.perf_counter()
                if out_buf is None or out_buf.shape != matted.frame.shape:
                    out_buf = np.empty_like(matted.frame)
                # straight into the output buffer unless it still has to be mirrored; even "none" is a copy,
                # from the camera's range to the output's (vcam/frames/i420.py)
                needs_matte = EFFECTS[look.effect].needs_matte
                out = self._compositor.composite(matted.frame, matted.matte if needs_matte else None, look,
                                                 None if state.mirror else out_buf, item.t_capture)
                if state.mirror:
                    i420.flip(out, out_buf)
                if needs_matte:
                    self.stats.ms["composite"].append((time.perf_counter() - t0) * 1e3)
                out_buf = self._out_slot.put(out_buf, item.t_capture)
                self.frames_processed += 1
            except Exception:  # a bad background must never stop the camera
                self._log_failure("frame failed; keeping the last good frame")
            finally:
                matted.return_camera_buffer(self._cam_slot)
