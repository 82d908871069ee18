"""Reduced copies of one frame, made once and shared by the stages that work on a smaller picture.

Why: the model's input, the matte's guide and the blurred background all start from a smaller copy of
the same frame. Reading the full frame once per consumer cost about 0.8 ms a 720p frame, and more at
1080p, where memory traffic is most of the cost.

A live I420 frame (vcam/frames/i420.py) is reduced from its planes: the half-size BGR copy is made of the Y
plane halved and the chroma planes as they are (already half size), and the grey copies come from the
Y plane alone, so only a third of the bytes a BGR frame has are read at full size.
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.frames import i420


class Reducer:
    """`by(f)`: the frame reduced by the whole factor f with INTER_AREA (a box average); `resize(size)`: the
    frame at any smaller size, by the largest whole factor first and INTER_LINEAR the rest of the way
    (about 6x cheaper than one INTER_AREA at a fractional ratio, and the same picture for our uses);
    if another reduction, no larger than that factor, was made already for this frame, it starts there.

    Buffers are kept between frames; call `set(frame)` for each new frame. Not thread-safe.
    """

    def __init__(self) -> None:
        self._frame: np.ndarray | None = None
        self._made: dict[int, np.ndarray] = {}
        self._buffers: dict[int, np.ndarray] = {}
        self._grays: dict[tuple[int, int], np.ndarray] = {}  # grey copies of reductions, by their shape
        self._planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # an I420 frame's
        self._plane_made: dict[tuple[int, int], np.ndarray] = {}  # (plane, factor) -> that plane reduced
        self._ycc_made: dict[int, np.ndarray] = {}
        self._scratch: dict[object, np.ndarray] = {}
        self.hw = (0, 0)  # the frame's (height, width)

    def set(self, frame: np.ndarray) -> None:
        """The frame (BGR, or I420 as a 2-D array) the next calls reduce (not copied: keep it unchanged
        until the next set())."""
        self._frame = frame
        self._plane_made, self._ycc_made = {}, {}
        if i420.is_i420(frame):
            self._planes = i420.planes(frame)
            self.hw = self._planes[0].shape
            self._made = {}
        else:
            self._planes = None
            self.hw = frame.shape[:2]
            self._made = {1: frame}

    @property
    def planar(self) -> bool:
        """The frame is I420: ycc() is available."""
        return self._planes is not None

    @property
    def frame(self) -> np.ndarray:
        if self._frame is None:
            raise RuntimeError("Reducer.set() was not called")
        return self._frame

    def _buffer(self, key: object, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._scratch.get(key)
        if buf is None or buf.shape != shape:
            buf = self._scratch[key] = np.empty(shape, np.uint8)
        return buf

    def _plane_by(self, index: int, factor: int) -> np.ndarray:
        """Plane `index` (0 Y, 1 U, 2 V) of an I420 frame reduced by `factor` (1 or a power of 2)."""
        if factor == 1:
            return self._planes[index]
        made = self._plane_made.get((index, factor))
        if made is None:
            src = self._plane_by(index, factor // 2)
            h, w = src.shape
            made = self._buffer((index, factor), (h // 2, w // 2))
            cv2.resize(src, (w // 2, h // 2), dst=made, interpolation=cv2.INTER_AREA)
            self._plane_made[(index, factor)] = made
        return made

    def ycc(self, factor: int) -> np.ndarray:
        """An I420 frame reduced by `factor` (a power of 2, at least 2) as one Y, Cr, Cb picture (full
        range, as cv2's YCrCb): Y reduced by `factor`, the chroma planes (already half size) by half as
        much. No colour conversion: what the blur and, converted at its own small size, the model take."""
        made = self._ycc_made.get(factor)
        if made is None:
            y = self._plane_by(0, factor)
            made = self._buffer(("ycc", factor), y.shape + (3,))
            cv2.merge((y, self._plane_by(2, factor // 2), self._plane_by(1, factor // 2)), dst=made)
            self._ycc_made[factor] = made
        return made

    def _planar_bgr(self, factor: int) -> np.ndarray:
        """by(factor) of an I420 frame, for callers that need BGR (the MediaPipe runtime, small frames)."""
        h, w = self.hw
        if factor == 1:
            limited = i420.limited(self.frame, self._buffer("limited", self.frame.shape))
            return i420.to_bgr(limited, self._buffer("bgr1", (h, w, 3)))
        ycc = self.ycc(factor)
        return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR, dst=self._buffer(("bgr", factor), ycc.shape))

    def by(self, factor: int) -> np.ndarray:
        """The frame reduced by `factor` in both directions (its size floor(w/f) x floor(h/f))."""
        made = self._made.get(factor)
        if made is not None:
            return made
        if self._planes is not None and (factor == 1 or factor & (factor - 1) == 0):
            self._made[factor] = self._planar_bgr(factor)
            return self._made[factor]
        h, w = self.hw
        # floor(floor(w / a) / b) == floor(w / (a * b)): a reduction of a reduction has the same size.
        # Even factors go by halving, INTER_AREA's fast path (1080p: 0.5 + 0.13 ms for /2 then /2,
        # 1.9 ms for /4 at once); others from the largest reduction made so far that divides them.
        if factor % 2 == 0:
            src = self.by(factor // 2)
        else:  # (an I420 frame has no by(1) until asked: then it is made, at a cost, for odd factors)
            divisors = [f for f in self._made if factor % f == 0]
            src = self._made[max(divisors)] if divisors else self.by(1)
        shape = (h // factor, w // factor, 3)
        buf = self._buffers.get(factor)
        if buf is None or buf.shape != shape:
            buf = self._buffers[factor] = np.empty(shape, np.uint8)
        cv2.resize(src, shape[1::-1], dst=buf, interpolation=cv2.INTER_AREA)
        self._made[factor] = buf
        return buf

    def _start(self, size: tuple[int, int]) -> np.ndarray:
        """The reduction to resize from for `size`: by the largest whole factor, or by one made already."""
        h, w = self.hw
        factor = max(1, min(w // size[0], h // size[1]))
        if factor not in self._made:  # one made already is as good a start and saves a full-frame read
            made = [f for f in self._made if f <= factor]
            factor = max(made) if made and (len(self._made) > 1 or self._planes is not None) else factor
        return self.by(factor)

    def resize(self, size: tuple[int, int], dst: np.ndarray) -> np.ndarray:
        """The frame at (width, height) `size` (no larger than the frame), into `dst`."""
        return cv2.resize(self._start(size), size, dst=dst, interpolation=cv2.INTER_LINEAR)

    def _halvings(self, size: tuple[int, int]) -> int:
        """The largest power of 2 by which an I420 frame's planes can be halved and still cover `size`."""
        h, w = self.hw
        factor = 1
        while w // (2 * factor) >= size[0] and h // (2 * factor) >= size[1]:
            factor *= 2
        return factor

    def colour(self, size: tuple[int, int], dst: np.ndarray) -> np.ndarray:
        """The frame in BGR at (width, height) `size` (uint8, 3 channels), into `dst`. An I420 frame's
        planes are reduced as they are (ycc()) and converted at `size`, where it costs least."""
        if self._planes is None:
            return self.resize(size, dst)
        ycc = self.ycc(max(2, self._halvings(size)))
        cv2.resize(ycc, size, dst=dst, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(dst, cv2.COLOR_YCrCb2BGR, dst=dst)

    def gray(self, size: tuple[int, int], dst: np.ndarray) -> np.ndarray:
        """The frame in grey at (width, height) `size`, into `dst`. The reduction it starts from is turned
        grey first, so the resize moves a third of the data (0.15 instead of 0.23 ms for the matte's
        guide at 720p). An I420 frame's grey is its (full-range) Y plane, reduced."""
        if self._planes is not None:
            plane = self._plane_by(0, self._halvings(size))
            return cv2.resize(plane, size, dst=dst, interpolation=cv2.INTER_LINEAR)
        start = self._start(size)
        buf = self._grays.get(start.shape[:2])
        if buf is None:
            buf = self._grays[start.shape[:2]] = np.empty(start.shape[:2], np.uint8)
        cv2.cvtColor(start, cv2.COLOR_BGR2GRAY, dst=buf)
        return cv2.resize(buf, size, dst=dst, interpolation=cv2.INTER_LINEAR)
