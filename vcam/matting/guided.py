"""The fast guided filter (He & Sun, 2015) for a grey guide: the matte's edge-aware upsampling.

Why not cv2.ximgproc.guidedFilter: a guided filter makes the output locally a linear function a*I + b
of the guide I, and a and b are box averages, so they are smooth: computing them at half the guide's
size and upsampling them bilinearly before `a*I + b` at full size gives the same matte for a quarter of
the box filtering (docs/performance.md, docs/matte.md). Every buffer is kept between frames; all steps
are float32 OpenCV.
"""
from __future__ import annotations

import cv2
import numpy as np

SUBSAMPLE = 2  # a and b at 1/SUBSAMPLE of the guide's size; 3 costs 0.25 boundary-F points (docs/matte.md)
# The regularisation never goes below one squared grey level: with less, flat patches of the picture
# (a plain wall, a dark room: variance ~0) divide float rounding noise by ~0, and the output blotches.
MIN_EPS = 1.0


class GuidedFilter:
    """q = mean(a) * I + mean(b), with a = cov(I, p) / (var(I) + eps) and b = mean(p) - a * mean(I) over
    boxes of `radius` guide pixels (radius / subsample, rounded, at the reduced size: the radius moves in
    steps of `subsample` guide pixels). One per stream; buffers follow the guide size."""

    def __init__(self, subsample: int = SUBSAMPLE) -> None:
        self.subsample = subsample
        self._size: tuple[int, int] | None = None

    def _ensure(self, w: int, h: int) -> None:
        if self._size == (w, h):
            return
        self._size = (w, h)
        self._low = (max(1, w // self.subsample), max(1, h // self.subsample))
        lw, lh = self._low

        def low() -> np.ndarray:
            return np.empty((lh, lw), np.float32)

        self._low8 = np.empty((lh, lw), np.uint8)
        self._i, self._p, self._ip, self._ii = low(), low(), low(), low()
        self._mean_i, self._mean_p, self._mean_ip, self._mean_ii = low(), low(), low(), low()
        self._a, self._b, self._t1, self._t2 = low(), low(), low(), low()
        self._guide = np.empty((h, w), np.float32)
        self._big_b = np.empty((h, w), np.float32)

    @property
    def low_src(self) -> np.ndarray:
        """The last apply()'s `src` at half the guide's size (float32), so the matte's bound reuses it."""
        return self._p

    def _to_low(self, image: np.ndarray, dst: np.ndarray) -> None:
        cv2.resize(image, self._low, dst=self._low8, interpolation=cv2.INTER_LINEAR)
        dst[...] = self._low8

    def apply(self, guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
              dst: np.ndarray) -> np.ndarray:
        """Filter `src` (uint8) guided by `guide` (uint8 grey) into `dst` (float32, the guide's size).
        `eps` is in squared grey levels of the guide (MIN_EPS at least). `src` may have another size than
        the guide: only its reduction to half the guide's size is used, so the model's mask goes there in
        one resize."""
        h, w = guide.shape
        self._ensure(w, h)
        eps = max(eps, MIN_EPS)
        r = max(1, int(radius / self.subsample + 0.5))  # at half size: radii 5 and 6 both become 3
        k = (2 * r + 1, 2 * r + 1)

        def box(a: np.ndarray, out: np.ndarray) -> None:
            cv2.boxFilter(a, -1, k, dst=out, borderType=cv2.BORDER_REFLECT)

        i, p, mean_i, mean_p, t1, t2 = self._i, self._p, self._mean_i, self._mean_p, self._t1, self._t2
        self._to_low(guide, i)
        self._to_low(src, p)
        cv2.multiply(i, p, dst=self._ip)
        cv2.multiply(i, i, dst=self._ii)
        box(i, mean_i)
        box(p, mean_p)
        box(self._ip, self._mean_ip)
        box(self._ii, self._mean_ii)
        cv2.multiply(mean_i, mean_p, dst=t1)
        cv2.subtract(self._mean_ip, t1, dst=t1)  # cov(I, p)
        cv2.multiply(mean_i, mean_i, dst=t2)
        cv2.subtract(self._mean_ii, t2, dst=t2)  # var(I)
        cv2.max(t2, 0.0, dst=t2)  # float32 rounding can make a flat patch's variance a hair below 0
        cv2.add(t2, eps, dst=t2)
        cv2.divide(t1, t2, dst=self._a)
        cv2.multiply(self._a, mean_i, dst=t1)
        cv2.subtract(mean_p, t1, dst=self._b)
        box(self._a, t1)
        box(self._b, t2)
        cv2.resize(t1, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)
        cv2.resize(t2, (w, h), dst=self._big_b, interpolation=cv2.INTER_LINEAR)
        self._guide[...] = guide
        cv2.multiply(dst, self._guide, dst=dst)
        return cv2.add(dst, self._big_b, dst=dst)
