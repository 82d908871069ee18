"""The live pipeline, wired in one place: capture -> segmentation -> compositing -> output threads.

    CaptureThread --OneSlot--> segmenter (resize to output size, model, matte)
                  --OneSlot--> compositor (effect, mirror) --OneSlot--> output
Every handoff keeps only the newest item, so a slow stage drops frames instead of adding latency.
Frames are I420 from the camera to the virtual camera (vcam/i420.py): nothing converts them on the way.
Segmentation of frame n+1 runs while frame n is composited, on the other core: the model and OpenCV
release the GIL (pyvirtualcam's send does not, but it is short), which lifts uncapped 720p from about
77 to ~100 fps on two cores without adding latency. The output sends a new frame as soon as it is ready and repeats the last
one when none arrives in time, so the virtual camera never starves (apps show a frozen or black
picture, or drop the device, when a v4l2loopback writer stops). Without a live picture (paused,
on-demand idle, camera unavailable for more than HOLD_S) it sends a cached placeholder at idle_fps.

The segmenter reads `holder.get()` once per frame and the state travels with the frame to the
compositor, so look, mirror and pause changes apply between frames, never to half of one.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque

import cv2
import numpy as np

from vcam.frames import i420
from vcam.live.capture import STOP_WAIT_S, CameraSource, CaptureThread, Frame, OneSlot
from vcam.config import Settings
from vcam.compositing.compositor_i420 import I420Compositor
from vcam.compositing.effects import EFFECTS
from vcam.errors import VcamError
from vcam.live.state import LiveState, LiveStateHolder
from vcam.live.ondemand import ReaderMonitor
from vcam.live.sinks import OutputError, Sink, open_sink, output_size
from vcam.live.placeholder import placeholder_i420
from vcam.matting.matte import Matte
from vcam.matting.matting import Matting

log = logging.getLogger(__name__)

HOLD_S = 1.0  # repeat the last good frame this long after the camera stops, then the placeholder


def _kept(buffer: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    """A copy of `image` in `buffer` (a new buffer if it has another shape)."""
    if buffer is None or buffer.shape != image.shape:
        buffer = np.empty_like(image)
    np.copyto(buffer, image)
    return buffer


@dataclasses.dataclass
class MattedFrame:
    """A frame at output size (I420, vcam/frames/i420.py), its Matte and the LiveState it is to be
    composited with: what the segmenter thread hands the compositor thread.

    `frame` is the camera's own buffer when the camera delivers the output size (no copy; the
    compositor returns it to the camera slot), else `resized`, this item's buffer. `matte` owns its
    buffers and is refilled for each frame this item carries; it is left as it was (and not composited
    with) when the frame's effect needs no matte.
    """

    resized: np.ndarray
    matte: Matte | None = None
    frame: np.ndarray | None = None
    state: LiveState | None = None

    @property
    def camera_buffer(self) -> bool:
        return self.frame is not None and self.frame is not self.resized

    def return_camera_buffer(self, slot: OneSlot) -> None:
        """Give the camera's buffer back to the camera slot once this item is done with it."""
        if self.camera_buffer:
            slot.recycle(self.frame)
        self.frame = None


class StageStats:
    """Recent per-frame timings (ms) of each stage, for status and `vcam bench`."""

    STAGES = ("resize", "segment", "matte", "composite", "send", "latency")

    def __init__(self, n: int = 600) -> None:
        self.ms = {k: deque(maxlen=n) for k in self.STAGES}
        self.sends: deque[float] = deque(maxlen=120)

    def reset(self) -> None:
        for d in self.ms.values():
            d.clear()
        self.sends.clear()

    def percentile(self, stage: str, q: float) -> float | None:
        values = list(self.ms[stage])
        return round(float(np.percentile(values, q)), 2) if values else None

    def send_fps(self, window: float = 2.0) -> float:
        now = time.perf_counter()
        recent = [t for t in list(self.sends) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])


