"""Compositing stage: a BGR uint8 frame + an alpha matte -> the frame with its background changed.

Everything is uint8 OpenCV into buffers kept between frames (float numpy blends are 5-40x slower):
    out = frame * alpha/255 + background * (255 - alpha)/255
where each effect only decides what `background` is. The effect draws its background straight into the
output buffer, and the blend then runs only on the person's edge: in each horizontal strip of the frame,
columns whose alpha is 0 throughout are left as they are (the background), columns that are all person
get the frame copied, and only the rest is blended. The blend is memory-bound, so this saves in
proportion to the picture that is not edge: on the desk video the strips holding the person cover 38% of
the frame, most of it copied; the edge itself is about 3% of the frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.backgrounds import Background, ColorBackground
from vcam.reduce import Reducer


def blur_factor(strength: int, height: int) -> int:
    """How much the frame is reduced before blurring (then upscaled): 1/4, or 1/8 for frames of 1080
    lines and more when the blur keeps a radius of at least 3 px there. The look is the same (mean
    difference 1.5 grey levels at 1080p, strength 24) and 1/8 saves 0.85 ms a 1080p frame; on smaller
    frames 1/8 would leave too few pixels, and the bilinear upscale's creases would show."""
    return 8 if strength >= 24 and height // 8 >= 135 else 4


STRIPS = 12  # horizontal strips for finding the person's extent; each costs a few cv2 calls
ALIGN = 16  # span edges rounded out to this many pixels, so the SIMD loops run on whole vectors
MIN_SOLID = 64  # all-person column runs narrower than this are blended with their neighbours, not copied


