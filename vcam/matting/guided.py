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


class _HalfSizeFilter:
    """What both fast guided filters share: the size their coefficients are made at, and the mask there."""

    def __init__(self, subsample: int = SUBSAMPLE) -> None:
        self.subsample = subsample
        self._size: tuple[int, int] | None = None
        self._p = np.empty((0, 0), np.float32)

    def _new_size(self, w: int, h: int) -> bool:
        """True (and the reduced size set) when the guide is (w, h) for the first time: buffers to make."""
        if self._size == (w, h):
            return False
        self._size = (w, h)
        self._low = (max(1, w // self.subsample), max(1, h // self.subsample))
        return True

    @property
    def low_src(self) -> np.ndarray:
        """The last apply()'s `src` at half the guide's size (float32), so the matte's bound reuses it."""
        return self._p

    def _start(self, src: np.ndarray, radius: int, eps: float) -> float:
        """Per apply(): `src` reduced into self._p, the box size for `radius` guide px at the reduced
        size (radii 5 and 6 both become 3 at half size), and `eps` kept at MIN_EPS or more."""
        cv2.resize(src, self._low, dst=self._low8, interpolation=cv2.INTER_LINEAR)
        np.copyto(self._p, self._low8)
        r = max(1, int(radius / self.subsample + 0.5))
        self._k = (2 * r + 1, 2 * r + 1)
        return max(eps, MIN_EPS)

    def _box(self, a: np.ndarray, out: np.ndarray) -> None:
        """The box mean of `a` over the current apply()'s box, into `out`."""
        cv2.boxFilter(a, -1, self._k, dst=out, borderType=cv2.BORDER_REFLECT)


class GuidedFilter(_HalfSizeFilter):
    """q = mean(a) * I + mean(b), with a = cov(I, p) / (var(I) + eps) and b = mean(p) - a * mean(I) over
    boxes of `radius` guide pixels (radius / subsample, rounded, at the reduced size: the radius moves in
    steps of `subsample` guide pixels). One per stream; buffers follow the guide size."""

    def _ensure(self, w: int, h: int) -> None:
        if not self._new_size(w, h):
            return
        lw, lh = self._low

        def low() -> np.ndarray:
            return np.empty((lh, lw), np.float32)

        self._low8 = np.empty((lh, lw), np.uint8)
        self._i, self._p, self._ip, self._ii = low(), low(), low(), low()
        self._mean_i, self._mean_p, self._mean_ip, self._mean_ii = low(), low(), low(), low()
        self._a, self._b, self._t1, self._t2 = low(), low(), low(), low()
        self._guide = np.empty((h, w), np.float32)
        self._big_b = np.empty((h, w), np.float32)

    def apply(self, guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
              dst: np.ndarray) -> np.ndarray:
        """Filter `src` (uint8) guided by `guide` (uint8 grey) into `dst` (float32, the guide's size).
        `eps` is in squared grey levels of the guide (MIN_EPS at least). `src` may have another size than
        the guide: only its reduction to half the guide's size is used, so the model's mask goes there in
        one resize."""
        h, w = guide.shape
        self._ensure(w, h)
        eps = self._start(src, radius, eps)
        box = self._box
        i, p, mean_i, mean_p, t1, t2 = self._i, self._p, self._mean_i, self._mean_p, self._t1, self._t2
        cv2.resize(guide, self._low, dst=self._low8, interpolation=cv2.INTER_LINEAR)
        np.copyto(i, self._low8)
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


# The 3x3 system's entries as pairs of guide channels: the products of the guide's channels whose
# box means give its covariance matrix Sigma (the diagonal first).
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
_SUM3 = np.ones((1, 3), np.float32)  # cv2.transform's matrix: the sum of a 3-channel picture's channels


class ColourGuidedFilter(_HalfSizeFilter):
    """The fast guided filter with a colour (3-channel) guide: q = mean(A) . I + mean(b), with
    A = (Sigma(I) + eps U)^-1 cov(I, p), a 3x3 system per pixel solved by cofactors at half the guide's
    size. Why: a grey guide's a*I + b cannot hold a person both lighter and darker than the wall, nor an
    edge between two colours of one grey; a colour guide can (docs/matte.md, "The live matte's guide").
    Every channel is its own contiguous plane, so each step is one OpenCV call on a small buffer kept
    between frames. One per stream; the guide may be BGR or any linear colour space."""

    def _ensure(self, w: int, h: int) -> None:
        if not self._new_size(w, h):
            return
        lw, lh = self._low

        def planes(n: int) -> np.ndarray:
            return np.empty((n, lh, lw), np.float32)

        self._low8 = np.empty((lh, lw), np.uint8)
        self._low8_3 = np.empty((lh, lw, 3), np.uint8)
        self._i, self._mean_i = planes(3), planes(3)       # the guide's channels, their means
        self._p, self._mean_p = planes(1)[0], planes(1)[0]  # the mask, its mean
        self._cov_p = planes(3)                            # cov(I_c, p)
        self._sigma = planes(6)                            # Sigma + eps U, in _PAIRS order
        self._inv = planes(6)                              # its cofactors, in _PAIRS order
        self._a, self._b = planes(3), planes(1)[0]
        self._t, self._det = planes(1)[0], planes(1)[0]
        self._a3 = np.empty((lh, lw, 3), np.float32)
        self._big_a = np.empty((h, w, 3), np.float32)
        self._guide = np.empty((h, w, 3), np.float32)
        self._big_b = np.empty((h, w), np.float32)

    def apply(self, guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
              dst: np.ndarray) -> np.ndarray:
        """Filter `src` (uint8, any size) guided by `guide` (uint8, 3 channels) into `dst` (float32, the
        guide's size); `eps` in squared levels of the guide, as GuidedFilter.apply()."""
        h, w = guide.shape[:2]
        self._ensure(w, h)
        eps = self._start(src, radius, eps)
        box, t = self._box, self._t
        i, mean_i, p, mean_p = self._i, self._mean_i, self._p, self._mean_p
        cv2.resize(guide, self._low, dst=self._low8_3, interpolation=cv2.INTER_LINEAR)
        box(p, mean_p)
        for c in range(3):
            np.copyto(i[c], self._low8_3[..., c])
            box(i[c], mean_i[c])
            cv2.multiply(i[c], p, dst=t)
            box(t, self._cov_p[c])
            cv2.multiply(mean_i[c], mean_p, dst=t)
            cv2.subtract(self._cov_p[c], t, dst=self._cov_p[c])
        sigma = self._sigma
        for n, (c, d) in enumerate(_PAIRS):
            cv2.multiply(i[c], i[d], dst=t)
            box(t, sigma[n])
            cv2.multiply(mean_i[c], mean_i[d], dst=t)
            cv2.subtract(sigma[n], t, dst=sigma[n])
            if c == d:
                cv2.add(sigma[n], eps, dst=sigma[n])
        s00, s11, s22, s01, s12, s02 = sigma
        inv = self._inv

        def cofactor(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
            cv2.multiply(a, b, dst=out)  # out = a*b - c*d
            cv2.multiply(c, d, dst=t)
            cv2.subtract(out, t, dst=out)

        cofactor(s11, s22, s12, s12, inv[0])
        cofactor(s00, s22, s02, s02, inv[1])
        cofactor(s00, s11, s01, s01, inv[2])
        cofactor(s02, s12, s01, s22, inv[3])
        cofactor(s01, s02, s00, s12, inv[4])
        cofactor(s01, s12, s02, s11, inv[5])
        det = self._det  # > 0: Sigma + eps U is positive definite
        cv2.multiply(s00, inv[0], dst=det)
        cv2.multiply(s01, inv[3], dst=t)
        cv2.add(det, t, dst=det)
        cv2.multiply(s02, inv[5], dst=t)
        cv2.add(det, t, dst=det)
        cv2.divide(1.0, det, dst=det)
        rows = ((0, 3, 5), (3, 1, 4), (5, 4, 2))  # the symmetric inverse's rows, as indices into inv
        b = self._b
        np.copyto(b, mean_p)
        for c, row in enumerate(rows):
            a = self._a[c]
            cv2.multiply(inv[row[0]], self._cov_p[0], dst=a)
            for n in (1, 2):
                cv2.multiply(inv[row[n]], self._cov_p[n], dst=t)
                cv2.add(a, t, dst=a)
            cv2.multiply(a, det, dst=a)
            cv2.multiply(a, mean_i[c], dst=t)
            cv2.subtract(b, t, dst=b)  # b = mean(p) - A . mean(I)
            box(a, i[c])  # (the guide's planes are free again: they take mean(A))
        cv2.merge(tuple(i), dst=self._a3)
        box(b, t)
        cv2.resize(self._a3, (w, h), dst=self._big_a, interpolation=cv2.INTER_LINEAR)
        cv2.resize(t, (w, h), dst=self._big_b, interpolation=cv2.INTER_LINEAR)
        np.copyto(self._guide, guide)
        cv2.multiply(self._big_a, self._guide, dst=self._big_a)
        cv2.transform(self._big_a, _SUM3, dst=dst)
        return cv2.add(dst, self._big_b, dst=dst)
