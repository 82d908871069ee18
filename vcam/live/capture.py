"""Capture: the camera (or a looped video or image file) read on its own thread into a one-slot handoff.

A thread because a cv2 read blocks for a frame time with the GIL released, so reading overlaps the other
stages; it survives the camera going away: it reports "unavailable" and reopens with backoff.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from vcam.compositing.backgrounds import is_image_path
from vcam.config import CameraSettings
from vcam.errors import VcamError
from vcam.frames import i420, mjpg
from vcam.live.slot import OneSlot

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 3.0
STOP_WAIT_S = 2.5  # longer than a V4L2 read can block (CAP_PROP_READ_TIMEOUT_MSEC 2000)
FILE_CHECK_INTERVAL_S = 0.25  # how often a file source checks it still exists (an "unplug" of a file)
MAX_BAD_FRAMES = 10  # undecodable MJPG frames in a row before the camera counts as failing


class CameraError(VcamError):
    """The camera (or source file) cannot be opened or read; the message names it."""


_runs = itertools.count(1)  # source runs, numbered across all capture threads


def parse_device(source: str) -> str | int:
    """'0' -> 0 (a V4L2 index), anything else unchanged (a path)."""
    return int(source) if source.strip().isdigit() else source


class CameraSource:
    """One camera or file; open()/read()/close(). Files loop and are paced at their native fps.

    `as_i420`: read() gives full-range I420 frames (vcam/frames/i420.py: what the live pipeline works in; odd
    sides cut by a pixel) instead of BGR; MJPG is then decoded straight to planes when libturbojpeg is
    there.
    """

    def __init__(self, settings: CameraSettings, *, pace: bool = True, as_i420: bool = False) -> None:
        self.settings = settings
        self.pace = pace
        self.as_i420 = as_i420
        self._bgr: np.ndarray | None = None  # a BGR frame on its way to I420
        dev = parse_device(settings.source)
        self.device = dev
        path = Path(os.path.expanduser(settings.source)) if isinstance(dev, str) else None
        self.path = path
        self.is_device = isinstance(dev, int) or str(settings.source).startswith("/dev/")
        self.is_image = bool(path) and not self.is_device and is_image_path(path)
        self.is_file = bool(path) and not self.is_device
        self._cap: cv2.VideoCapture | None = None
        self.raw_jpeg = False  # the source hands us JPEG bytes and vcam.frames.mjpg decodes them
        self._decoder = mjpg.MjpgDecoder()
        self._image: np.ndarray | None = None
        self.fps = float(settings.fps)
        self.size: tuple[int, int] | None = None
        self._next_t = 0.0
        self._last_check = 0.0
        self.read_started = 0.0  # when the last read() began, after any pacing sleep

    @property
    def label(self) -> str:
        return str(self.settings.source)

    def open(self) -> None:
        """Open the source or raise CameraError (missing, busy, not a camera/video)."""
        self.close()
        if self.is_image:
            image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
            if image is None:
                raise CameraError(f"{self.path}: cannot read camera source image")
            self._image = i420.from_bgr(image, full_range=True) if self.as_i420 else image
            self.size = (image.shape[1], image.shape[0])
        elif self.is_file:
            if not self.path.is_file():
                raise CameraError(f"{self.path}: camera source file not found")
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # a phone clip's display rotation: the person upright
            if not cap.isOpened():
                cap.release()
                raise CameraError(f"{self.path}: cannot decode camera source video")
            native = cap.get(cv2.CAP_PROP_FPS)
            self.fps = native if 1 <= native <= 240 else float(self.settings.fps)
            self._cap = cap
            # An MJPG clip (what `vcam bench` and webcam recordings use): demux only, decode in
            # vcam.frames.mjpg.
            self.raw_jpeg = (mjpg.is_jpeg_fourcc(cap.get(cv2.CAP_PROP_FOURCC))
                             and cap.set(cv2.CAP_PROP_FORMAT, -1))
            self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            self._decoder = mjpg.MjpgDecoder(self.size)
        else:
            self._open_device()
        self._next_t = time.perf_counter()
        self._last_check = self._next_t

    def _open_device(self) -> None:
        s = self.settings
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            node = f"/dev/video{self.device}" if isinstance(self.device, int) else self.device
            exists = os.path.exists(node)
            why = "busy or not a camera" if exists else "no such device (unplugged?)"
            raise CameraError(f"camera {self.label}: cannot open ({why})")
        # Order matters for many UVC drivers: pixel format first, then size, then rate.
        if s.mjpg:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        cap.set(cv2.CAP_PROP_FPS, s.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: we want the newest frame
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2000)  # a wedged camera must not hang the thread
        ok, _ = cap.read()
        if not ok:  # opened but no frames: typically busy in another application
            cap.release()
            raise CameraError(f"camera {self.label}: opened but delivers no frames (in use by another app?)")
        fourcc = cap.get(cv2.CAP_PROP_FOURCC)
        granted = mjpg.fourcc_text(fourcc) or "?"
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS) or float(s.fps)
        self.raw_jpeg = mjpg.is_jpeg_fourcc(fourcc) and self._raw_jpeg_works(cap, (w, h))
        log.info("camera %s: asked %dx%d@%d%s, granted %dx%d@%.3g %s%s", self.label, s.width, s.height, s.fps,
                 " MJPG" if s.mjpg else "", w, h, fps, granted, " (decoded by vcam)" if self.raw_jpeg else "")
        self._cap, self.size, self.fps = cap, (w, h), fps

    def _raw_jpeg_works(self, cap: cv2.VideoCapture, size: tuple[int, int]) -> bool:
        """Ask the V4L2 backend for the camera's JPEG bytes instead of its own (slower) decoding, if a
        frame read that way decodes to the granted size; otherwise put OpenCV's decoding back."""
        self._decoder = mjpg.MjpgDecoder(size)
        if cap.set(cv2.CAP_PROP_CONVERT_RGB, 0):
            for _ in range(3):  # a camera's first frames may be damaged
                ok, packet = cap.read()
                if (ok and packet is not None and packet.dtype == np.uint8
                        and self._decoder.decode(packet) is not None):
                    return True
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
        return False

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._image = None
        self.raw_jpeg = False

    @property
    def is_open(self) -> bool:
        return self._cap is not None or self._image is not None

    def read(self, buffer: np.ndarray | None = None) -> np.ndarray:
        """The next frame (into `buffer` when the size fits); raises CameraError when the source fails."""
        if self.is_file:
            self._pace()
        now = self.read_started = time.perf_counter()
        if self.is_file:
            if now - self._last_check >= FILE_CHECK_INTERVAL_S:
                self._last_check = now
                if not self.path.is_file():  # a removed file behaves like an unplugged camera
                    raise CameraError(f"{self.path}: camera source file disappeared")
        if self._image is not None:
            if buffer is None or buffer.shape != self._image.shape:
                buffer = np.empty_like(self._image)
            np.copyto(buffer, self._image)
            return buffer
        if self._cap is None:
            raise CameraError(f"camera {self.label}: not open")
        if not self.raw_jpeg:
            if not self.as_i420:
                return self._grab(buffer)
            self._bgr = self._grab(self._bgr)
            return i420.from_bgr(self._bgr, buffer, full_range=True)
        decode = self._decoder.decode_i420 if self.as_i420 else self._decoder.decode
        for _ in range(MAX_BAD_FRAMES):
            frame = decode(self._grab(), buffer)
            if frame is not None:
                return frame
        raise CameraError(f"camera {self.label}: {MAX_BAD_FRAMES} MJPG frames in a row cannot be decoded")

    def _grab(self, buffer: np.ndarray | None = None) -> np.ndarray:
        """The next frame (or JPEG packet) from the VideoCapture; files loop at their end."""
        ok, frame = self._cap.read(buffer)
        if not ok and self.is_file:  # end of the file: loop
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read(buffer)
        if not ok or frame is None:
            raise CameraError(f"camera {self.label}: read failed (unplugged?)")
        return frame

    def _pace(self) -> None:
        """Files have no clock of their own: deliver them at their native frame rate."""
        if not self.pace:
            return
        self._next_t += 1.0 / self.fps
        delay = self._next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:  # we were stalled (e.g. released): restart the clock instead of bursting
            self._next_t = time.perf_counter()


