"""The output stage: paces frames into the sink so the virtual camera never starves (apps show a frozen or
black picture, or drop the device, when a v4l2loopback writer stops)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vcam.config import OutputSettings, Settings
from vcam.errors import VcamError
from vcam.frames import i420
from vcam.live.camera_gate import CameraGate
from vcam.live.placeholder import placeholder_i420
from vcam.live.sinks import Sink, open_sink
from vcam.live.slot import Frame, OneSlot
from vcam.live.state import LiveStateHolder
from vcam.live.stats import FailureLog, StageStats

log = logging.getLogger(__name__)

HOLD_S = 1.0  # repeat the last good frame this long after the camera stops, then the placeholder


class OutputStage:
    """The output pacer: sends each new frame as soon as it is ready, repeats the last one when none
    arrives in time, and sends a cached placeholder at idle_fps when there is no live picture.

    Inputs: out_slot, composited I420 frames from the compositor; gate.wanted / gate.released_at, whether the
    camera is wanted and since when frames are stale; holder, the paused flag (which placeholder).
    Outputs: the sink: a frame at least every 1.5/fps while live, the last frame repeated for HOLD_S after
    the camera stops, then the placeholder ("paused", "unavailable" or "idle") at [daemon] idle_fps; never a
    frame captured before the latest release. stats ("send", "latency" ms, send times) and frames_sent.
    Options: settings() ([output] fps, [daemon] idle_fps, read per frame); uncapped (`vcam bench`: every
    new frame sent at once, no fps cap); sink_options (keyword arguments for the sink).
    """

    def __init__(self, out_slot: OneSlot[np.ndarray], gate: CameraGate, holder: LiveStateHolder,
                 settings: Callable[[], Settings], stop: threading.Event, stats: StageStats,
                 failures: FailureLog, *, uncapped: bool = False,
                 sink_options: dict[str, Any] | None = None) -> None:
        self._slot = out_slot
        self._gate = gate
        self._holder = holder
        self._settings = settings
        self._stop = stop
        self.stats = stats
        self._failures = failures
        self._uncapped = uncapped
        self._sink_options = sink_options or {}
        # between this thread's send and a reload's reopen or a stop's close
        self._sink_lock = threading.Lock()
        self._sink: Sink | None = None
        self.size = (0, 0)  # the sink's frame size, what the segmenter scales to
        self.frames_sent = 0

    @property
    def sink(self) -> Sink | None:
        return self._sink

    def open(self, settings: OutputSettings, size: tuple[int, int]) -> None:
        """Open the sink (OutputError says why it cannot)."""
        self.size = size
        self._sink = open_sink(settings, size, **self._sink_options)

    def reopen(self, new: OutputSettings, size: tuple[int, int], old: OutputSettings) -> None:
        """Open `new`'s sink in place of the current one; on failure reopen `old`'s and raise."""
        with self._sink_lock:
            # Close first: the same v4l2loopback device cannot be opened twice by one process.
            if self._sink is not None:
                self._sink.close()
                self._sink = None
            try:
                sink = open_sink(new, size, **self._sink_options)
            except Exception as e:  # every failure: a reload must never leave the output closed
                try:
                    self._sink = open_sink(old, self.size, **self._sink_options)
                except Exception:
                    log.exception("could not reopen the previous output after a refused reload")
                if isinstance(e, VcamError):
                    raise
                raise VcamError(f"[output] not applied: {type(e).__name__}: {e}") from None
            self._sink, self.size = sink, size

    def close_sink(self) -> None:
        with self._sink_lock:
            if self._sink is not None:
                try:
                    self._sink.close()
                except Exception:
                    log.exception("closing the output failed")
                self._sink = None

    def _send(self, frame: np.ndarray) -> bool:
        with self._sink_lock:
            sink = self._sink
            if sink is None or i420.size(frame) != tuple(sink.size):
                return False
            t0 = time.perf_counter()
            try:
                sink.send(frame)
            except Exception:
                self._failures.exception(log, "sending a frame failed")
                return False
            t1 = time.perf_counter()
        self.stats.ms["send"].append((t1 - t0) * 1e3)
        self.stats.sends.append(t1)
        self.frames_sent += 1
        return True

    def _fresh(self, last: Frame[np.ndarray] | None, wanted: bool) -> Frame[np.ndarray] | None:
        """`last` if it may still be repeated, else None: never show a stale picture after a release."""
        if last is not None and (not wanted or last.t_capture < self._gate.released_at):
            self._slot.recycle(last.image)
            return None
        return last

    def run(self) -> None:
        """The thread: until stop, send frames, repeats or placeholders; then close the sink."""
        last: Frame[np.ndarray] | None = None
        last_send = 0.0
        while not self._stop.is_set():
            s = self._settings()
            fps = float(s.output.fps)
            idle_interval = 1.0 / s.daemon.idle_fps
            wanted = self._gate.wanted
            last = self._fresh(last, wanted)
            now = time.perf_counter()
            recent = last is not None and now - last.t_capture < HOLD_S + 1.0 / fps
            if wanted and recent:
                timeout = max(0.0, last_send + 1.5 / fps - now)
            else:
                timeout = max(0.0, last_send + idle_interval - now)
            item = self._slot.take(timeout)
            if self._stop.is_set():
                break
            now = time.perf_counter()
            wanted = self._gate.wanted  # again: a pause during the wait applies to this frame already
            last = self._fresh(last, wanted)
            if item is not None and wanted and item.t_capture >= self._gate.released_at:
                if not self._uncapped:
                    gap = last_send + 0.75 / fps - now  # cap the rate without adding a frame of latency
                    if gap > 0:
                        time.sleep(gap)
                if self._send(item.image):
                    self.stats.ms["latency"].append((time.perf_counter() - item.t_capture) * 1e3)
                    last_send = time.perf_counter()
                if last is not None:
                    self._slot.recycle(last.image)
                last = item
                continue
            if item is not None:  # arrived after we let the camera go, or captured before: drop it
                self._slot.recycle(item.image)
            if wanted and last is not None and now - last.t_capture < HOLD_S:
                if now - last_send >= 1.5 / fps - 1e-3:
                    self._send(last.image)  # repeat: the device must not starve
                    last_send = time.perf_counter()
                continue
            if now - last_send >= idle_interval - 1e-3:
                self._send(self._placeholder(wanted))
                last_send = time.perf_counter()
        self.close_sink()  # from this thread: GUI sinks must be closed by the thread that drew them

    def _placeholder(self, wanted: bool) -> np.ndarray:
        capture = self._gate.capture
        if self._holder.get().paused:
            kind = "paused"
        elif wanted and capture is not None and capture.state == "unavailable":
            kind = "unavailable"
        else:
            kind = "idle"
        return placeholder_i420(kind, tuple(self.size))
