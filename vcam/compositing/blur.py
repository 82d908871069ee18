"""The blur effect's background: the frame blurred at a fraction of its size, then scaled back up.

Why small: a blur of radius r costs the same at 1/4 of the size with radius r/4, and the bilinear
upscale of a blurred picture is indistinguishable from the full-size blur; the small picture is the
same reduction the model and the matte's guide start from (frames/reduce.py), so it is made once.
Both compositors use it: BGR on a BGR small picture, I420 on the Y/Cr/Cb one (a blur commutes with
the colour conversion).
"""
from __future__ import annotations

import cv2
import numpy as np


def blur_factor(strength: int, height: int) -> int:
    """How much the frame is reduced before blurring (then upscaled): 1/4, or 1/8 for frames of 1080
    lines and more when the blur keeps a radius of at least 3 px there, where it looks the same for
    less work (docs/performance.md); on smaller frames 1/8 would leave too few pixels, and the bilinear
    upscale's creases would show."""
    return 8 if strength >= 24 and height // 8 >= 135 else 4


class SmallBlur:
    """The small picture blurred with a triangle kernel, into a buffer kept between frames."""

    def __init__(self) -> None:
        self._box = np.empty((0, 0, 3), np.uint8)
        self._out = np.empty((0, 0, 3), np.uint8)

    def _ensure(self, shape: tuple[int, ...]) -> None:
        if self._out.shape == shape:
            return
        self._box = np.empty(shape, np.uint8)
        self._out = np.empty(shape, np.uint8)

    def apply(self, small: np.ndarray, strength: int, factor: int) -> np.ndarray:
        """`small` (the frame reduced by `factor`, any 3 channels) blurred with a radius of about
        `strength` frame pixels; the result is ours, reused by the next call."""
        self._ensure(small.shape)
        # A triangle kernel of radius r (what cv2.stackBlur makes: a Gaussian look at a cost that does not
        # grow with the radius) is two box filters of width r + 1; two cv2.blur passes cost half as much.
        # An even width is off-centre by half a pixel: the second pass leans the other way.
        k = max(1, round(strength / factor)) + 1
        back = k // 2 if k % 2 else k // 2 - 1
        cv2.blur(small, (k, k), dst=self._box, borderType=cv2.BORDER_REPLICATE)
        return cv2.blur(self._box, (k, k), dst=self._out, anchor=(back, back),
                        borderType=cv2.BORDER_REPLICATE)
