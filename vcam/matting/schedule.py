"""When a video frame needs the model: the model is most of a frame's CPU, and a person sitting still
gives it the same picture again and again.

The decision is made per frame from a small grey copy of it (the "probe", made from the reductions the
model, the guide and the blur share): the model runs when the picture moved, since the frame the model
last saw, on the person's edge (the band around the last mask's boundary: a face talking or a hand
moving in front of the body does not move the mask). In between, the carried mask is re-fitted to each
frame by the matte's guided filter; when the edge band did not change even since the last matte was
built, the matte itself is kept. A pixel has moved when it changed by more than a shift of half a probe
pixel would change it (half its reference's gradient), and by at least CHANGE_LEVELS: a fixed level counted
compression noise and the sub-pixel drift of a hand-held camera on textured backgrounds (foliage, a
bookshelf) as motion, and ran the model on nearly every frame of a person sitting still. The numbers are
chosen, and their cost measured, in docs/performance.md.
"""
from __future__ import annotations

from enum import Enum

import cv2
import numpy as np

from vcam.frames.reduce import Reducer

PROBE_WIDTH = 160  # px across of the probe (its height follows the frame's aspect)
CHANGE_LEVELS = 4  # a probe pixel that changed by less than this many grey levels has not moved (noise)
SHIFT = 0.5  # ... nor one that changed by less than a shift of this many probe px makes (x its gradient)
BAND_RADIUS = 3  # probe px either side of the mask's boundary that count as its edge
RUN_SHARE = 0.01  # the model runs when this share of the edge band has moved since its last frame
KEEP_SHARE = 0.005  # the matte is kept when less than this share of the band moved since it was built


class Work(Enum):
    """What a frame gets: the model and the matte, the matte on the carried mask, or the last matte."""

    MODEL = "model"
    MATTE = "matte"
    KEEP = "keep"


