"""Compositing for BGR frames (`vcam apply`, `vcam eval`): a frame + its Matte -> the frame with its
background changed.

Everything is uint8 OpenCV into buffers kept between frames (float numpy blends are many times slower,
docs/performance.md):
    out = frame * alpha/255 + background * (255 - alpha)/255
where each effect only decides what `background` is. The effect draws its background straight into the
output buffer, and the blend then runs only on the person's rectangles (spans.py), with the matte's
soft-edge LUT applied there alone. The live pipeline's frames are I420: compositor_i420.py draws the
same effects plane by plane.
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.compositing.blur import blur_factor
from vcam.compositing.compositor import Compositor
from vcam.compositing.look import Look
from vcam.compositing.spans import PersonSpans
from vcam.matting.matte import Matte


class BGRCompositor(Compositor):
    """Compositor (compositor.py) for BGR uint8 frames (h, w, 3); "none" returns the frame itself.
    rgba(): BGRA with the matte as alpha (transparent PNG files)."""

    def __init__(self) -> None:
        super().__init__(PersonSpans())

    def _size(self, frame: np.ndarray) -> tuple[int, int]:
        if frame.ndim != 3:
            raise ValueError("BGRCompositor takes BGR frames")
        return frame.shape[1], frame.shape[0]

    def _make_buffers(self, size: tuple[int, int]) -> None:
        w, h = size
        self._alpha3 = np.empty((h, w, 3), np.uint8)
        self._inv3 = np.empty((h, w, 3), np.uint8)
        self._fg = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self._gray = np.empty((h, w), np.uint8)
        self._alpha1 = np.empty((h, w), np.uint8)  # the blended rectangles' alpha after the Matte's LUT
        self._rgba = np.empty((h, w, 4), np.uint8)

    # -- backgrounds of the effects ---------------------------------------------------------------------
    def _draw_none(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                   t: float | None) -> np.ndarray:
        return frame

    def _draw_blur(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                   t: float | None) -> np.ndarray:
        return self.blurred(frame, look.blur, out, matte.small)

    def _draw_desaturated(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                          t: float | None) -> np.ndarray:
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray)
        return cv2.cvtColor(self._gray, cv2.COLOR_GRAY2BGR, dst=out)

    def _draw_key(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                  t: float | None) -> np.ndarray:
        np.copyto(out, self._solids.key(look.key_color).frame(self._frame_size))
        return out

    def _draw_picture(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray,
                      t: float | None) -> np.ndarray:
        np.copyto(out, (look.background or self._solids.white).frame(self._frame_size, t))
        return out

    def blurred(self, frame: np.ndarray, strength: int, dst: np.ndarray,
                small: np.ndarray | None = None) -> np.ndarray:
        """The frame blurred with a radius of about `strength` output pixels, into `dst`. `small`: the
        frame already reduced by blur_factor() (Matte.small), when the caller has it."""
        h, w = frame.shape[:2]
        factor = blur_factor(strength, h)
        if small is None or small.shape != (h // factor, w // factor, 3):
            self._reducer.set(frame)
            small = self._reducer.by(factor)
        return cv2.resize(self._blur.apply(small, strength, factor), (w, h), dst=dst,
                          interpolation=cv2.INTER_LINEAR)

    # -- the blend ----------------------------------------------------------------------------------------
    def blend(self, frame: np.ndarray, matte: Matte, out: np.ndarray) -> np.ndarray:
        """out = frame * alpha + out * (1 - alpha), in place, computed only on the person's rectangles,
        with the Matte's LUT (if any) applied to the blended ones alone."""
        scale = 1.0 / 255.0
        alpha, lut = matte.alpha, matte.lut
        for y0, y1, x0, x1, solid in self.spans.find(alpha, lut, matte.mask):
            o = out[y0:y1, x0:x1]
            if solid:
                np.copyto(o, frame[y0:y1, x0:x1])
                continue
            a3 = self._alpha3[y0:y1, x0:x1]
            inv3 = self._inv3[y0:y1, x0:x1]
            fg = self._fg[y0:y1, x0:x1]
            a = alpha[y0:y1, x0:x1]
            if lut is not None:
                a = cv2.LUT(a, lut, dst=self._alpha1[y0:y1, x0:x1])
            cv2.cvtColor(a, cv2.COLOR_GRAY2BGR, dst=a3)
            cv2.bitwise_not(a3, dst=inv3)
            cv2.multiply(frame[y0:y1, x0:x1], a3, dst=fg, scale=scale)
            cv2.multiply(o, inv3, dst=o, scale=scale)
            cv2.add(fg, o, dst=o)
        return out

    def rgba(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """BGRA with the (final) matte as alpha: what `transparent` writes to PNG files."""
        h, w = frame.shape[:2]
        self._ensure((w, h))
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA, dst=self._rgba)
        self._rgba[:, :, 3] = alpha
        return self._rgba
