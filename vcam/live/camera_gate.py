"""When the camera is wanted: not paused (privacy) and, in on-demand mode, read by some application.
Decided outside the frame path so a pause releases the webcam at once, whatever the stages are doing."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vcam.config import Settings
from vcam.live.capture import CaptureThread
from vcam.live.ondemand import ReaderMonitor, monitored_device
from vcam.live.state import LiveStateHolder

log = logging.getLogger(__name__)


class CameraGate:
    """Opens and closes the camera: sets the capture thread's wanted flag from the LiveState's paused flag
    and the reader monitor's active flag.

    Policy: each change of paused or of the readers is decided again, under one lock, in the thread that made
    it, and applied at once with CaptureThread.set_wanted() (an Event set or clear), so it never waits
    behind a frame; the output stage only reads `wanted` and `released_at` to pick frames or placeholders.
    """

    def __init__(self, holder: LiveStateHolder, wake: Callable[[], None]) -> None:
        """`wake` is called after every change (the output stage's slot wake, so a pause shows at once)."""
        self._holder = holder
        self._wake = wake
        self._lock = threading.Lock()  # one decision at a time, so a late one never undoes a pause
        self._capture: CaptureThread | None = None
        self._monitor: ReaderMonitor | None = None
        self.wanted = not holder.get().paused
        self.released_at = 0.0  # perf_counter of the latest release: frames captured before are stale
        holder.subscribe(lambda _state: self.update())

    @property
    def capture(self) -> CaptureThread | None:
        """The capture thread the gate drives (the latest one started)."""
        return self._capture

    @property
    def on_demand(self) -> str:
        """For status(): "off", or whether the virtual camera has readers ("active") or not ("idle")."""
        monitor = self._monitor  # read once: sync() may set it to None meanwhile
        if monitor is None:
            return "off"
        return "active" if monitor.active else "idle"

    def update(self) -> None:
        """Decide again and apply it to the capture thread; called on every change of an input."""
        with self._lock:
            self._apply()
        self._wake()

    def _apply(self) -> None:
        monitor = self._monitor
        wanted = not self._holder.get().paused and (monitor is None or monitor.active)
        if not wanted and self.wanted:
            # before `wanted`: the output reads them in the other order
            self.released_at = time.perf_counter()
        self.wanted = wanted
        if self._capture is not None:
            self._capture.set_wanted(wanted)

    def start_capture(self, capture: CaptureThread) -> None:
        """Drive `capture` (not started yet) from now on, and start it wanted or not as decided now."""
        with self._lock:
            self._capture = capture
            self._apply()
        capture.start(wanted=None)  # keeps what _apply() set, or what a change since then set

    def sync(self, settings: Settings) -> None:
        """Watch the readers of the device `settings` make on-demand (none: on-demand off), then decide."""
        device = monitored_device(settings)
        monitor = self._monitor
        if monitor is not None and monitor.device != device:
            self._monitor = None
            monitor.stop()
        if device is not None and self._monitor is None:
            monitor = ReaderMonitor(device, on_change=lambda _active: self.update())
            monitor.start()  # may call update() already: it decides with the monitor not yet in place
            self._monitor = monitor
        self.update()

    def stop(self) -> None:
        """Stop watching readers (the capture thread is the pipeline's to stop)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
