"""Output stage: where composited frames go. A small registry of sinks with one context-manager API.

Frames arrive as I420 (vcam/i420.py). `virtualcam` is the real job (pyvirtualcam's v4l2loopback
backend, which writes I420 frames to the device as they are);
`preview`, `file` and `null` are for debugging and `vcam bench`. pyvirtualcam raises RuntimeError for
every failure; we turn the ones users hit (no device, no permission, wrong device) into a VcamError
that says exactly how to fix it.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from vcam.frames import i420
from vcam.config import OutputSettings, picture_size_problem
from vcam.errors import VcamError

log = logging.getLogger(__name__)

MODPROBE_LINE = 'sudo modprobe v4l2loopback exclusive_caps=1 card_label="Virtual Camera" video_nr=10'


class OutputError(VcamError):
    """The output cannot be opened; the message says how to fix it."""


class Sink:
    """Takes I420 frames (vcam/i420.py) of exactly `size` (width, height)."""

    name = "sink"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        self.settings = settings
        self.size = size
        self.fps = fps

    def send(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SINKS: dict[str, Callable[..., Sink]] = {}


def register_sink(name: str, cls: Callable[..., Sink]) -> None:
    """Add (or replace) a sink type, like pyvirtualcam's register_backend."""
    SINKS[name] = cls


def output_size(settings: OutputSettings, camera_size: tuple[int, int]) -> tuple[int, int]:
    """[output] width/height (0 = the camera's), rounded down to even numbers (I420 needs even sizes).
    OutputError if the result is a size vcam cannot process (one side taken from the camera can make it)."""
    w = settings.width or camera_size[0]
    h = settings.height or camera_size[1]
    size = max(2, w - w % 2), max(2, h - h % 2)
    problem = picture_size_problem(*size)
    if problem:
        raise OutputError(f"[output] width and height: {problem} (0 takes the camera's: "
                          f"{camera_size[0]}x{camera_size[1]})")
    return size


def open_sink(settings: OutputSettings, size: tuple[int, int], fps: float | None = None, **kw) -> Sink:
    try:
        cls = SINKS[settings.sink]
    except KeyError:
        raise OutputError(f"[output] sink: unknown sink {settings.sink!r} (one of {', '.join(SINKS)})") from None
    return cls(settings, size, float(fps or settings.fps), **kw)


def explain_virtualcam_error(device: str, message: str) -> str:
    """pyvirtualcam's RuntimeError text -> one line that says what to do."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    first = first.split("backend: ", 1)[-1]
    if "does not exist" in message or "No v4l2 loopback device" in message:
        return (f"{device}: no virtual camera device; load v4l2loopback with `{MODPROBE_LINE}` "
                f"(or run `vcam setup` once to make it permanent), or set [output] device")
    if "permission" in message.lower():
        return (f"{device}: no permission to write the virtual camera; run `sudo usermod -aG video $USER` "
                f"and log out and in again (or run `vcam setup`)")
    if any(m in message for m in ("not a video output device", "not a V4L2 device", "could not be queried")):
        return (f"{device}: not a v4l2loopback device (probably a real camera); set [output] device to the "
                f"loopback device, e.g. /dev/video10 created by `{MODPROBE_LINE}`")
    if "already in use" in message:
        return f"{device}: virtual camera already in use by this vcam process"
    return f"{device}: cannot open the virtual camera: {first}"


class VirtualCamSink(Sink):
    """pyvirtualcam on a v4l2loopback device. The frames are I420 already: send() writes them as they are
    (it holds the GIL for that write)."""

    name = "virtualcam"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        import pyvirtualcam

        w, h = size
        if w % 2:
            raise OutputError(f"[output] width must be even for the virtual camera, got {w}")
        try:
            self._cam = pyvirtualcam.Camera(w, h, fps, fmt=pyvirtualcam.PixelFormat.I420,
                                            device=settings.device, backend="v4l2loopback")
        except RuntimeError as e:
            raise OutputError(explain_virtualcam_error(settings.device, str(e))) from None
        log.info("virtual camera %s: %dx%d @ %g fps", self._cam.device, w, h, fps)

    def send(self, frame: np.ndarray) -> None:
        self._cam.send(frame)

    def close(self) -> None:
        self._cam.close()


class PreviewSink(Sink):
    """An OpenCV window; for looking at the result without a video-call app.

    OpenCV's Qt GUI must only be touched from one thread: the window is created, drawn and destroyed
    by the thread that sends (the pipeline's output thread). close() from another thread only marks it
    closed; the window goes away with that thread's next call or with the process.
    """

    name = "preview"
    WINDOW = "vcam preview"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        if not os.environ.get("DISPLAY"):  # Qt's highgui aborts the process without a display
            raise OutputError('[output] sink = "preview" needs an X display (DISPLAY is not set); '
                              'use sink = "file" or "null" on a headless machine')
        self._gui_thread: int | None = None
        self._closed = False

    def send(self, frame: np.ndarray) -> None:
        if self._closed:
            self._destroy()
            return
        if self._gui_thread is None:
            self._gui_thread = threading.get_ident()
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_AUTOSIZE)
        self._bgr = i420.to_bgr(frame, getattr(self, "_bgr", None))
        cv2.imshow(self.WINDOW, self._bgr)
        cv2.waitKey(1)

    def _destroy(self) -> None:
        if self._gui_thread == threading.get_ident():
            self._gui_thread = None
            try:
                cv2.destroyWindow(self.WINDOW)
                cv2.waitKey(1)
            except cv2.error:
                pass

    def close(self) -> None:
        self._closed = True
        self._destroy()


class FileSink(Sink):
    """An mp4 written to a temporary file beside the target and renamed on close, so a crash or a
    stop never leaves a half-written file under the final name."""

    name = "file"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        self.path = Path(settings.file).expanduser()
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise OutputError(f"[output] file: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4", dir=directory)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: cannot write an mp4 file there")

    def send(self, frame: np.ndarray) -> None:
        self._bgr = i420.to_bgr(frame, getattr(self, "_bgr", None))
        self._writer.write(self._bgr)

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        log.info("wrote %s", self.path)


class NullSink(Sink):
    """Discards frames (benchmarks: the virtual camera, too, takes them without converting)."""

    name = "null"

    def send(self, frame: np.ndarray) -> None:
        pass


register_sink("virtualcam", VirtualCamSink)
register_sink("preview", PreviewSink)
register_sink("file", FileSink)
register_sink("null", NullSink)