def camera_size_hint(settings: CameraSettings) -> tuple[int, int]:
    """The frame size to expect before the camera is open, for [output] width/height = 0: a file's own
    size, else the size asked of the camera."""
    source = CameraSource(settings)
    if source.is_file:
        try:
            source.open()
            return source.size or (settings.width, settings.height)
        except VcamError:
            pass
        finally:
            source.close()
    return settings.width, settings.height


class CaptureThread:
    """Reads a CameraSource into a OneSlot; reopens with backoff; releases the camera when not wanted.

    Policy: set_wanted(False) closes the camera at the thread's next turn and no frame read after it is
    published; only this thread touches the source while it runs, so stop() never closes it under a read.

    state: "ok" (frames flowing), "unavailable" (open/read failing, retrying), "released" (asked to
    let the camera go: on-demand idle or paused; the device is closed so its light goes off).
    """

    def __init__(self, source: CameraSource, slot: OneSlot[np.ndarray]) -> None:
        self.source = source
        self.slot = slot
        self.state = "released"
        self.last_error = ""
        self.run = 0  # the current source run (see Frame.run): a new one each time the source is opened
        self.read_ms: deque[float] = deque(maxlen=600)  # time inside read() (decode), for `vcam bench`
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._publish = threading.Lock()  # held while publishing; stop() takes it, so none comes after
        self._thread: threading.Thread | None = None

    def start(self, wanted: bool | None = True) -> None:
        """Start the thread (None: wanted as set_wanted() left it). A previous thread of this object must be
        gone (it owns the source)."""
        previous = self._thread
        if previous is not None and previous.is_alive():
            previous.join(STOP_WAIT_S)
            if previous.is_alive():
                raise CameraError(f"camera {self.source.label}: the previous read has not returned")
        if wanted is not None:
            self.set_wanted(wanted)
        self._stop = stop = threading.Event()  # each thread its own: a late old thread never runs on
        thread = threading.Thread(target=self._run, args=(stop,), name="vcam-capture", daemon=True)
        thread.start()
        self._thread = thread  # only once running: a not-yet-started thread would look ended (died)

    def set_wanted(self, wanted: bool) -> None:
        """True: keep the camera open and read; False: release it."""
        if wanted:
            self._wanted.set()
        else:
            self._wanted.clear()

    @property
    def wanted(self) -> bool:
        return self._wanted.is_set()

    @property
    def died(self) -> bool:
        """The thread ended without stop() (it keeps running while the camera is released on demand, and
        a stop() for a reopen is no death)."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 0.5) -> bool:
        """Stop reading and release the camera; True if the camera is closed when this returns.

        Only the capture thread touches the source while it runs: if it is still inside a read (a V4L2
        read can block up to its 2 s timeout) when `timeout` is up, it closes the source itself when the
        read returns; it can no longer publish a frame either way. The thread is a daemon: a wedged read
        can't block exit."""
        with self._publish:
            self._stop.set()
        self._wanted.set()  # wake it if it waits to be wanted
        thread = self._thread
        self.state = "released"
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("capture thread did not stop within %.1f s; it releases the camera when its "
                            "read returns", timeout)
                return False
        self._thread = None
        self.source.close()  # no thread uses it any more
        return True

    def _sleep(self, stop: threading.Event, seconds: float) -> bool:
        """Sleep unless stopped; True if we should carry on."""
        return not stop.wait(seconds)

    def _run(self, stop: threading.Event) -> None:
        buf: np.ndarray | None = None
        backoff = BACKOFF_START_S
        while not stop.is_set():
            if not self._wanted.is_set():
                if self.source.is_open:
                    self.source.close()
                    log.info("camera %s released", self.source.label)
                self.state = "released"
                self.slot.clear()
                self._wanted.wait(0.5)
                continue
            if self.source.is_file and not self.source.pace and not self.slot.wait_empty(0.1):
                continue  # an unpaced file (bench): decode only frames the worker will take
            try:
                if not self.source.is_open:
                    self.source.open()
                    self.run = next(_runs)
                    log.info("camera %s open (%sx%s @ %.3g fps)", self.source.label,
                             *(self.source.size or ("?", "?")), self.source.fps)
                frame = self.source.read(buf)
                t = time.perf_counter()
                self.read_ms.append((t - self.source.read_started) * 1e3)
            except CameraError as e:
                self.source.close()
                if stop.is_set():
                    break
                if self.state != "unavailable" or str(e) != self.last_error:
                    log.warning("%s; retrying", e)
                self.state, self.last_error = "unavailable", str(e)
                if not self._sleep(stop, backoff):
                    break
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except Exception:  # never let a surprise kill the camera thread
                log.exception("camera %s: unexpected error; reopening", self.source.label)
                self.source.close()
                self.state = "unavailable"
                if not self._sleep(stop, backoff):
                    break
                continue
            with self._publish:
                if stop.is_set():
                    break  # stopped while reading: this frame is from a camera we were told to let go
                if self.state != "ok":
                    log.info("camera %s: frames flowing", self.source.label)
                self.state, self.last_error, backoff = "ok", "", BACKOFF_START_S
                if not self._wanted.is_set():
                    continue  # released while reading: don't publish a frame from a camera we let go
                buf = self.slot.put(frame, t, self.run)
        self.source.close()
