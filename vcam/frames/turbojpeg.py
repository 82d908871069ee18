"""libturbojpeg (the system's TurboJPEG library) through ctypes: JPEG straight to YUV planes.

Why: no wheel we depend on exposes libjpeg-turbo's raw YUV output (simplejpeg decodes to RGB/BGR only),
and for a webcam's MJPG that output is what vcam wants: decoding a 720p frame to planes takes about
1.2 ms instead of 1.6 ms to BGR, and the BGR -> I420 conversion at the output disappears. The library
is optional (Debian/Ubuntu: libturbojpeg0, Fedora: turbojpeg, Arch: libjpeg-turbo); without it
vcam.frames.mjpg decodes to BGR and converts.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

# TurboJPEG's chroma subsampling codes (tjDecompressHeader3) and flags
SAMP_444, SAMP_422, SAMP_420, SAMP_GRAY = 0, 1, 2, 3
FLAG_FASTDCT = 2048
# tjGetErrorCode(): the image was decoded despite damage (what simplejpeg's strict=False allows)
ERR_WARNING = 0

_c_p = ctypes.c_void_p
_int_p = ctypes.POINTER(ctypes.c_int)


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded library, or None when the system has none (logged once)."""
    name = ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0"
    try:
        lib = ctypes.CDLL(name)
        lib.tjInitDecompress.restype = _c_p
        lib.tjInitDecompress.argtypes = []
        lib.tjDestroy.argtypes = [_c_p]
        lib.tjDecompressHeader3.argtypes = [_c_p, _c_p, ctypes.c_ulong, _int_p, _int_p, _int_p, _int_p]
        lib.tjDecompressToYUVPlanes.argtypes = [_c_p, _c_p, ctypes.c_ulong, ctypes.POINTER(_c_p),
                                                ctypes.c_int, _int_p, ctypes.c_int, ctypes.c_int]
        lib.tjGetErrorCode.argtypes = [_c_p]
    except (OSError, AttributeError) as e:
        log.info("libturbojpeg not found (%s): MJPG is decoded to BGR and converted, which costs more CPU; "
                 "install libturbojpeg0 (Debian/Ubuntu), turbojpeg (Fedora) or libjpeg-turbo (Arch)", e)
        return None
    return lib


class YuvDecoder:
    """One TurboJPEG decompressor (not thread-safe: one per camera)."""

    def __init__(self) -> None:
        lib = library()
        if lib is None:
            raise OSError("libturbojpeg is not available")
        self._lib = lib
        self._handle = lib.tjInitDecompress()
        if not self._handle:
            raise OSError("tjInitDecompress failed")
        self._w, self._h = ctypes.c_int(), ctypes.c_int()
        self._samp, self._cs = ctypes.c_int(), ctypes.c_int()
        self._planes = (_c_p * 3)()
        self._strides = (ctypes.c_int * 3)()

    def header(self, data: np.ndarray) -> tuple[int, int, int] | None:
        """(width, height, subsampling) of the JPEG in `data` (contiguous uint8), or None if unreadable."""
        r = self._lib.tjDecompressHeader3(self._handle, data.ctypes.data, data.size,
                                          ctypes.byref(self._w), ctypes.byref(self._h),
                                          ctypes.byref(self._samp), ctypes.byref(self._cs))
        return None if r != 0 else (self._w.value, self._h.value, self._samp.value)

    def decode(self, data: np.ndarray, y: np.ndarray, u: np.ndarray | None, v: np.ndarray | None) -> bool:
        """Decode into the planes (full-range YCbCr, each plane sized for the JPEG's own subsampling; u and
        v None for a grey JPEG). False if the data could not be decoded."""
        for i, p in enumerate((y, u, v)):
            self._planes[i] = p.ctypes.data if p is not None else None
            self._strides[i] = p.strides[0] if p is not None else 0
        r = self._lib.tjDecompressToYUVPlanes(self._handle, data.ctypes.data, data.size, self._planes,
                                              y.shape[1], self._strides, y.shape[0], FLAG_FASTDCT)
        return r == 0 or self._lib.tjGetErrorCode(self._handle) == ERR_WARNING

    def close(self) -> None:
        if self._handle:
            self._lib.tjDestroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()
