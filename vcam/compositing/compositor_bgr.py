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

from vcam.compositing.backgrounds import Background, ColorBackground
from vcam.frames.reduce import Reducer


def blur_factor(strength: int, height: int) -> int:
    """How much the frame is reduced before blurring (then upscaled): 1/4, or 1/8 for frames of 1080
    lines and more when the blur keeps a radius of at least 3 px there. The look is the same (mean
    difference 1.5 grey levels at 1080p, strength 24) and 1/8 saves 0.85 ms a 1080p frame; on smaller
    frames 1/8 would leave too few pixels, and the bilinear upscale's creases would show."""
    return 8 if strength >= 24 and height // 8 >= 135 else 4


# Horizontal strips for finding the person's extent: at least MIN_STRIPS, of at most STRIP_ROWS rows.
# Taller strips blend more of the frame, shorter ones make more cv2 calls; 60 rows measured best at
# 720p (12 strips) and 1080p (18 strips: 2.3 ms for the blend instead of 2.8 ms with 12).
STRIP_ROWS = 60
MIN_STRIPS = 12
ALIGN = 16  # span edges rounded out to this many pixels, so the SIMD loops run on whole vectors
MIN_SOLID = 64  # all-person column runs narrower than this are blended with their neighbours, not copied


def lut_bounds(lut: np.ndarray | None) -> tuple[int, int]:
    """(lo, hi): the smallest alpha values that `lut` (monotonic, like the matte's smoothstep) maps above
    0 and to 255 (256: none does); (1, 255) without a LUT."""
    if lut is None:
        return 1, 255
    above, full = np.flatnonzero(lut > 0), np.flatnonzero(lut == 255)
    return (int(above[0]) if above.size else 256), (int(full[0]) if full.size else 256)


