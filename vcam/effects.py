"""Compositing stage: a BGR uint8 frame + an alpha matte -> the frame with its background changed.

Everything is uint8 OpenCV into buffers kept between frames (float numpy blends are 5-40x slower):
    out = frame * alpha/255 + background * (255 - alpha)/255
where each effect only decides what `background` is.
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.backgrounds import Background, ColorBackground

BLUR_DOWNSCALE = 4  # blur at 1/4 size, then upscale: the same look for a fraction of the cost


class Compositor:
    """Per-stream compositor; its buffers follow the frame size."""

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None
        # Solid backgrounds fill their buffer once per size, not every frame (3.7 ms at 720p).
        self._white = ColorBackground((255, 255, 255))  # replace's default
        self._key: ColorBackground | None = None

    def _ensure(self, h: int, w: int) -> None:
        if self._size == (h, w):
            return
        self._size = (h, w)
        self._alpha3 = np.empty((h, w, 3), np.uint8)
        self._inv3 = np.empty((h, w, 3), np.uint8)
        self._fg = np.empty((h, w, 3), np.uint8)
        self._bg = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self._gray = np.empty((h, w), np.uint8)
        self._half = np.empty((max(1, h // 2), max(1, w // 2), 3), np.uint8)
        sh, sw = max(1, h // BLUR_DOWNSCALE), max(1, w // BLUR_DOWNSCALE)
        self._small = np.empty((sh, sw, 3), np.uint8)
        self._small_blur = np.empty((sh, sw, 3), np.uint8)
        self._rgba = np.empty((h, w, 4), np.uint8)

    # -- backgrounds of the effects ---------------------------------------------------------------------
    def blurred(self, frame: np.ndarray, strength: int) -> np.ndarray:
        """The frame blurred with a radius of about `strength` output pixels."""
        h, w = frame.shape[:2]
        # Two halvings with INTER_LINEAR: at exactly 1/2 it averages each 2x2 block, so this is the 4x4 box
        # filter INTER_AREA would apply, at a quarter of INTER_AREA's cost.
        cv2.resize(frame, self._half.shape[1::-1], dst=self._half, interpolation=cv2.INTER_LINEAR)
        cv2.resize(self._half, self._small.shape[1::-1], dst=self._small, interpolation=cv2.INTER_LINEAR)
        # stackBlur: a Gaussian look at a cost that does not grow with the radius
        radius = max(1, round(strength / BLUR_DOWNSCALE))
        cv2.stackBlur(self._small, (2 * radius + 1, 2 * radius + 1), dst=self._small_blur)
        cv2.resize(self._small_blur, (w, h), dst=self._bg, interpolation=cv2.INTER_LINEAR)
        return self._bg

    def desaturated(self, frame: np.ndarray) -> np.ndarray:
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray)
        cv2.cvtColor(self._gray, cv2.COLOR_GRAY2BGR, dst=self._bg)
        return self._bg

    # -- the blend ----------------------------------------------------------------------------------------
    def blend(self, frame: np.ndarray, alpha: np.ndarray, background: np.ndarray,
              dst: np.ndarray | None = None) -> np.ndarray:
        out = self._out if dst is None else dst
        cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR, dst=self._alpha3)
        cv2.bitwise_not(self._alpha3, dst=self._inv3)
        cv2.multiply(frame, self._alpha3, dst=self._fg, scale=1.0 / 255.0)
        cv2.multiply(background, self._inv3, dst=out, scale=1.0 / 255.0)
        cv2.add(self._fg, out, dst=out)
        return out

    def composite(self, frame: np.ndarray, alpha: np.ndarray, effect: str, *,
                  background: Background | None = None, blur: int = 24,
                  key_color: tuple[int, int, int] = (0, 255, 0), dst: np.ndarray | None = None) -> np.ndarray:
        """The composited frame for one effect, into `dst` if given (the live pipeline's output buffer,
        saving a copy), else into a buffer reused by the next call."""
        h, w = frame.shape[:2]
        self._ensure(h, w)
        if effect == "none":
            return frame
        if effect == "blur":
            bg = self.blurred(frame, blur)
        elif effect == "desaturate":
            bg = self.desaturated(frame)
        elif effect == "transparent":
            if self._key is None or self._key.bgr != tuple(key_color):
                self._key = ColorBackground(tuple(key_color))
            bg = self._key.frame((w, h))
        elif effect in ("replace", "video"):
            bg = (background or self._white).frame((w, h))
        else:
            raise ValueError(f"unknown effect {effect!r}")
        return self.blend(frame, alpha, bg, dst)

    def rgba(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """BGRA with the matte as alpha: what `transparent` writes to PNG files."""
        h, w = frame.shape[:2]
        self._ensure(h, w)
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA, dst=self._rgba)
        self._rgba[:, :, 3] = alpha
        return self._rgba
