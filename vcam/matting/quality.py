"""`[matte] quality = "best"`: more model passes for a still picture in file mode (`vcam apply`, `vcam eval`).

Why: the live path runs the model once a frame within its budget; a still may spend more, and what the
model gets wrong on varied pictures is partly not mirror-symmetric and partly a matter of scale
(docs/matte.md, "Every kind of picture"):
  1. flip averaging: the model also sees the picture mirrored, and the two masks (the mirrored one
     mirrored back) are averaged;
  2. a second look at the people: the model sees a 256x256 picture, so a distant person, or a group in a
     wide street scene, gets a few dozen of its pixels. When the people (confidence >= 50%) fill no more
     than CROP_MAX_AREA of the picture, the model runs again (flip-averaged too) on their bounding box
     grown by CROP_MARGIN, and that mask replaces the first inside the box.
The mask comes back at the picture's own size; the matte builder then refines it with the colour guide
(matte.py). `BestStills` runs this in place of Matting.run for the stills of `vcam apply` and `vcam eval`
(compositing/engine.py), so the live path (matting.py) stays as it is.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from vcam.compositing.blur import blur_factor
from vcam.config import MatteSettings
from vcam.matting.matte import Matte
from vcam.matting.matting import Matting

CROP_MARGIN = 0.1     # the box grows by this share of its width and height on each side (and 2 px)
CROP_MAX_AREA = 0.8   # no second look when the box would cover more of the picture than this


def _region(segmenter, frame: np.ndarray, box: tuple[int, int, int, int], flip: bool) -> np.ndarray:
    """The model's confidence for frame[y0:y1, x0:x1] at that region's size (uint8), flip-averaged."""
    x0, y0, x1, y1 = box
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    size = (x1 - x0, y1 - y0)
    conf = cv2.resize(segmenter.segment(crop), size, interpolation=cv2.INTER_LINEAR)
    if flip:
        mirrored = cv2.resize(segmenter.segment(cv2.flip(crop, 1)), size, interpolation=cv2.INTER_LINEAR)
        cv2.flip(mirrored, 1, dst=mirrored)
        conf = cv2.addWeighted(conf, 0.5, mirrored, 0.5, 0.0)
    return conf


def person_box(confidence: np.ndarray, margin: float = CROP_MARGIN) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the box around every pixel of >= 50% confidence, grown by `margin` and 2 px,
    within the picture; None if there is no such pixel."""
    rows = np.flatnonzero(cv2.reduce(confidence, 1, cv2.REDUCE_MAX).ravel() >= 128)
    cols = np.flatnonzero(cv2.reduce(confidence, 0, cv2.REDUCE_MAX).ravel() >= 128)
    if rows.size == 0:
        return None
    h, w = confidence.shape
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    mx, my = int(margin * (x1 - x0)) + 2, int(margin * (y1 - y0)) + 2
    return int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my))


def best_confidence(segmenter, frame: np.ndarray, flip: bool = True, crop: bool = True) -> np.ndarray:
    """The person confidence (uint8, the picture's size) of a BGR still, from two to four model passes."""
    h, w = frame.shape[:2]
    confidence = _region(segmenter, frame, (0, 0, w, h), flip)
    box = person_box(confidence) if crop else None
    if box is not None:
        x0, y0, x1, y1 = box
        if (x1 - x0) * (y1 - y0) <= CROP_MAX_AREA * w * h and min(x1 - x0, y1 - y0) >= 16:
            confidence[y0:y1, x0:x1] = _region(segmenter, frame, box, flip)
    return confidence


class BestStills:
    """Matting.run for a BGR still with quality = "best": the same segmenter, builder and Matte, with
    best_confidence() in place of the single model pass, kept out of Matting so the live path stays lean."""

    def __init__(self, matting: Matting) -> None:
        self.matting = matting

    def run(self, frame: np.ndarray, matte: MatteSettings | None = None, *, blur: int | None = None,
            into: Matte | None = None) -> Matte:
        """The Matte of the still `frame` (BGR), as Matting.run() gives it; `into` refilled, or a new one."""
        m = self.matting
        t0 = time.perf_counter()
        reduced = m.reduced
        reduced.set(frame)
        h, w = reduced.hw
        confidence = best_confidence(m.segmenter, frame)
        t1 = time.perf_counter()
        into = m.prepare(matte, (w, h), into)
        m.builder.build_matte(confidence, frame, reduced, into, colour=True)
        t2 = time.perf_counter()
        m.times.segment, m.times.matte = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        into.keep_small(None if blur is None else reduced.by(blur_factor(blur, h)))
        return into
