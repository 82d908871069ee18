"""Compositing for the live pipeline, in I420 (vcam/i420.py): the same effects as vcam/effects.py, plane
by plane, straight into the frame the virtual camera is sent. The camera frame comes in full range and
the result goes out in limited range: the frame's pixels are rescaled as they are copied or blended
(cv2.convertScaleAbs in place of a copy costs the same), so no pass is spent on the range alone.

Why a second compositor: the live frame never exists in BGR (decoded to planes, sent as planes), and a
plane-by-plane blend moves half the bytes of a BGR one. The chroma planes have half the resolution, so
they are blended with the alpha matte at half size, made from the same small mask as the full one.
Person spans, the deferred soft-edge LUT and the blur's small picture are shared with the BGR
compositor, so both give the same look (`vcam apply` and `vcam eval` use the BGR one).
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.frames import i420
from vcam.compositing.backgrounds import Background, ColorBackground
from vcam.compositing.compositor_bgr import Compositor, blur_factor


class I420Compositor(Compositor):
    """Per-stream compositor for I420 frames; its buffers follow the frame size."""

    # Taller strips than BGR's (fewer spans, each blended in more calls: three planes): at 720p the
    # compositor thread measured 2.62 instead of 2.75-2.88 ms a blur frame with 6 strips instead of 12.
    strip_rows, min_strips = 120, 6

    def __init__(self) -> None:
        super().__init__()
        self._hw: tuple[int, int] | None = None

    def _ensure_planar(self, h: int, w: int) -> None:
        if self._hw == (h, w):
            return
        self._hw = (h, w)
        full, half = (h, w), (h // 2, w // 2)
        self._a, self._inv, self._fg = (np.empty(full, np.uint8) for _ in range(3))
        self._alpha_half, self._inv_half, self._fg_half = (np.empty(half, np.uint8) for _ in range(3))

    # -- backgrounds --------------------------------------------------------------------------------------
    def _draw_blur(self, frame: np.ndarray, strength: int, small: np.ndarray | None, out: np.ndarray) -> None:
        """The blurred frame into `out`: the frame's small Y, Cr, Cb picture (Reducer.ycc) blurred like the
        BGR compositor blurs its small BGR one (a blur commutes with the colour conversion), then each
        plane scaled up to its size."""
        w, h = i420.size(frame)
        factor = blur_factor(strength, h)
        if small is None or small.shape != (h // factor, w // factor, 3):
            self._reducer.set(frame)
            small = self._reducer.ycc(factor)
        blurred = self._blur_small(small, strength, factor)
        if getattr(self, "_small_planes", [np.empty(0)])[0].shape != blurred.shape[:2]:
            self._small_planes = [np.empty(blurred.shape[:2], np.uint8) for _ in range(3)]
        cv2.split(blurred, self._small_planes)
        for plane, ab in zip(self._small_planes, (i420.LIMIT_Y, i420.LIMIT_C, i420.LIMIT_C)):
            i420.scale_plane(plane, ab, plane)  # to the output's range while small
        y, u, v = i420.planes(out)
        for small_plane, plane in ((self._small_planes[0], y), (self._small_planes[2], u), (self._small_planes[1], v)):
            cv2.resize(small_plane, plane.shape[::-1], dst=plane, interpolation=cv2.INTER_LINEAR)

    def _draw_desaturated(self, frame: np.ndarray, out: np.ndarray) -> None:
        h = i420.size(frame)[1]
        i420.scale_plane(frame[:h], i420.LIMIT_Y, out[:h])
        out[h:] = 128  # no colour

    def _draw_background(self, background: Background, size: tuple[int, int], t: float | None,
                         out: np.ndarray) -> None:
        np.copyto(out, background.frame_i420(size, t))

    # -- the blend ----------------------------------------------------------------------------------------
    def blend_i420(self, frame: np.ndarray, alpha: np.ndarray, out: np.ndarray, lut: np.ndarray | None = None,
                   source: np.ndarray | None = None) -> np.ndarray:
        """out = limited(frame) * alpha + out * (1 - alpha) plane by plane, in place, only where alpha > 0.
        `lut`, `source`: as Compositor.blend(); the chroma planes' alpha is made from `source`."""
        w, h = i420.size(frame)
        self._ensure_planar(h, w)
        spans = self.person_spans(alpha, lut, source)
        if not spans:
            return out
        # the chroma planes' alpha: the small mask scaled to their size (or the full matte halved), mapped
        # and inverted whole: at a quarter of the frame's pixels, one call each is cheaper than one a span
        cv2.resize(alpha if source is None else source, (w // 2, h // 2), dst=self._alpha_half,
                   interpolation=cv2.INTER_AREA if source is None else cv2.INTER_LINEAR)
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
    def _blend_box(planes, box: tuple[slice, slice], a: np.ndarray, inv: np.ndarray, fg: np.ndarray) -> None:
        """dst[box] = limited(src[box]) * a + dst[box] * inv for each (src, dst, range) plane; `fg` is scratch."""
        scale = 1.0 / 255.0
        for src, dst, ab in planes:
            o = dst[box]
            i420.scale_plane(src[box], ab, fg)
            cv2.multiply(fg, a, dst=fg, scale=scale)
            cv2.multiply(o, inv, dst=o, scale=scale)
            cv2.add(fg, o, dst=o)

    def composite(self, frame: np.ndarray, alpha: np.ndarray, effect: str, *,
                  background: Background | None = None, blur: int = 24,
                  key_color: tuple[int, int, int] = (0, 255, 0), dst: np.ndarray | None = None,
                  small: np.ndarray | None = None, lut: np.ndarray | None = None,
                  source: np.ndarray | None = None, t: float | None = None) -> np.ndarray:
        """Compositor.composite() for a full-range I420 `frame` (a camera frame): the composited frame in
        limited range, into `dst` if given, else into a buffer reused by the next call. `dst` must not
        be `frame`. "none" too makes a copy: the output's range."""
        if not i420.is_i420(frame):
            raise ValueError("I420Compositor takes I420 frames")
        size = i420.size(frame)
        if dst is None:
            if getattr(self, "_out_i420", np.empty(0)).shape != frame.shape:
                self._out_i420 = np.empty_like(frame)
            dst = self._out_i420
        if effect == "none":
            return i420.limited(frame, dst)
        if effect == "blur":
            self._draw_blur(frame, blur, small, dst)
        elif effect == "desaturate":
            self._draw_desaturated(frame, dst)
        elif effect == "transparent":
            if self._key is None or self._key.bgr != tuple(key_color):
                self._key = ColorBackground(tuple(key_color))
            self._draw_background(self._key, size, t, dst)
        elif effect in ("replace", "video"):
            self._draw_background(background or self._white, size, t, dst)
        else:
            raise ValueError(f"unknown effect {effect!r}")
        return self.blend_i420(frame, alpha, dst, lut, source)