class ModelSchedule:
    """Decides, frame by frame, how much of the matting a video frame needs; one per stream.

    `cap`: the most frames in a row that may go without the model ([segmentation] interval: 1 = every
    frame). The first frame, a new size and the frame after reset() always get the model.
    """

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._probe = np.empty((0, 0), np.uint8)
        self._model_probe = np.empty((0, 0), np.uint8)  # the probe of the frame the model last ran on
        self._matte_probe = np.empty((0, 0), np.uint8)  # ... and of the frame the matte was last built on
        self._model_limit = np.empty((0, 0), np.uint8)  # the change that counts as moved, per probe px,
        self._matte_limit = np.empty((0, 0), np.uint8)  # against each of the two (_limit())
        self._gx = self._gy = np.empty((0, 0), np.float32)
        self._band = np.empty((0, 0), np.uint8)  # 255 on the last mask's edge, at probe size
        self._band_px = 0
        self._diff = np.empty((0, 0), np.uint8)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND_RADIUS + 1,) * 2)
        self._since_model = 0
        self._valid = False
        self.frames = self.model_runs = self.mattes = 0  # counters: frames decided, models run, mattes built

    def reset(self) -> None:
        """A cut in the input: the next frame gets the model."""
        self._valid = False

    def _make_probe(self, reduced: Reducer) -> np.ndarray:
        """This frame's probe: grey, PROBE_WIDTH across."""
        h, w = reduced.hw
        size = (min(w, PROBE_WIDTH), max(1, round(min(w, PROBE_WIDTH) * h / w)))
        if self._probe.shape != size[::-1]:
            self._probe = np.empty(size[::-1], np.uint8)
            self._valid = False
        if reduced.planar:
            return reduced.gray(size, self._probe)
        # a BGR frame (files): made aside, so the reductions the model and the guide start from do not
        # depend on whether the model runs; halved (INTER_AREA's fast path) while at least 4x the probe,
        # turned grey, then averaged the rest of the way
        small = reduced.frame
        while small.shape[1] >= 4 * size[0] and small.shape[0] >= 4 * size[1]:
            half = (small.shape[1] // 2, small.shape[0] // 2)
            small = cv2.resize(small, half, interpolation=cv2.INTER_AREA)
        return cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), size, dst=self._probe,
                          interpolation=cv2.INTER_AREA)

    def _limit(self, reference: np.ndarray, dst: np.ndarray) -> None:
        """Per probe pixel, the change from `reference` that counts as moved: what a shift of SHIFT probe
        px makes there (SHIFT x the gradient's magnitude), at least CHANGE_LEVELS, rounded up."""
        scale = SHIFT / 8  # a 3x3 Sobel is 8x the gradient
        cv2.Sobel(reference, cv2.CV_32F, 1, 0, dst=self._gx, ksize=3, scale=scale)
        cv2.Sobel(reference, cv2.CV_32F, 0, 1, dst=self._gy, ksize=3, scale=scale)
        cv2.magnitude(self._gx, self._gy, self._gx)
        cv2.max(self._gx, float(CHANGE_LEVELS), dst=self._gx)
        cv2.convertScaleAbs(self._gx, dst=dst, beta=0.499)  # rounded up (saturated at 255)

    def _moved(self, reference: np.ndarray, limit: np.ndarray) -> float:
        """The share of the edge band whose probe pixels moved (changed by `limit`) since `reference`."""
        if self._band_px == 0:
            return 0.0
        cv2.absdiff(self._probe, reference, dst=self._diff)
        cv2.compare(self._diff, limit, cv2.CMP_GE, dst=self._diff)
        cv2.bitwise_and(self._diff, self._band, dst=self._diff)
        return cv2.countNonZero(self._diff) / self._band_px

    def decide(self, reduced: Reducer) -> Work:
        """The work this frame (set in `reduced`) needs; then say what it got: ran_model(), built_matte()."""
        self._make_probe(reduced)
        self.frames += 1
        if (not self._valid or self._since_model + 1 >= self.cap
                or self._model_probe.shape != self._probe.shape):
            return Work.MODEL
        if self._moved(self._model_probe, self._model_limit) >= RUN_SHARE:
            return Work.MODEL
        self._since_model += 1
        return Work.KEEP if self._moved(self._matte_probe, self._matte_limit) < KEEP_SHARE else Work.MATTE

    def ran_model(self, confidence: np.ndarray) -> None:
        """The model ran on the frame decide() was last asked about and gave `confidence`."""
        self.model_runs += 1
        self._since_model = 0
        shape = self._probe.shape
        if not self._probe.size:  # decide() was not asked (cap 1: the model on every frame)
            return
        self._valid = True
        if self._model_probe.shape != shape:
            self._model_probe, self._matte_probe = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
            self._model_limit, self._matte_limit = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
            self._band, self._diff = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
            self._gx, self._gy = np.empty(shape, np.float32), np.empty(shape, np.float32)
        np.copyto(self._model_probe, self._probe)
        self._limit(self._model_probe, self._model_limit)
        # the mask's boundary at probe size, widened by BAND_RADIUS each way (a bilinear shrink: INTER_AREA
        # at this ratio cost ten times as much, and the threshold follows)
        cv2.resize(confidence, shape[::-1], dst=self._diff, interpolation=cv2.INTER_LINEAR)
        cv2.threshold(self._diff, 127, 255, cv2.THRESH_BINARY, dst=self._diff)
        cv2.morphologyEx(self._diff, cv2.MORPH_GRADIENT, self._kernel, dst=self._band)
        self._band_px = cv2.countNonZero(self._band)

    def built_matte(self) -> None:
        """A matte was built for the frame decide() was last asked about."""
        self.mattes += 1
        if self._matte_probe.shape == self._probe.shape:
            np.copyto(self._matte_probe, self._probe)
            if self._since_model == 0:  # the model's frame: the same limit
                np.copyto(self._matte_limit, self._model_limit)
            else:
                self._limit(self._matte_probe, self._matte_limit)