class Pipeline:
    """The live daemon's frame path. start()/stop()/status()/reconfigure(); see the module docstring."""

    def __init__(self, settings: Settings, holder: LiveStateHolder, *, pace_source: bool = True,
                 uncapped: bool = False, sink_options: dict | None = None) -> None:
        self.settings = settings
        self.holder = holder
        self.stats = StageStats()
        self.frames_sent = 0
        self.frames_processed = 0  # camera frames the worker composited
        self._pace_source = pace_source  # False (bench): read files as fast as they decode
        self._uncapped = uncapped  # True (bench): send every new frame, no fps cap
        self._sink_options = sink_options or {}
        self._stop = threading.Event()
        self._sink_lock = threading.Lock()
        self._cam_slot = OneSlot()
        self._matte_slot = OneSlot()  # carries MattedFrame items: frame + matte + the state they were made for
        self._out_slot = OneSlot()
        self._compositor = I420Compositor()
        self._engine: Matting | None = None
        self._pending_engine: Matting | None = None
        self._engine_lock = threading.Lock()  # guards _pending_engine between reconfigure and the worker
        self._sink: Sink | None = None
        self._capture: CaptureThread | None = None
        self._monitor: ReaderMonitor | None = None
        self._threads: list[threading.Thread] = []
        self._size = (0, 0)
        self._started = False
        self._errors_logged = 0
        holder.subscribe(lambda _state: self._out_slot.wake())

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, open the output (may raise VcamError), start the threads."""
        s = self.settings
        # Our threads already keep both cores busy; OpenCV's own worker threads on top only add
        # synchronisation: measured 61% -> 54% of a core for 720p blur at 30 fps with one thread each.
        cv2.setNumThreads(1)
        self._size = output_size(s.output, self._camera_size_hint(s))  # may refuse the size: before the model
        self._engine = Matting(s, video=True)
        try:
            self._sink = open_sink(s.output, self._size, **self._sink_options)
        except BaseException:
            self._engine.close()
            raise
        self._stop.clear()
        self._start_monitor(s)
        self._capture = CaptureThread(CameraSource(s.camera, pace=self._pace_source, as_i420=True),
                                      self._cam_slot)
        self._capture.start(wanted=self._camera_wanted())
        self._threads = [threading.Thread(target=self._worker_loop, name="vcam-segmenter", daemon=True),
                         threading.Thread(target=self._compositor_loop, name="vcam-compositor", daemon=True),
                         threading.Thread(target=self._output_loop, name="vcam-output", daemon=True)]
        for t in self._threads:
            t.start()
        self._started = True

    def stop(self) -> None:
        """Release the camera, close the output. Idempotent; returns within about half a second."""
        if not self._started:
            return
        self._started = False
        self._stop.set()
        self._cam_slot.wake()
        self._matte_slot.wake()
        self._out_slot.wake()
        if self._capture is not None:
            self._capture.stop(timeout=0.3)
        for t in self._threads:
            t.join(0.2)
        alive = any(t.is_alive() for t in self._threads)
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        self._close_sink()  # normally already done by the output thread
        if not alive:  # never close MediaPipe under a worker still inside it
            for engine in (self._engine, self._pending_engine):
                if engine is not None:
                    engine.close()
        self._engine = self._pending_engine = None

    def __enter__(self) -> "Pipeline":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def _camera_size_hint(s: Settings) -> tuple[int, int]:
        """The frame size we expect, for [output] width/height = 0 before the camera is open."""
        source = CameraSource(s.camera)
        if source.is_file:
            try:
                source.open()
                return source.size or (s.camera.width, s.camera.height)
            except VcamError:
                pass
            finally:
                source.close()
        return s.camera.width, s.camera.height

    def _start_monitor(self, s: Settings) -> None:
        if s.daemon.on_demand and s.output.sink == "virtualcam":
            self._monitor = ReaderMonitor(s.output.device, on_change=lambda _active: self._out_slot.wake())
            self._monitor.start()

    def _sync_monitor(self, s: Settings) -> None:
        """Reader detection runs only for an on-demand virtual camera, watching the configured device."""
        wanted = s.daemon.on_demand and s.output.sink == "virtualcam"
        if self._monitor is not None and (not wanted or self._monitor.device != s.output.device):
            self._monitor.stop()
            self._monitor = None
        if wanted and self._monitor is None:
            self._start_monitor(s)

    def _idle(self) -> bool:
        monitor = self._monitor  # read once: reconfigure() may set it to None meanwhile
        return monitor is not None and not monitor.active

    def dead_threads(self) -> list[str]:
        """Pipeline threads that have ended while the pipeline runs. Their loops catch every error, so
        this is a last guard: the daemon stops its watchdog pings and systemd restarts vcam."""
        if not self._started:
            return []
        dead = [t.name for t in self._threads if not t.is_alive()]
        if self._capture is not None and self._capture.died:
            dead.append("vcam-capture")
        return dead

    def _camera_wanted(self) -> bool:
        return not self.holder.get().paused and not self._idle()

    # -- status -------------------------------------------------------------------------------------------
    def status(self) -> dict:
        state = self.holder.get()
        bg = state.look.background
        return {
            "effect": state.look.effect,
            "background": bg.label if bg is not None else None,
            "fps": round(self.stats.send_fps(), 1),
            "latency_ms_p50": self.stats.percentile("latency", 50),
            "latency_ms_p95": self.stats.percentile("latency", 95),
            "camera": self._capture.state if self._capture is not None else "released",
            "camera_error": self._capture.last_error if self._capture is not None else "",
            "on_demand": "off" if self._monitor is None else ("active" if self._monitor.active else "idle"),
            "paused": state.paused,
            "frames_sent": self.frames_sent,
            "dead_threads": self.dead_threads(),
            "frames_dropped": self._cam_slot.dropped + self._matte_slot.dropped + self._out_slot.dropped,
            "mirror": state.mirror,
            "sink": self.settings.output.sink,
            "size": list(self._size),
        }

    # -- reload -------------------------------------------------------------------------------------------
    def reconfigure(self, settings: Settings) -> None:
        """Apply reloaded settings, restarting only the stages whose section changed.

        All or nothing: on failure every stage keeps (or gets back) its old settings and VcamError is
        raised; a new segmentation engine goes live only once every other stage succeeded. [effect],
        [matte] and [output] mirror are live state, not stages: the caller updates the holder for those
        in one swap with the rest of the change (a mirror change never reopens the output).
        """
        old = self.settings
        if not self._started:
            self.settings = settings
            return
        output_changed = _without_mirror(settings.output) != _without_mirror(old.output)
        camera_changed = settings.camera != old.camera
        engine = Matting(settings, video=True) if settings.segmentation != old.segmentation else None
        try:
            if output_changed:
                self._reopen_output(settings, old)
            if camera_changed:
                try:
                    self._reopen_camera(settings)
                except VcamError:
                    if output_changed:  # back to the old output too: nothing of this reload stays applied
                        try:
                            self._reopen_output(old, settings)
                        except VcamError as e:
                            log.error("could not reopen the previous output after a refused reload: %s", e)
                    raise
        except BaseException:
            if engine is not None:
                engine.close()
            raise
        if engine is not None:  # the worker swaps it in between frames
            with self._engine_lock:
                unused, self._pending_engine = self._pending_engine, engine
            if unused is not None:  # an earlier reload's, never swapped in (paused or idle meanwhile)
                unused.close()
        self._sync_monitor(settings)
        self.settings = settings
        self._out_slot.wake()

    def _reopen_output(self, new: Settings, old: Settings) -> None:
        """Open `new`'s output in place of the current one; on failure reopen `old`'s and raise."""
        size = output_size(new.output, self._camera_size_hint(new))
        with self._sink_lock:
            # Close first: the same v4l2loopback device cannot be opened twice by one process.
            if self._sink is not None:
                self._sink.close()
                self._sink = None
            try:
                sink = open_sink(new.output, size, **self._sink_options)
            except VcamError:
                self._sink = open_sink(old.output, self._size, **self._sink_options)
                raise
            self._sink, self._size = sink, size

    def _reopen_camera(self, new: Settings) -> None:
        source = CameraSource(new.camera, pace=self._pace_source, as_i420=True)
        wanted = self._camera_wanted()
        old_capture = self._capture
        # The old camera must be closed before the same device is reopened: wait out a read in progress.
        closed = old_capture.stop(timeout=STOP_WAIT_S)
        if wanted:
            try:
                source.open()  # validate now so a bad [camera] section is reported, not retried forever
            except VcamError as e:
                # A fresh thread on the old source (the old thread, if still inside a read, closes its own
                # when the read returns; until then the new one retries as "unavailable").
                old_source = CameraSource(old_capture.source.settings, pace=self._pace_source, as_i420=True)
                self._capture = CaptureThread(old_source, self._cam_slot)
                self._capture.start(wanted=self._camera_wanted())
                busy = "" if closed else " (the old camera was still busy in a read)"
                raise VcamError(f"[camera] not applied, keeping {old_capture.source.label}: {e}{busy}") from None
        self._capture = CaptureThread(source, self._cam_slot)
        self._capture.start(wanted=self._camera_wanted())

    # -- threads ------------------------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        """Segmentation: camera frame -> (frame at output size, its Matte, state) for the compositor."""
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
                    matted.matte = self._engine.run(matted.frame, int(item.t_capture * 1000), state.look.matte,
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

    def _compositor_loop(self) -> None:
        """Compositing: (frame, matte, state) -> the output frame, mirrored if asked."""
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
                # from the camera's range to the output's (vcam/i420.py)
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

    def _log_failure(self, what: str) -> None:
        """Log the current exception: the first five, then every hundredth, so a bad stream can't flood."""
        self._errors_logged += 1
        if self._errors_logged <= 5 or self._errors_logged % 100 == 0:
            log.exception("%s (%d failures so far)", what, self._errors_logged)

    def _send(self, frame: np.ndarray) -> bool:
        with self._sink_lock:
            sink = self._sink
            if sink is None or i420.size(frame) != tuple(sink.size):
                return False
            t0 = time.perf_counter()
            try:
                sink.send(frame)
            except Exception:
                self._log_failure("sending a frame failed")
                return False
            t1 = time.perf_counter()
        self.stats.ms["send"].append((t1 - t0) * 1e3)
        self.stats.sends.append(t1)
        self.frames_sent += 1
        return True

    def _output_loop(self) -> None:
        last: Frame | None = None
        last_send = 0.0
        while not self._stop.is_set():
            s = self.settings
            fps = float(s.output.fps)
            idle_interval = 1.0 / s.daemon.idle_fps
            wanted = self._camera_wanted()
            if self._capture is not None and self._capture.wanted != wanted:
                self._capture.set_wanted(wanted)
                if not wanted and last is not None:
                    self._out_slot.recycle(last.image)
                    last = None  # never show a stale picture after a release
            now = time.perf_counter()
            recent = last is not None and now - last.t_capture < HOLD_S + 1.0 / fps
            if wanted and recent:
                timeout = max(0.0, last_send + 1.5 / fps - now)
            else:
                timeout = max(0.0, last_send + idle_interval - now)
            item = self._out_slot.take(timeout)
            if self._stop.is_set():
                break
            now = time.perf_counter()
            if item is not None and wanted:
                if not self._uncapped:
                    gap = last_send + 0.75 / fps - now  # cap the rate without adding a frame of latency
                    if gap > 0:
                        time.sleep(gap)
                if self._send(item.image):
                    self.stats.ms["latency"].append((time.perf_counter() - item.t_capture) * 1e3)
                    last_send = time.perf_counter()
                if last is not None:
                    self._out_slot.recycle(last.image)
                last = item
                continue
            if item is not None:  # arrived after we let the camera go: drop it
                self._out_slot.recycle(item.image)
            if wanted and last is not None and now - last.t_capture < HOLD_S:
                if now - last_send >= 1.5 / fps - 1e-3:
                    self._send(last.image)  # repeat: the device must not starve
                    last_send = time.perf_counter()
                continue
            if now - last_send >= idle_interval - 1e-3:
                self._send(self._placeholder(wanted))
                last_send = time.perf_counter()
        self._close_sink()  # from this thread: GUI sinks must be closed by the thread that drew them

    def _close_sink(self) -> None:
        with self._sink_lock:
            if self._sink is not None:
                try:
                    self._sink.close()
                except Exception:
                    log.exception("closing the output failed")
                self._sink = None

    def _placeholder(self, wanted: bool) -> np.ndarray:
        if self.holder.get().paused:
            kind = "paused"
        elif wanted and self._capture is not None and self._capture.state == "unavailable":
            kind = "unavailable"
        else:
            kind = "idle"
        return placeholder_i420(kind, tuple(self._size))


def _without_mirror(output):
    """[output] minus mirror, which is live state: a mirror change alone must not reopen the device."""
    return dataclasses.replace(output, mirror=False)


__all__ = ["Pipeline", "StageStats", "OutputError"]
