"""MJPG decoding for cameras and clips that send JPEG frames: libjpeg-turbo's fast paths.

Why: a USB webcam sends 720p and 1080p as MJPG, and after the model, decoding it was the largest cost of a
live frame. OpenCV (FFmpeg or libjpeg-turbo's exact path) decodes a 720p frame in 2.3 ms here;
libjpeg-turbo's fast integer IDCT and fast chroma upsampling take 1.5 ms to BGR (simplejpeg; 1080p: 4.8
-> 3.0 ms), and about 1.2 ms straight to the YUV planes the live pipeline works in (decode_i420, through
the system's libturbojpeg, vcam/frames/turbojpeg.py). The picture is 45-47 dB PSNR from the exact decode: no
visible difference, and far finer than what the call app's encoder keeps. So the capture stage asks
OpenCV for the raw JPEG bytes and decodes them here.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
import simplejpeg

from vcam.frames import i420, turbojpeg

log = logging.getLogger(__name__)


def fourcc_text(code: float) -> str:
    """cv2's numeric FOURCC as its four characters ('MJPG'); '' when unknown."""
    code = int(code)
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ")


# What OpenCV reports for JPEG-per-frame video: V4L2's MJPG/JPEG, AVI/MOV's MJPG, jpeg and AVRn tags.
JPEG_FOURCCS = frozenset({"MJPG", "mjpg", "JPEG", "jpeg", "AVRn", "mjpa", "dmb1"})
MAX_PIXELS = 8192 * 8192  # more than any camera sends; the limit for frames of a stream of unknown size


def is_jpeg_fourcc(code: float) -> bool:
    return fourcc_text(code) in JPEG_FOURCCS


def _ends_with_eoi(data: np.ndarray) -> bool:
    """True if the JPEG bytes end with the end-of-image marker (FF D9), ignoring zero padding after it."""
    tail = data[-4096:]
    nonzero = np.flatnonzero(tail)
    end = int(nonzero[-1]) if nonzero.size else -1
    return end >= 1 and tail[end] == 0xD9 and tail[end - 1] == 0xFF


class MjpgDecoder:
    """Decodes one camera's (or clip's) JPEG frames into BGR (decode) or I420 (decode_i420); damaged
    frames come back as None, so the caller keeps the previous picture instead of showing a broken one.

    Damaged means: not a JPEG at all; a size other than the stream's `size` (a corrupted header can
    claim gigapixels); or cut short (no end marker) on a stream whose frames have shown they carry one
    (some cameras never send it, and their frames must not all be dropped). Stray bytes and other
    recoverable damage are decoded as far as they go.
    """

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = size  # (width, height) every frame must have, when known
        self._ends_seen = False  # a frame with an end marker was seen: from now on, require one
        self._yuv: turbojpeg.YuvDecoder | None = None
        self._bgr: np.ndarray | None = None  # decode_i420's BGR frame when it cannot decode to planes
        self._chroma: np.ndarray | None = None  # a 4:2:2 or 4:4:4 JPEG's chroma planes before halving

    @property
    def planar(self) -> bool:
        """Whether decode_i420 decodes straight to planes (libturbojpeg is there)."""
        if self._yuv is None and turbojpeg.library() is not None:
            self._yuv = turbojpeg.YuvDecoder()
        return self._yuv is not None

    def _whole(self, packet: np.ndarray) -> np.ndarray | None:
        """The JPEG bytes as a flat array, or None if the frame is damaged beyond use."""
        data = packet.reshape(-1)
        if data.size < 4:
            return None
        if _ends_with_eoi(data):
            self._ends_seen = True
        elif self._ends_seen:
            log.debug("MJPG frame cut short; dropped")
            return None
        return data

    def decode_i420(self, packet: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray | None:
        """The JPEG frame as full-range I420 (a camera frame, vcam/frames/i420.py), into `buffer` when its
        size fits; None for a damaged frame. Straight to planes with libturbojpeg; otherwise (or for odd
        sizes) via BGR."""
        data = self._whole(packet)
        if data is None:
            return None
        header = self._yuv.header(data) if self.planar else None
        if header is None or header[0] % 2 or header[1] % 2 or header[2] not in (
                turbojpeg.SAMP_420, turbojpeg.SAMP_422, turbojpeg.SAMP_444, turbojpeg.SAMP_GRAY):
            bgr = self._decode_bgr(data, self._bgr)
            if bgr is None:
                return None
            self._bgr = bgr
            return i420.from_bgr(bgr, buffer, full_range=True)
        w, h, samp = header
        if not self._size_ok(w, h):
            return None
        if buffer is None or buffer.shape != i420.shape((w, h)):
            buffer = i420.new((w, h))
        y, u, v = i420.planes(buffer)
        if samp == turbojpeg.SAMP_420:
            ok = self._yuv.decode(data, y, u, v)
        elif samp == turbojpeg.SAMP_GRAY:
            ok = self._yuv.decode(data, y, None, None)
            buffer[h:] = 128
        else:  # chroma at full height (4:2:2) or full size (4:4:4): decoded aside, then halved
            cw = w // 2 if samp == turbojpeg.SAMP_422 else w
            if self._chroma is None or self._chroma.shape != (2, h, cw):
                self._chroma = np.empty((2, h, cw), np.uint8)
            ok = self._yuv.decode(data, y, self._chroma[0], self._chroma[1])
            for full, half in ((self._chroma[0], u), (self._chroma[1], v)):
                cv2.resize(full, (w // 2, h // 2), dst=half, interpolation=cv2.INTER_AREA)
        if not ok:
            log.debug("libturbojpeg could not decode an MJPG frame; dropped")
            return None
        return buffer  # in JPEG's full range, as camera frames are (vcam/frames/i420.py)

    def decode(self, packet: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray | None:
        """The BGR image in the JPEG bytes `packet` (any shape of uint8), into `buffer` when its size
        fits; None for a damaged frame."""
        data = self._whole(packet)
        return None if data is None else self._decode_bgr(data, buffer)

    def _decode_bgr(self, data: np.ndarray, buffer: np.ndarray | None) -> np.ndarray | None:
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            if not self._size_ok(w, h):
                return None
            if buffer is None or buffer.shape != (h, w, 3) or not buffer.flags.c_contiguous:
                buffer = np.empty((h, w, 3), np.uint8)
            return simplejpeg.decode_jpeg(data, "BGR", fastdct=True, fastupsample=True, buffer=buffer,
                                          strict=False)
        except (ValueError, MemoryError) as e:  # not a JPEG libjpeg-turbo can read: let OpenCV try
            log.debug("simplejpeg: %s; trying cv2.imdecode", e)
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except (cv2.error, MemoryError):
            return None
        return image if image is not None and self._size_ok(image.shape[1], image.shape[0]) else None

    def _size_ok(self, w: int, h: int) -> bool:
        if self.size is None:
            # no size negotiated: still refuse what no camera sends (a damaged header's claim)
            return 0 < w * h <= MAX_PIXELS
        if (w, h) != tuple(self.size):
            log.debug("MJPG frame of %dx%d in a %dx%d stream; dropped", w, h, *self.size)
            return False
        return True

