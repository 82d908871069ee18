"""The live pipeline, wired in one place, so the frame path and its threads can be read in one screen.

    CaptureThread --camera_slot--> SegmenterStage (resize to output size, model, matte)
                  --matte_slot--> CompositorStage (effect, mirror) --out_slot--> OutputStage (pacer) -> sink
    CameraGate: paused / on-demand readers -> CaptureThread.set_wanted()

Every handoff is a OneSlot (vcam/live/slot.py): a slow stage drops frames instead of adding latency.
Frames are I420 from the camera to the virtual camera (vcam/frames/i420.py): nothing converts them on
the way. The segmenter reads `holder.get()` once per frame and the state travels with the frame to the
compositor, so look, mirror and pause changes apply between frames, never to half of one.
"""
from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from vcam.config import Settings
from vcam.live import reconfigure as _reconfigure
from vcam.live.camera_gate import CameraGate
from vcam.live.capture import CameraSource, CaptureThread, camera_size_hint
from vcam.live.compositor_stage import CompositorStage
from vcam.live.output_stage import HOLD_S, OutputStage
from vcam.live.segmenter_stage import MattedFrame, SegmenterStage
from vcam.live.sinks import OutputError, output_size
from vcam.live.slot import OneSlot
from vcam.live.state import LiveStateHolder
from vcam.live.stats import FailureLog, StageStats
from vcam.matting.matting import Matting


class Pipeline:
    """The live daemon's frame path: start()/stop()/status()/reconfigure(); see the module docstring."""

    def __init__(self, settings: Settings, holder: LiveStateHolder, *, pace_source: bool = True,
                 uncapped: bool = False, sink_options: dict[str, Any] | None = None) -> None:
        """`pace_source` False and `uncapped` True are for `vcam bench`: files read as fast as they decode,
        every new frame sent at once."""
        self.settings = settings
        self.holder = holder
        self.pace_source = pace_source
        self.stats = StageStats()
        self.started = False
        self._stop = threading.Event()
        failures = FailureLog()
        self.camera_slot: OneSlot[np.ndarray] = OneSlot()
        self.matte_slot: OneSlot[MattedFrame] = OneSlot()  # frame + alpha + the state they were made for
        self.out_slot: OneSlot[np.ndarray] = OneSlot()
        self.gate = CameraGate(holder, wake=self.out_slot.wake)
        self.output = OutputStage(self.out_slot, self.gate, holder, lambda: self.settings, self._stop,
                                  self.stats, failures, uncapped=uncapped, sink_options=sink_options)
        self.segmenter = SegmenterStage(self.camera_slot, self.matte_slot, holder, lambda: self.output.size,
                                        self._stop, self.stats, failures)
        self.compositor = CompositorStage(self.matte_slot, self.out_slot, self.camera_slot, self._stop,
                                          self.stats, failures)
        self._threads: list[threading.Thread] = []

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, open the output (may raise VcamError), start the threads."""
        s = self.settings
        cv2.setNumThreads(1)  # our threads keep both cores busy: OpenCV's own would only add synchronisation
        size = output_size(s.output, camera_size_hint(s.camera))  # may refuse the size: before the model
        engine = Matting(s, video=True)
        try:
            self.output.open(s.output, size)
        except BaseException:
            engine.close()
            raise
        self.segmenter.engine = engine
        self._stop.clear()
        self.gate.sync(s)
        self.start_capture(CameraSource(s.camera, pace=self.pace_source, as_i420=True))
        self._threads = [threading.Thread(target=self.segmenter.run, name="vcam-segmenter", daemon=True),
                         threading.Thread(target=self.compositor.run, name="vcam-compositor", daemon=True),
                         threading.Thread(target=self.output.run, name="vcam-output", daemon=True)]
        for t in self._threads:
            t.start()
        self.started = True

    def start_capture(self, source: CameraSource) -> None:
        """A capture thread on `source` into the camera slot, opened or released as the gate decides."""
        self.gate.start_capture(CaptureThread(source, self.camera_slot))

    def stop(self) -> None:
        """Release the camera, close the output. Idempotent; returns within about half a second."""
        if not self.started:
            return
        self.started = False
        self._stop.set()
        for slot in (self.camera_slot, self.matte_slot, self.out_slot):
            slot.wake()
        if self.capture is not None:
            self.capture.stop(timeout=0.3)
        for t in self._threads:
            t.join(0.2)
        alive = any(t.is_alive() for t in self._threads)
        self.gate.stop()
        self.output.close_sink()  # normally already done by the output thread
        if alive:
            self.segmenter.forget_engines()  # never close MediaPipe under a worker still inside it
        else:
            self.segmenter.close_engines()

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reconfigure(self, settings: Settings) -> None:
        """Apply reloaded settings all or nothing (vcam/live/reconfigure.py); VcamError if refused."""
        _reconfigure.reconfigure(self, settings)

    # -- what the daemon, the control paths and `vcam bench` read --------------------------------------------
    @property
    def capture(self) -> CaptureThread | None:
        """The capture thread now running (a [camera] reload replaces it)."""
        return self.gate.capture

    _capture = capture  # `vcam bench` reads its read_ms

    @property
    def frames_sent(self) -> int:
        return self.output.frames_sent

    @property
    def frames_processed(self) -> int:
        """Camera frames the compositor composited."""
        return self.compositor.frames_processed

    def dead_threads(self) -> list[str]:
        """Pipeline threads that have ended while the pipeline runs. Their loops catch every error, so
        this is a last guard: the daemon stops its watchdog pings and systemd restarts vcam."""
        if not self.started:
            return []
        dead = [t.name for t in self._threads if not t.is_alive()]
        capture = self.capture
        if capture is not None and capture.died:  # ended without stop(): a reopen or a pause is no death
            dead.append("vcam-capture")
        return dead

    def status(self) -> dict[str, Any]:
        state = self.holder.get()
        bg = state.look.background
        capture = self.capture
        return {
            "effect": state.look.effect,
            "background": bg.label if bg is not None else None,
            "fps": round(self.stats.send_fps(), 1),
            "latency_ms_p50": self.stats.percentile("latency", 50),
            "latency_ms_p95": self.stats.percentile("latency", 95),
            "camera": capture.state if capture is not None else "released",
            "camera_error": capture.last_error if capture is not None else "",
            "on_demand": self.gate.on_demand,
            "paused": state.paused,
            "frames_sent": self.frames_sent,
            "dead_threads": self.dead_threads(),
            "frames_dropped": self.camera_slot.dropped + self.matte_slot.dropped + self.out_slot.dropped,
            "mirror": state.mirror,
            "sink": self.settings.output.sink,
            "size": list(self.output.size),
        }


__all__ = ["HOLD_S", "MattedFrame", "OutputError", "Pipeline", "StageStats"]
