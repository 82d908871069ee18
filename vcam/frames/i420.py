"""Live frames as I420: BT.601 YUV 4:2:0, the format the virtual camera is fed.

Why: a webcam's MJPG frames are YUV 4:2:0 inside, and v4l2loopback's readers get I420. Decoding straight
to planes (vcam/frames/mjpg.py) and keeping the frame in I420 through the pipeline skips two full-frame
colour conversions (JPEG's YUV -> BGR in the decoder, BGR -> I420 at the output) and halves the bytes
every later stage reads and writes (1.5 instead of 3 per pixel): about 2 ms less CPU a 720p frame (README,
Performance). The model and the matte's guide work on small colour and grey copies made from the planes
(vcam/frames/reduce.py); `vcam apply` and `vcam eval` stay in BGR.

A frame is one C-contiguous uint8 array of shape (height * 3 // 2, width): the Y plane's rows, then
U's and V's (each width/2 x height/2), packed as pyvirtualcam and V4L2 expect. Width and height are
even. A BGR frame is 3-D, an I420 frame 2-D: `is_i420` tells them apart.

Two ranges, one matrix: camera frames stay in the full range JPEG decodes to (Y 0..255, where Y is
the grey the matte's guide wants), and the compositor writes the limited range (Y 16..235, U/V
16..240) that readers of the virtual camera assume, as part of the copy and blend it makes anyway;
converting right after decoding would cost a full pass over the frame (0.3 ms at 720p).
"""
from __future__ import annotations

import cv2
import numpy as np

# full range (0..255) -> limited (Y 16..235, U/V 16..240) and back, as y = x * a + b: cv2.convertScaleAbs
# does that at about half the cost of cv2.LUT
LIMIT_Y, LIMIT_C = (219 / 255, 16.0), (224 / 255, 128 - 128 * 224 / 255)
EXPAND_Y, EXPAND_C = (255 / 219, -16 * 255 / 219), (255 / 224, 128 - 128 * 255 / 224)


def scale_plane(src: np.ndarray, ab: tuple[float, float], dst: np.ndarray) -> np.ndarray:
    """dst = src * a + b, rounded and saturated: one plane (or part of one) into another range."""
    return cv2.convertScaleAbs(src, dst=dst, alpha=ab[0], beta=ab[1])


def limited(frame: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """A full-range frame in limited range, into `dst` (may be `frame`)."""
    return _rescale(frame, dst, LIMIT_Y, LIMIT_C)


def full(frame: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """A limited-range frame in full range, into `dst` (may be `frame`). Values under 16 (below the range)
    are raised to 16 first: convertScaleAbs would mirror their negative results (Y 0 -> 19)."""
    if dst is None:
        dst = np.empty_like(frame)
    cv2.max(frame, 16.0, dst=dst)
    return _rescale(dst, dst, EXPAND_Y, EXPAND_C)


def _rescale(frame: np.ndarray, dst: np.ndarray | None, y_ab: tuple[float, float],
             c_ab: tuple[float, float]) -> np.ndarray:
    if dst is None:
        dst = np.empty_like(frame)
    h = size(frame)[1]
    scale_plane(frame[:h], y_ab, dst[:h])
    scale_plane(frame[h:], c_ab, dst[h:])  # U and V together: they follow Y in one block
    return dst


def shape(size: tuple[int, int]) -> tuple[int, int]:
    """The array shape of an I420 frame of (width, height) `size`."""
    w, h = size
    return h * 3 // 2, w


def new(size: tuple[int, int]) -> np.ndarray:
    return np.empty(shape(size), np.uint8)


def is_i420(frame: np.ndarray) -> bool:
    return frame.ndim == 2


def size(frame: np.ndarray) -> tuple[int, int]:
    """(width, height) of an I420 or BGR frame."""
    if frame.ndim == 2:
        return frame.shape[1], frame.shape[0] * 2 // 3
    return frame.shape[1], frame.shape[0]


def planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes (no copies)."""
    w, h = size(frame)
    flat = frame.reshape(-1)
    c = (w // 2) * (h // 2)
    return frame[:h], flat[w * h:w * h + c].reshape(h // 2, w // 2), flat[w * h + c:].reshape(h // 2, w // 2)


def even(size: tuple[int, int]) -> tuple[int, int]:
    """`size` with odd sides cut by one pixel (I420 needs even sides)."""
    return size[0] & ~1, size[1] & ~1


def from_bgr(bgr: np.ndarray, dst: np.ndarray | None = None, full_range: bool = False) -> np.ndarray:
    """The BGR image as I420 (OpenCV's BT.601 conversion, limited range; `full_range`: a camera frame's),
    odd sides cut by one pixel."""
    w, h = even((bgr.shape[1], bgr.shape[0]))
    if dst is None or dst.shape != shape((w, h)):
        dst = new((w, h))
    cv2.cvtColor(bgr[:h, :w], cv2.COLOR_BGR2YUV_I420, dst=dst)
    return full(dst, dst) if full_range else dst


def to_bgr(frame: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """A limited-range I420 frame (what the compositor writes) as BGR, for sinks and tests."""
    return cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420, dst=dst)


def resize(src: np.ndarray, size_: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """Scale an I420 frame to cover (width, height) keeping its aspect, then centre-crop (like
    backgrounds.cover_resize), plane by plane. The crop is made of whole chroma pixels."""
    if dst is None or dst.shape != shape(size_):
        dst = new(size_)
    w, h = size_
    sw, sh = size(src)
    scale = max(w / sw, h / sh)
    cw, ch = min(sw, max(2, round(w / scale))) & ~1, min(sh, max(2, round(h / scale))) & ~1
    x0, y0 = (sw - cw) // 4 * 2, (sh - ch) // 4 * 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    for i, (s, d) in enumerate(zip(planes(src), planes(dst), strict=True)):
        f = 1 if i == 0 else 2
        crop = s[y0 // f:(y0 + ch) // f, x0 // f:(x0 + cw) // f]
        cv2.resize(crop, (d.shape[1], d.shape[0]), dst=d, interpolation=interp)
    return dst


def flip(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The frame mirrored left to right, into `dst` (not `src`)."""
    for s, d in zip(planes(src), planes(dst), strict=True):
        cv2.flip(s, 1, dst=d)
    return dst