class Compositor:
    """Per-stream compositor; its buffers follow the frame size."""

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None
        # Solid backgrounds fill their buffer once per size, not every frame (3.7 ms at 720p).
        self._white = ColorBackground((255, 255, 255))  # replace's default
        self._key: ColorBackground | None = None
        self._reducer = Reducer()  # for callers that bring no reduced frame
        self._small_blur = np.empty((0, 0, 3), np.uint8)

    def _ensure(self, h: int, w: int) -> None:
        if self._size == (h, w):
            return
        self._size = (h, w)
        self._alpha3 = np.empty((h, w, 3), np.uint8)
        self._inv3 = np.empty((h, w, 3), np.uint8)
        self._fg = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self._gray = np.empty((h, w), np.uint8)
        self._rgba = np.empty((h, w, 4), np.uint8)
        self._colmax: np.ndarray | None = None  # per strip: column-wise max and min of alpha
        self._colmin: np.ndarray | None = None

    # -- backgrounds of the effects ---------------------------------------------------------------------
    def blurred(self, frame: np.ndarray, strength: int, dst: np.ndarray,
                small: np.ndarray | None = None) -> np.ndarray:
        """The frame blurred with a radius of about `strength` output pixels, into `dst`. `small`: the
        frame already reduced by blur_factor() (a box average), when the caller has it."""
        h, w = frame.shape[:2]
        factor = blur_factor(strength, h)
        shape = (h // factor, w // factor, 3)
        if small is None or small.shape != shape:
            self._reducer.set(frame)
            small = self._reducer.by(factor)
        if self._small_blur.shape != shape:
            self._small_blur = np.empty(shape, np.uint8)
        # stackBlur: a Gaussian look at a cost that does not grow with the radius
        radius = max(1, round(strength / factor))
        cv2.stackBlur(small, (2 * radius + 1, 2 * radius + 1), dst=self._small_blur)
        return cv2.resize(self._small_blur, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)

    def desaturated(self, frame: np.ndarray, dst: np.ndarray) -> np.ndarray:
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray)
        return cv2.cvtColor(self._gray, cv2.COLOR_GRAY2BGR, dst=dst)

    # -- the blend ----------------------------------------------------------------------------------------
    def person_spans(self, alpha: np.ndarray) -> list[tuple[int, int, int, int, bool]]:
        """(y0, y1, x0, x1, solid) rectangles covering every pixel whose alpha is above 0, strip by strip.

        `solid` rectangles are all person (alpha 255): the frame is copied there, not blended. Found from
        each strip's column-wise max and min, in numpy over all strips at once (about 0.15 ms at 720p).
        """
        h, w = alpha.shape
        step = -(-h // STRIPS)
        n = -(-h // step)
        if self._colmax is None or self._colmax.shape != (n, w):
            self._colmax = np.empty((n, w), np.uint8)
            self._colmin = np.empty((n, w), np.uint8)
            self._solid = np.zeros((n, w + 2), np.int8)  # padded with a False column on each side
        full = h // step
        strips = alpha[:full * step].reshape(full, step, w)
        np.max(strips, axis=1, out=self._colmax[:full])
        np.min(strips, axis=1, out=self._colmin[:full])
        if full < n:  # the last, shorter strip
            np.max(alpha[full * step:], axis=0, out=self._colmax[full])
            np.min(alpha[full * step:], axis=0, out=self._colmin[full])
        present = self._colmax > 0
        has = present.any(axis=1)
        first = present.argmax(axis=1) // ALIGN * ALIGN
        last = np.minimum(w, -(-(w - present[:, ::-1].argmax(axis=1)) // ALIGN) * ALIGN)
        np.equal(self._colmin, 255, out=self._solid[:, 1:-1], casting="unsafe")
        change = np.diff(self._solid, axis=1)
        starts = np.nonzero(change == 1)  # (strip, column) of each solid run's start, row-major
        ends = np.nonzero(change == -1)[1]
        solid_runs: dict[int, list[tuple[int, int]]] = {}
        for i, a, b in zip(starts[0].tolist(), starts[1].tolist(), ends.tolist()):
            a, b = -(-a // ALIGN) * ALIGN, b // ALIGN * ALIGN
            if b - a >= MIN_SOLID:
                solid_runs.setdefault(i, []).append((a, b))
        spans = []
        for i in np.flatnonzero(has).tolist():
            y0, y1 = i * step, min(h, (i + 1) * step)
            at, x1 = int(first[i]), int(last[i])
            for a, b in solid_runs.get(i, ()):
                if a > at:
                    spans.append((y0, y1, at, a, False))
                spans.append((y0, y1, a, b, True))
                at = b
            if at < x1:
                spans.append((y0, y1, at, x1, False))
        return spans

    def blend(self, frame: np.ndarray, alpha: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = frame * alpha + out * (1 - alpha), in place, computed only where alpha > 0."""
        scale = 1.0 / 255.0
        for y0, y1, x0, x1, solid in self.person_spans(alpha):
            o = out[y0:y1, x0:x1]
            if solid:
                np.copyto(o, frame[y0:y1, x0:x1])
                continue
            a3 = self._alpha3[y0:y1, x0:x1]
            inv3 = self._inv3[y0:y1, x0:x1]
            fg = self._fg[y0:y1, x0:x1]
            cv2.cvtColor(alpha[y0:y1, x0:x1], cv2.COLOR_GRAY2BGR, dst=a3)
            cv2.bitwise_not(a3, dst=inv3)
            cv2.multiply(frame[y0:y1, x0:x1], a3, dst=fg, scale=scale)
            cv2.multiply(o, inv3, dst=o, scale=scale)
            cv2.add(fg, o, dst=o)
        return out

    def composite(self, frame: np.ndarray, alpha: np.ndarray, effect: str, *,
                  background: Background | None = None, blur: int = 24,
                  key_color: tuple[int, int, int] = (0, 255, 0), dst: np.ndarray | None = None,
                  small: np.ndarray | None = None) -> np.ndarray:
        """The composited frame for one effect, into `dst` if given (the live pipeline's output buffer,
        saving a copy), else into a buffer reused by the next call. `small`: the frame reduced by
        blur_factor(), if the caller already made it (see blurred()). `dst` must not be `frame`."""
        h, w = frame.shape[:2]
        self._ensure(h, w)
        if effect == "none":
            return frame
        out = self._out if dst is None else dst
        if effect == "blur":
            self.blurred(frame, blur, out, small)
        elif effect == "desaturate":
            self.desaturated(frame, out)
        elif effect == "transparent":
            if self._key is None or self._key.bgr != tuple(key_color):
                self._key = ColorBackground(tuple(key_color))
            np.copyto(out, self._key.frame((w, h)))
        elif effect in ("replace", "video"):
            np.copyto(out, (background or self._white).frame((w, h)))
        else:
            raise ValueError(f"unknown effect {effect!r}")
        return self.blend(frame, alpha, out)

    def rgba(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """BGRA with the matte as alpha: what `transparent` writes to PNG files."""
        h, w = frame.shape[:2]
        self._ensure(h, w)
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA, dst=self._rgba)
        self._rgba[:, :, 3] = alpha
        return self._rgba