class Compositor:
    """Per-stream compositor; its buffers follow the frame size."""

    strip_rows, min_strips = STRIP_ROWS, MIN_STRIPS  # person_spans()'s strips

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None
        # Solid backgrounds fill their buffer once per size, not every frame (3.7 ms at 720p).
        self._white = ColorBackground((255, 255, 255))  # replace's default
        self._key: ColorBackground | None = None
        self._reducer = Reducer()  # for callers that bring no reduced frame
        self._small_blur = np.empty((0, 0, 3), np.uint8)
        self._colmax: np.ndarray | None = None  # per strip: column-wise max and min of alpha
        self._colmin: np.ndarray | None = None
        self._source_key: tuple | None = None  # the geometry _extremes_from() last prepared for

    def _ensure(self, h: int, w: int) -> None:
        if self._size == (h, w):
            return
        self._size = (h, w)
        self._alpha3 = np.empty((h, w, 3), np.uint8)
        self._inv3 = np.empty((h, w, 3), np.uint8)
        self._fg = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self._gray = np.empty((h, w), np.uint8)
        self._alpha1 = np.empty((h, w), np.uint8)  # the blended rectangles' alpha after a deferred LUT
        self._rgba = np.empty((h, w, 4), np.uint8)

    # -- backgrounds of the effects ---------------------------------------------------------------------
    def blurred(self, frame: np.ndarray, strength: int, dst: np.ndarray,
                small: np.ndarray | None = None) -> np.ndarray:
        """The frame blurred with a radius of about `strength` output pixels, into `dst`. `small`: the
        frame already reduced by blur_factor() (a box average), when the caller has it."""
        h, w = frame.shape[:2]
        factor = blur_factor(strength, h)
        if small is None or small.shape != (h // factor, w // factor, 3):
            self._reducer.set(frame)
            small = self._reducer.by(factor)
        return cv2.resize(self._blur_small(small, strength, factor), (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)

    def _blur_small(self, small: np.ndarray, strength: int, factor: int) -> np.ndarray:
        """`small` (the frame reduced by `factor`, any 3 channels) blurred, into a buffer of ours."""
        shape = small.shape
        if self._small_blur.shape != shape:
            self._small_blur = np.empty(shape, np.uint8)
            self._box = np.empty(shape, np.uint8)
        # A triangle kernel of radius r (what cv2.stackBlur makes: a Gaussian look at a cost that does not
        # grow with the radius) is two box filters of width r + 1; two cv2.blur passes cost half as much.
        # An even width is off-centre by half a pixel: the second pass leans the other way.
        k = max(1, round(strength / factor)) + 1
        back = k // 2 if k % 2 else k // 2 - 1
        cv2.blur(small, (k, k), dst=self._box, borderType=cv2.BORDER_REPLICATE)
        return cv2.blur(self._box, (k, k), dst=self._small_blur, anchor=(back, back),
                        borderType=cv2.BORDER_REPLICATE)

    def desaturated(self, frame: np.ndarray, dst: np.ndarray) -> np.ndarray:
        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=self._gray)
        return cv2.cvtColor(self._gray, cv2.COLOR_GRAY2BGR, dst=dst)

    # -- the blend ----------------------------------------------------------------------------------------
    def person_spans(self, alpha: np.ndarray, lut: np.ndarray | None = None,
                     source: np.ndarray | None = None) -> list[tuple[int, int, int, int, bool]]:
        """(y0, y1, x0, x1, solid) rectangles covering every pixel whose alpha is above 0, strip by strip.

        `solid` rectangles are all person (alpha 255): the frame is copied there, not blended. Found from
        each strip's column-wise max and min, in numpy over all strips at once (about 0.15 ms at 720p).
        `lut`: the soft-edge mapping still to be applied to `alpha` (see blend()), if any. `source`: the
        small mask `alpha` was upsampled from bilinearly, if known: the extremes are then read from it
        (see _extremes_from()), which is cheaper than reading the whole alpha.
        """
        lo, hi = lut_bounds(lut)
        h, w = alpha.shape
        step = min(self.strip_rows, -(-h // self.min_strips))
        step += step % 2  # even, so the spans halve exactly onto an I420 frame's chroma planes
        n = -(-h // step)
        if self._colmax is None or self._colmax.shape != (n, w):
            self._colmax = np.empty((n, w), np.uint8)
            self._colmin = np.empty((n, w), np.uint8)
            self._solid = np.zeros((n, w + 2), np.int8)  # padded with a False column on each side
        if source is not None:
            self._extremes_from(source, h, w, step)
        else:
            full = h // step
            strips = alpha[:full * step].reshape(full, step, w)
            np.max(strips, axis=1, out=self._colmax[:full])
            np.min(strips, axis=1, out=self._colmin[:full])
            if full < n:  # the last, shorter strip
                np.max(alpha[full * step:], axis=0, out=self._colmax[full])
                np.min(alpha[full * step:], axis=0, out=self._colmin[full])
        present = self._colmax >= lo
        has = present.any(axis=1)
        first = present.argmax(axis=1) // ALIGN * ALIGN
        last = np.minimum(w, -(-(w - present[:, ::-1].argmax(axis=1)) // ALIGN) * ALIGN)
        np.greater_equal(self._colmin, hi, out=self._solid[:, 1:-1], casting="unsafe")
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

    def _extremes_from(self, source: np.ndarray, h: int, w: int, step: int) -> None:
        """Bounds of each strip's column-wise alpha max and min, read from the small `source` mask.

        A bilinear upsampling's pixel lies between the values of the source pixels around it, so the max
        (min) of the source over the rows and columns a strip's pixels are made from bounds the strip's
        own. One source pixel more on each side covers cv2.resize's rounding of the positions.
        """
        sh, sw = source.shape
        key = (sh, sw, h, w, step)
        if self._source_key != key:
            self._source_key = key
            y = np.arange(0, h, step)
            y_end = np.minimum(y + step, h)
            def source_row(row: float) -> int:  # the first of the two source rows output `row` is made from
                return int(np.floor((row + 0.5) * sh / h - 0.5))

            self._source_rows = [(max(0, source_row(a) - 1), min(sh, source_row(b - 1) + 3))
                                 for a, b in zip(y.tolist(), y_end.tolist())]
            x = np.floor((np.arange(w) + 0.5) * sw / w - 0.5).astype(np.intp)
            self._source_cols = np.clip(x, 0, sw - 1)
            self._gmax = np.empty((len(self._source_rows), sw + 3), np.uint8)
            self._gmin = np.empty((len(self._source_rows), sw + 3), np.uint8)
        gmax, gmin = self._gmax, self._gmin
        for i, (r0, r1) in enumerate(self._source_rows):
            np.max(source[r0:r1], axis=0, out=gmax[i, 1:sw + 1])
            np.min(source[r0:r1], axis=0, out=gmin[i, 1:sw + 1])
        # column c of the padded arrays is source column c - 1; pixel x is made from columns
        # cols[x] - 1 .. cols[x] + 2 at most (edges repeated)
        for g in (gmax, gmin):
            g[:, 0], g[:, sw + 1], g[:, sw + 2] = g[:, 1], g[:, sw], g[:, sw]
        wmax = np.maximum(np.maximum(gmax[:, :-3], gmax[:, 1:-2]), np.maximum(gmax[:, 2:-1], gmax[:, 3:]))
        wmin = np.minimum(np.minimum(gmin[:, :-3], gmin[:, 1:-2]), np.minimum(gmin[:, 2:-1], gmin[:, 3:]))
        np.take(wmax, self._source_cols, axis=1, out=self._colmax)
        np.take(wmin, self._source_cols, axis=1, out=self._colmin)

    def blend(self, frame: np.ndarray, alpha: np.ndarray, out: np.ndarray,
              lut: np.ndarray | None = None, source: np.ndarray | None = None) -> np.ndarray:
        """out = frame * alpha + out * (1 - alpha), in place, computed only where alpha > 0.

        `lut`: the matte's soft-edge mapping, when it was left to us (MatteBuilder.build(defer_lut=True)):
        it is applied only to the blended rectangles, which are a small part of the frame. `source`: the
        small mask `alpha` was upsampled from (see person_spans()).
        """
        scale = 1.0 / 255.0
        for y0, y1, x0, x1, solid in self.person_spans(alpha, lut, source):
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

    def composite(self, frame: np.ndarray, alpha: np.ndarray, effect: str, *,
                  background: Background | None = None, blur: int = 24,
                  key_color: tuple[int, int, int] = (0, 255, 0), dst: np.ndarray | None = None,
                  small: np.ndarray | None = None, lut: np.ndarray | None = None,
                  source: np.ndarray | None = None, t: float | None = None) -> np.ndarray:
        """The composited frame for one effect, into `dst` if given (the live pipeline's output buffer,
        saving a copy), else into a buffer reused by the next call. `small`: the frame reduced by
        blur_factor(), if the caller already made it (see blurred()). `lut`, `source`: see blend().
        `t`: the frame's time in seconds, which a video background keeps pace with (Background.frame).
        `dst` must not be `frame`."""
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
            np.copyto(out, (background or self._white).frame((w, h), t))
        else:
            raise ValueError(f"unknown effect {effect!r}")
        return self.blend(frame, alpha, out, lut, source)

    def rgba(self, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """BGRA with the matte as alpha: what `transparent` writes to PNG files."""
        h, w = frame.shape[:2]
        self._ensure(h, w)
        cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA, dst=self._rgba)
        self._rgba[:, :, 3] = alpha
        return self._rgba
