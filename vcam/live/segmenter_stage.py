"""The segmenter stage: the model and the matte for the newest camera frame, on its own thread so the
segmentation of frame n+1 overlaps the compositing of frame n."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from vcam.compositing.effects import EFFECTS
from vcam.frames import i420
from vcam.live.slot import OneSlot
from vcam.live.state import LiveState, LiveStateHolder
from vcam.live.stats import FailureLog, StageStats
from vcam.matting.matte import Matte
from vcam.matting.matting import Matting

log = logging.getLogger(__name__)


@dataclasses.dataclass
class MattedFrame:
    """A frame at output size (I420, vcam/frames/i420.py), its Matte and the LiveState it is to be
    composited with; recycled between the segmenter and the compositor, buffers and all.

    `frame` is the camera's own buffer when the camera delivers the output size (no copy; the
    compositor returns it to the camera slot), else `resized`, this item's buffer.
    """

    resized: np.ndarray
    matte: Matte | None = None
    frame: np.ndarray | None = None
    state: LiveState | None = None

    @property
    def camera_buffer(self) -> bool:
        return self.frame is not None and self.frame is not self.resized

    def return_camera_buffer(self, slot: OneSlot[np.ndarray]) -> None:
        """Give the camera's buffer back to the camera slot once this item is done with it."""
        if self.camera_buffer:
            slot.recycle(self.frame)
        self.frame = None


class SegmenterStage:
    """Segmentation: camera frame -> (frame at output size, its Matte, state) for the compositor.

    Inputs: camera_slot, I420 frames at the camera's size (CaptureThread); holder, the LiveState, read once
    per frame (a paused state drops the frame).
    Outputs: matte_slot, MattedFrame items (recycled through the slot); the camera's buffer rides along in
    MattedFrame.frame when it is already the output size, and the compositor gives it back.
    Options: size(), the output size, read per frame; the segmentation (Matting), replaced between frames by
    offer_engine() (a reload); stats ("resize", "segment", "matte" ms).
    """

    def __init__(self, camera_slot: OneSlot[np.ndarray], matte_slot: OneSlot[MattedFrame],
                 holder: LiveStateHolder,
                 size: Callable[[], tuple[int, int]], stop: threading.Event, stats: StageStats,
                 failures: FailureLog) -> None:
        self._cam_slot = camera_slot
        self._matte_slot = matte_slot
        self.holder = holder
        self._output_size = size
        self._stop = stop
        self.stats = stats
        self._failures = failures
        self._engine: Matting | None = None
        self._pending_engine: Matting | None = None
        self._engine_lock = threading.Lock()  # guards _pending_engine between offer_engine() and run()

    @property
    def _size(self) -> tuple[int, int]:
        return self._output_size()

    @property
    def engine(self) -> Matting | None:
        """The engine segmenting now."""
        return self._engine

    @engine.setter
    def engine(self, engine: Matting | None) -> None:
        """Set before the thread starts; a running stage takes a new engine through offer_engine()."""
        self._engine = engine

    @property
    def pending_engine(self) -> Matting | None:
        """A reload's engine the thread has not swapped in yet."""
        return self._pending_engine

    def offer_engine(self, engine: Matting) -> None:
        """Have run() swap `engine` in before its next frame; an earlier offer not yet taken is closed."""
        with self._engine_lock:
            unused, self._pending_engine = self._pending_engine, engine
        if unused is not None:  # an earlier reload's, never swapped in (paused or idle meanwhile)
            unused.close()

    def close_engines(self) -> None:
        """Close the engines; only once the thread has ended (never close MediaPipe under it)."""
        for engine in (self._engine, self._pending_engine):
            if engine is not None:
                engine.close()
        self.forget_engines()

    def forget_engines(self) -> None:
        """Drop the engines unclosed (the thread may still be inside one)."""
        self._engine = self._pending_engine = None

    def _log_failure(self, what: str) -> None:
        self._failures.exception(log, what)

    def run(self) -> None:
        """The thread: until stop, take the newest camera frame and publish its MattedFrame item."""
        done: np.ndarray | None = None  # the camera buffer to give back on the next take
        matted: MattedFrame | None = None  # the next item to fill (recycled through the matte slot)
        last_run = 0
        while not self._stop.is_set():
            item = self._cam_slot.take(0.2, give_back=done)
            done = None
            if item is None:
                continue
            done = item.image
            state = self.holder.get()  # once per frame; it travels with the frame
            if state.paused:
                continue
            try:
                if self._pending_engine is not None:
                    with self._engine_lock:
                        new, self._pending_engine = self._pending_engine, None
                    old, self._engine = self._engine, new
                    try:
                        old.close()
                    except Exception:  # the new engine is in place: frames go on
                        log.exception("closing the previous segmentation engine failed")
                if item.run != last_run:  # the camera (re)opened: a cut, don't smooth across it
                    last_run = item.run
                    self._engine.reset()
                t0 = time.perf_counter()
                w, h = self._size
                if matted is None or matted.resized.shape != i420.shape((w, h)):
                    matted = MattedFrame(i420.new((w, h)), Matte.blank((w, h)))
                if i420.size(item.image) == (w, h):
                    matted.frame, done = item.image, None  # travels on; the compositor gives it back
                else:
                    matted.frame = i420.resize(item.image, (w, h), dst=matted.resized)
                t1 = time.perf_counter()
                effect = EFFECTS[state.look.effect]
                if effect.needs_matte:
                    t_ms = int(item.t_capture * 1000)
                    matted.matte = self._engine.run(matted.frame, t_ms, state.look.matte,
                                                    blur=state.look.blur if effect.needs_small else None,
                                                    into=matted.matte)
                    times = self._engine.times
                    self.stats.ms["segment"].append(times.segment)
                    self.stats.ms["matte"].append(times.matte)
                self.stats.ms["resize"].append((t1 - t0) * 1e3)
                matted.state = state
                matted = self._matte_slot.put(matted, item.t_capture)
                if matted is not None:  # dropped before it was composited, or given back
                    matted.return_camera_buffer(self._cam_slot)
            except Exception:  # a bad frame must never stop the camera
                self._log_failure("frame failed; keeping the last good frame")
