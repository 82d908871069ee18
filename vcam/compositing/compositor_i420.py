"""Compositing for the live pipeline, in I420 (frames/i420.py): the effects of compositor_bgr.py, plane
by plane, straight into the frame the virtual camera is sent. The camera frame comes in full range and
the result goes out in limited range: the frame's pixels are rescaled as they are copied or blended
(cv2.convertScaleAbs in place of a copy costs the same), so no pass is spent on the range alone.

Why a second compositor: the live frame never exists in BGR (decoded to planes, sent as planes), and a
plane-by-plane blend moves half the bytes of a BGR one. The chroma planes have half the resolution, so
they are blended with the alpha matte at half size, made from the same small mask as the full one.
The person's rectangles (spans.py), the Matte's deferred soft-edge LUT and the small blur (blur.py) are
the BGR compositor's too, so both give the same look (`vcam apply` and `vcam eval` use the BGR one).
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.compositing.backgrounds import Background
from vcam.compositing.blur import blur_factor
from vcam.compositing.compositor import Compositor
from vcam.compositing.look import Look
from vcam.compositing.spans import PersonSpans
from vcam.frames import i420
from vcam.matting.matte import Matte

# Taller strips than BGR's: fewer spans, each blended in more calls (three planes) (docs/performance.md).
STRIP_ROWS, MIN_STRIPS = 120, 6

Plane = tuple[np.ndarray, np.ndarray, tuple[float, float]]  # (source plane, output plane, range scaling)


class I420Compositor(Compositor):
    """Compositor (compositor.py) for full-range I420 frames (camera frames); the result is in limited
    range, and "none" too is a copy (into the output's range)."""

    def __init__(self) -> None:
        self._small_planes: list[np.ndarray] = []
        super().__init__(PersonSpans(STRIP_ROWS, MIN_STRIPS))

    def _size(self, frame: np.ndarray) -> tuple[int, int]:
        if not i420.is_i420(frame):
            raise ValueError("I420Compositor takes I420 frames")
        return i420.size(frame)

    def _make_buffers(self, size: tuple[int, int]) -> None:
        w, h = size
        full, half = (h, w), (h // 2, w // 2)
        self._out = i420.new(size)
        self._a, self._inv, self._fg = (np.empty(full, np.uint8) for _ in range(3))
        self._alpha_half, self._inv_half, self._fg_half = (np.empty(half, np.uint8) for _ in range(3))

    # -- backgrounds --------------------------------------------------------------------------------------
    def _draw_none(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                   t: float | None) -> np.ndarray:
        return i420.limited(frame, out)

    def _draw_blur(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                   t: float | None) -> np.ndarray:
        """The frame's small Y, Cr, Cb picture (Matte.small, or Reducer.ycc) blurred like the BGR
        compositor blurs its small BGR one (a blur commutes with the colour conversion), then each plane
        scaled up to its size."""
        w, h = i420.size(frame)
        strength = look.blur
        factor = blur_factor(strength, h)
        small = matte.small
        if small is None or small.shape != (h // factor, w // factor, 3):
            self._reducer.set(frame)
            small = self._reducer.ycc(factor)
        blurred = self._blur.apply(small, strength, factor)
        if not self._small_planes or self._small_planes[0].shape != blurred.shape[:2]:
            self._small_planes = [np.empty(blurred.shape[:2], np.uint8) for _ in range(3)]
        cv2.split(blurred, self._small_planes)
        for plane, ab in zip(self._small_planes, (i420.LIMIT_Y, i420.LIMIT_C, i420.LIMIT_C), strict=True):
            i420.scale_plane(plane, ab, plane)  # to the output's range while small
        y, u, v = i420.planes(out)
        small_y, small_cr, small_cb = self._small_planes  # Y, Cr (V), Cb (U)
        for small_plane, plane in ((small_y, y), (small_cb, u), (small_cr, v)):
            cv2.resize(small_plane, plane.shape[::-1], dst=plane, interpolation=cv2.INTER_LINEAR)
        return out

    def _draw_desaturated(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                          t: float | None) -> np.ndarray:
        h = i420.size(frame)[1]
        i420.scale_plane(frame[:h], i420.LIMIT_Y, out[:h])
        out[h:] = 128  # no colour
        return out

    def _draw_key(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                  t: float | None) -> np.ndarray:
        return self._draw_background(self._solids.key(look.key_color), i420.size(frame), t, out)

    def _draw_picture(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                      t: float | None) -> np.ndarray:
        return self._draw_background(look.background or self._solids.white, i420.size(frame), t, out)

    @staticmethod
    def _draw_background(background: Background, size: tuple[int, int], t: float | None,
                         out: np.ndarray) -> np.ndarray:
        np.copyto(out, background.frame_i420(size, t))
        return out

    # -- the blend ----------------------------------------------------------------------------------------
    def blend(self, frame: np.ndarray, matte: Matte, out: np.ndarray) -> np.ndarray:
        """out = limited(frame) * alpha + out * (1 - alpha) plane by plane, in place, only on the person's
        rectangles, with the Matte's LUT (if any) applied there alone; the chroma planes' alpha is made
        from the Matte's small mask (or the alpha halved)."""
        alpha, lut, mask = matte.alpha, matte.lut, matte.mask
        w, h = i420.size(frame)
        spans = self.spans.find(alpha, lut, mask)
        if not spans:
            return out
        # the chroma planes' alpha: the small mask scaled to their size (or the full matte halved), mapped
        # and inverted whole: at a quarter of the frame's pixels, one call each is cheaper than one a span
        cv2.resize(alpha if mask is None else mask, (w // 2, h // 2), dst=self._alpha_half,
                   interpolation=cv2.INTER_AREA if mask is None else cv2.INTER_LINEAR)
        if lut is not None:
            cv2.LUT(self._alpha_half, lut, dst=self._alpha_half)
        cv2.bitwise_not(self._alpha_half, dst=self._inv_half)
        fy, fu, fv = i420.planes(frame)
        oy, ou, ov = i420.planes(out)
        luma, chroma = ((fy, oy, i420.LIMIT_Y),), ((fu, ou, i420.LIMIT_C), (fv, ov, i420.LIMIT_C))
        for y0, y1, x0, x1, solid in spans:
            # span edges are multiples of 16 px across and of the (even) strip height down, or the frame's
            # (even) edge: they halve exactly onto the chroma planes
            box = (slice(y0, y1), slice(x0, x1))
            half = (slice(y0 // 2, y1 // 2), slice(x0 // 2, x1 // 2))
            if solid:  # all person: the frame, in the output's range
                for planes, b in ((luma, box), (chroma, half)):
                    for src, dst, ab in planes:
                        i420.scale_plane(src[b], ab, dst[b])
                continue
            a = alpha[box]
            if lut is not None:
                a = cv2.LUT(a, lut, dst=self._a[box])
            inv = cv2.bitwise_not(a, dst=self._inv[box])
            self._blend_box(luma, box, a, inv, self._fg[box])
            self._blend_box(chroma, half, self._alpha_half[half], self._inv_half[half], self._fg_half[half])
        return out

    @staticmethod
    def _blend_box(planes: tuple[Plane, ...], box: tuple[slice, slice], a: np.ndarray, inv: np.ndarray,
                   fg: np.ndarray) -> None:
        """dst[box] = limited(src[box]) * a + dst[box] * inv for each (src, dst, range) plane."""
        scale = 1.0 / 255.0
        for src, dst, ab in planes:
            o = dst[box]
            i420.scale_plane(src[box], ab, fg)
            cv2.multiply(fg, a, dst=fg, scale=scale)
            cv2.multiply(o, inv, dst=o, scale=scale)
            cv2.add(fg, o, dst=o)
