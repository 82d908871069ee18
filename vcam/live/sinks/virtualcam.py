"""The virtual camera: pyvirtualcam's v4l2loopback backend, the sink video-call apps read.

pyvirtualcam raises RuntimeError for every failure; the ones users hit (no device, no permission, wrong
device) become an OutputError that says exactly how to fix it.
"""
from __future__ import annotations

import logging

import numpy as np

from vcam.config import OutputSettings
from vcam.live.sinks.base import OutputError, Sink

log = logging.getLogger(__name__)

MODPROBE_LINE = 'sudo modprobe v4l2loopback exclusive_caps=1 card_label="Virtual Camera" video_nr=10'


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
