"""The engine: one frame in, the composited frame out (segmentation -> matte -> compositing).

Shared by file mode (`vcam apply`), the live daemon's worker and the benchmark, so all three run the
same code. `Look` is everything that decides how a frame is composited; the live pipeline swaps a whole
Look at once, so a frame never sees half of a change.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from vcam.compositing.backgrounds import Background
from vcam.compositing.look import Look
from vcam.config import MatteSettings, Settings
from vcam.compositing.compositor_bgr import Compositor, blur_factor
from vcam.matting.matte import MatteBuilder
from vcam.frames.reduce import Reducer
from vcam.matting.segmenter import Segmenter


@dataclass
class StageTimes:
    """Milliseconds the last frame spent in segmentation and matte (the live pipeline's stage stats)."""

    segment: float = 0.0
    matte: float = 0.0


class Engine:
    """Segmenter + matte builder + compositor for one stream of frames (or a batch of stills)."""

    def __init__(self, settings: Settings, *, video: bool) -> None:
        seg = settings.segmentation
        self.segmenter = Segmenter(seg.model, seg.model_path, video=video, runtime=seg.runtime)
        self.matte = MatteBuilder(settings.matte, video=video)
        # Video only: run the model on every `interval`-th frame; the matte stage re-fits the carried
        # mask to each new frame's edges, so the skipped frames still get a matte of their own.
        self.interval = seg.interval if video else 1
        self._frame_no = 0
        self._confidence: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self.compositor = Compositor()
        self.reduced = Reducer()  # the current frame's smaller copies, shared by the three stages
        self.times = StageTimes()

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def alpha(self, frame: np.ndarray, timestamp_ms: int | None = None,
              matte: MatteSettings | None = None, dst: np.ndarray | None = None,
              defer_lut: bool = False) -> np.ndarray:
        """The alpha matte (uint8, frame size, 255 = person), into `dst` if given, else a reused buffer.

        `defer_lut`: for compositing, which applies the soft-edge mapping on the edge only: the matte is
        then final only after `pending_lut()` (if not None) is applied (MatteBuilder.build).
        """
        t0 = time.perf_counter()
        self.reduced.set(frame)
        h, w = self.reduced.hw
        if self._frame_no % self.interval == 0 or self._confidence is None or self._shape != (h, w):
            self._confidence = self.segmenter.segment(frame, timestamp_ms, self.reduced)
            self._shape = (h, w)
        self._frame_no += 1
        t1 = time.perf_counter()
        if matte is not None and matte is not self.matte.settings:
            self.matte.configure(matte)
        alpha = self.matte.build(self._confidence, (w, h), frame, self.reduced, dst, defer_lut)
        t2 = time.perf_counter()
        self.times.segment, self.times.matte = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        return alpha

    def pending_lut(self) -> np.ndarray | None:
        """The soft-edge LUT the last alpha(defer_lut=True) left to the compositor, or None."""
        return self.matte.lut if self.matte.deferred else None

    def alpha_source(self) -> np.ndarray | None:
        """The small mask the last deferred alpha was upsampled from (reused by the next frame), or None."""
        return self.matte.source if self.matte.deferred else None

    def process(self, frame: np.ndarray, look: Look, timestamp_ms: int | None = None) -> np.ndarray:
        """The composited BGR frame. Reused buffer: copy it if you keep it past the next call."""
        if look.effect == "none":
            self.times = StageTimes()
            return frame
        alpha = self.alpha(frame, timestamp_ms, look.matte, defer_lut=True)
        small = self.reduced.by(blur_factor(look.blur, frame.shape[0])) if look.effect == "blur" else None
        out = self.compositor.composite(frame, alpha, look.effect, background=look.background,
                                        blur=look.blur, key_color=look.key_color, small=small,
                                        lut=self.pending_lut(), source=self.alpha_source(),
                                        t=None if timestamp_ms is None else timestamp_ms / 1000.0)
        return out
