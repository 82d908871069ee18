"""Where the person is, as rectangles: the compositors blend only there.

Why: the blend is memory-bound, so it costs in proportion to the pixels it touches. In each horizontal
strip of the frame, columns whose alpha is 0 throughout are left as they are (the background already
drawn), columns that are all person get the frame copied, and only the rest is blended: the person's
edge, a small part of the frame (docs/performance.md).
"""
from __future__ import annotations

import numpy as np

# Horizontal strips for finding the person's extent: at least MIN_STRIPS, of at most STRIP_ROWS rows.
# Taller strips blend more of the frame, shorter ones make more cv2 calls (docs/performance.md).
STRIP_ROWS = 60
MIN_STRIPS = 12
ALIGN = 16  # span edges rounded out to this many pixels, so the SIMD loops run on whole vectors
MIN_SOLID = 64  # all-person column runs narrower than this are blended with their neighbours, not copied

Span = tuple[int, int, int, int, bool]  # (y0, y1, x0, x1, solid)


def lut_bounds(lut: np.ndarray | None) -> tuple[int, int]:
    """(lo, hi): the smallest alpha values that `lut` (monotonic, like the matte's smoothstep) maps above
    0 and to 255 (256: none does); (1, 255) without a LUT."""
    if lut is None:
        return 1, 255
    above, full = np.flatnonzero(lut > 0), np.flatnonzero(lut == 255)
    return (int(above[0]) if above.size else 256), (int(full[0]) if full.size else 256)


class PersonSpans:
    """Finds the person's rectangles strip by strip; one per compositor (buffers follow the frame size)."""

    def __init__(self, strip_rows: int = STRIP_ROWS, min_strips: int = MIN_STRIPS) -> None:
        self.strip_rows, self.min_strips = strip_rows, min_strips
        self._grid: tuple[int, int] | None = None  # (strips, width) the extremes' buffers are for
        self._colmax = np.empty((0, 0), np.uint8)  # per strip: column-wise max and min of alpha
        self._colmin = np.empty((0, 0), np.uint8)
        self._solid = np.empty((0, 0), np.int8)
        self._mask_key: tuple | None = None  # the geometry _extremes_from_mask() last prepared for
        self._mask_rows: list[tuple[int, int]] = []
        self._mask_cols = np.empty(0, np.intp)
        self._gmax = np.empty((0, 0), np.uint8)
        self._gmin = np.empty((0, 0), np.uint8)

    def step(self, h: int) -> int:
        """Rows per strip for a frame `h` rows high: even, so spans halve exactly onto I420 chroma planes."""
        step = min(self.strip_rows, -(-h // self.min_strips))
        return step + step % 2

    def _ensure(self, n: int, w: int) -> None:
        if self._grid == (n, w):
            return
        self._grid = (n, w)
        self._colmax = np.empty((n, w), np.uint8)
        self._colmin = np.empty((n, w), np.uint8)
        self._solid = np.zeros((n, w + 2), np.int8)  # padded with a False column on each side

    def find(self, alpha: np.ndarray, lut: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> list[Span]:
        """(y0, y1, x0, x1, solid) rectangles covering every pixel whose alpha is above 0, strip by strip.

        `solid` rectangles are all person (alpha 255): the frame is copied there, not blended. Found from
        each strip's column-wise max and min, in numpy over all strips at once. `lut`: the soft-edge
        mapping still to be applied to `alpha` (Matte.lut), if any. `mask`: the small mask `alpha` was
        upsampled from bilinearly (Matte.mask), if known: the extremes are then read from it, which is
        cheaper than reading the whole alpha.
        """
        lo, hi = lut_bounds(lut)
        h, w = alpha.shape
        step = self.step(h)
        n = -(-h // step)
        self._ensure(n, w)
        if mask is not None:
            self._extremes_from_mask(mask, h, w, step)
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
        for i, a, b in zip(starts[0].tolist(), starts[1].tolist(), ends.tolist(), strict=True):
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

    def _extremes_from_mask(self, mask: np.ndarray, h: int, w: int, step: int) -> None:
        """Bounds of each strip's column-wise alpha max and min, read from the small `mask`.

        A bilinear upsampling's pixel lies between the values of the mask pixels around it, so the max
        (min) of the mask over the rows and columns a strip's pixels are made from bounds the strip's
        own. One mask pixel more on each side covers cv2.resize's rounding of the positions.
        """
        sh, sw = mask.shape
        key = (sh, sw, h, w, step)
        if self._mask_key != key:
            self._mask_key = key
            y = np.arange(0, h, step)
            y_end = np.minimum(y + step, h)

            def mask_row(row: float) -> int:  # the first of the two mask rows output `row` is made from
                return int(np.floor((row + 0.5) * sh / h - 0.5))

            self._mask_rows = [(max(0, mask_row(a) - 1), min(sh, mask_row(b - 1) + 3))
                               for a, b in zip(y.tolist(), y_end.tolist(), strict=True)]
            x = np.floor((np.arange(w) + 0.5) * sw / w - 0.5).astype(np.intp)
            self._mask_cols = np.clip(x, 0, sw - 1)
            self._gmax = np.empty((len(self._mask_rows), sw + 3), np.uint8)
            self._gmin = np.empty((len(self._mask_rows), sw + 3), np.uint8)
        gmax, gmin = self._gmax, self._gmin
        for i, (r0, r1) in enumerate(self._mask_rows):
            np.max(mask[r0:r1], axis=0, out=gmax[i, 1:sw + 1])
            np.min(mask[r0:r1], axis=0, out=gmin[i, 1:sw + 1])
        # column c of the padded arrays is mask column c - 1; pixel x is made from columns
        # cols[x] - 1 .. cols[x] + 2 at most (edges repeated)
        for g in (gmax, gmin):
            g[:, 0], g[:, sw + 1], g[:, sw + 2] = g[:, 1], g[:, sw], g[:, sw]
        wmax = np.maximum(np.maximum(gmax[:, :-3], gmax[:, 1:-2]), np.maximum(gmax[:, 2:-1], gmax[:, 3:]))
        wmin = np.minimum(np.minimum(gmin[:, :-3], gmin[:, 1:-2]), np.minimum(gmin[:, 2:-1], gmin[:, 3:]))
        np.take(wmax, self._mask_cols, axis=1, out=self._colmax)
        np.take(wmin, self._mask_cols, axis=1, out=self._colmin)
