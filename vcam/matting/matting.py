"""The matting stage: a frame in, its `Matte` out (segmentation -> matte), for files and live alike.

Why one class: the model, the matte builder and the frame's reductions share one Reducer per frame
(the model's input, the guide and the blur's small picture all start from the same smaller copy), and
the schedule (schedule.py) decides per video frame how much of that work the frame needs; the callers
(the live pipeline, `vcam apply`, `vcam eval`) only ask for a frame's matte.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from vcam.compositing.blur import blur_factor
from vcam.config import MatteSettings, Settings
from vcam.frames.reduce import Reducer
from vcam.matting.matte import Matte, MatteBuilder
from vcam.matting.runtimes import SegmenterBase, open_segmenter
from vcam.matting.schedule import ModelSchedule, Work


@dataclass
class StageTimes:
    """Milliseconds the last frame spent in segmentation and matte (the live pipeline's stage stats)."""

    segment: float = 0.0
    matte: float = 0.0


class Matting:
    """Segmenter + matte builder for one stream of frames (or a batch of stills); not thread-safe.

    Inputs: frames, BGR (h, w, 3) or full-range I420 (frames/i420.py), uint8, any size (buffers follow).
    Outputs: a Matte per frame (matte.py): alpha at the frame's size with the soft-edge LUT still to
        apply and the small mask it was upsampled from; with `blur`, the frame's small picture too.
    Options: Settings' [segmentation] (model, model_path, runtime, interval: video only, the most frames
        in a row without the model; below that the schedule runs it when the person's edge moves, and
        the matte re-fits the carried mask to each frame's edges) and [matte] (replaceable per frame:
        run(matte=...)); `video`: a stream (schedule, temporal smoothing, timestamps) rather than stills.
    """

    def __init__(self, settings: Settings, *, video: bool) -> None:
        seg = settings.segmentation
        self.segmenter: SegmenterBase = open_segmenter(seg.model, seg.model_path, video=video,
                                                       runtime=seg.runtime)
        self.builder = MatteBuilder(settings.matte, video=video)
        self.schedule = ModelSchedule(seg.interval if video else 1)
        self.reduced = Reducer()  # the current frame's smaller copies, shared by model, matte and blur
        self.times = StageTimes()
        self.work = Work.MODEL  # what the last frame got
        self._confidence: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._last: Matte | None = None  # the Matte run() returned last

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> Matting:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        """Forget the previous frames (a cut in the input, e.g. after a camera reconnect): the next frame
        gets the model and a matte of its own."""
        self.builder.reset()
        self.schedule.reset()
        self._confidence = None

    def _work(self, reduced: Reducer, matte: MatteSettings | None) -> Work:
        """What this frame gets: the schedule's answer, unless the state forces more."""
        h, w = reduced.hw
        work = self.schedule.decide(reduced) if self.schedule.cap > 1 else Work.MODEL
        if self._confidence is None or self._shape != (h, w):
            return Work.MODEL
        if work is Work.KEEP and (self._last is None or self._last.alpha.shape != (h, w)
                                  or (matte is not None and matte is not self.builder.settings)):
            return Work.MATTE
        return work

    def prepare(self, matte: MatteSettings | None, size: tuple[int, int], into: Matte | None) -> Matte:
        """Before a matte is built: the builder takes `matte` if it changed, and the Matte to fill is
        `into` fitted to (width, height) `size`, or a new one."""
        if matte is not None and matte is not self.builder.settings:
            self.builder.configure(matte)
        if into is None:
            return Matte.blank(size)
        into.fit(size)
        return into

    def run(self, frame: np.ndarray, timestamp_ms: int | None = None, matte: MatteSettings | None = None,
            *, blur: int | None = None, into: Matte | None = None) -> Matte:
        """The Matte of `frame`: `into` refilled (its buffers reused), or a new one.

        `timestamp_ms`: the frame's time (video mode). `matte`: [matte] settings to use from this frame
        on (None: keep the current ones). `blur`: the blur strength when the effect is blur: the Matte
        then carries the frame's small picture for it (else `small` is None).
        """
        t0 = time.perf_counter()
        reduced = self.reduced
        reduced.set(frame)
        h, w = reduced.hw
        self.work = work = self._work(reduced, matte)
        if work is Work.MODEL:
            self._confidence = self.segmenter.segment(frame, timestamp_ms, reduced)
            self._shape = (h, w)
            self.schedule.ran_model(self._confidence)
        t1 = time.perf_counter()
        into = self.prepare(matte, (w, h), into)
        if work is Work.KEEP:  # nothing moved on the edge since the last matte: it is this frame's too
            last = self._last
            if into is not last:
                np.copyto(into.alpha, last.alpha)
                into.lut = last.lut
                into.keep_mask(last.mask)
        else:
            self.builder.build_matte(self._confidence, frame, reduced, into)
            self.schedule.built_matte()
        self._last = into
        t2 = time.perf_counter()
        self.times.segment, self.times.matte = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        if blur is None:
            into.keep_small(None)
        else:
            factor = blur_factor(blur, h)
            into.keep_small(reduced.ycc(factor) if reduced.planar else reduced.by(factor))
        return into
