"""The file engine: one BGR frame in, the composited frame out (matting -> BGR compositing).

For `vcam apply` and `vcam eval`, which work on BGR pictures and videos; the live pipeline runs the same
Matting with the I420 compositor on its own threads (live/pipeline.py).
"""
from __future__ import annotations

import numpy as np

from vcam.compositing.compositor_bgr import BGRCompositor
from vcam.compositing.effects import EFFECTS
from vcam.compositing.look import Look
from vcam.config import MatteSettings, Settings
from vcam.matting.matte import Matte
from vcam.matting.matting import Matting, StageTimes
from vcam.matting.quality import BestStills


class Engine:
    """Matting + BGR compositor for one stream of frames (or a batch of stills), so the file commands
    make a picture in one call.

    Inputs: BGR uint8 frames, with their time (ms) in video mode, and the Look for each.
    Outputs: process(): the composited BGR frame; alpha(): the final alpha matte (masks, eval);
        matte(): the frame's Matte. Each in a buffer reused by the next call.
    Options: Settings' [segmentation] and [matte] (Matting); `video`: a stream rather than stills, which
        with [matte] quality = "best" get more model passes and a colour guide (matting/quality.py).
    """

    def __init__(self, settings: Settings, *, video: bool) -> None:
        self.matting = Matting(settings, video=video)
        self.stills = None if video else BestStills(self.matting)
        self.compositor = BGRCompositor()
        self._matte = Matte.blank((0, 0))  # refilled for each frame
        self._alpha = np.empty((0, 0), np.uint8)  # alpha()'s result

    @property
    def times(self) -> StageTimes:
        """The last frame's segmentation and matte times (ms)."""
        return self.matting.times

    def close(self) -> None:
        self.matting.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def matte(self, frame: np.ndarray, timestamp_ms: int | None = None, matte: MatteSettings | None = None,
              blur: int | None = None) -> Matte:
        """The frame's Matte (matting/matte.py), in a value reused by the next call."""
        quality = (matte or self.matting.builder.settings).quality
        if self.stills is not None and quality == "best" and frame.ndim == 3:
            return self.stills.run(frame, matte, blur=blur, into=self._matte)
        return self.matting.run(frame, timestamp_ms, matte, blur=blur, into=self._matte)

    def alpha(self, frame: np.ndarray, timestamp_ms: int | None = None,
              matte: MatteSettings | None = None) -> np.ndarray:
        """The final alpha matte (uint8, frame size, 255 = person), in a buffer reused by the next call."""
        m = self.matte(frame, timestamp_ms, matte)
        if self._alpha.shape != m.alpha.shape:
            self._alpha = np.empty_like(m.alpha)
        return m.final(self._alpha)

    def process(self, frame: np.ndarray, look: Look, timestamp_ms: int | None = None) -> np.ndarray:
        """The composited BGR frame. Reused buffer: copy it if you keep it past the next call."""
        effect = EFFECTS.get(look.effect)
        if effect is None:
            raise ValueError(f"unknown effect {look.effect!r}")
        if not effect.needs_matte:
            self.matting.times = StageTimes()
            return self.compositor.composite(frame, None, look)
        m = self.matte(frame, timestamp_ms, look.matte, blur=look.blur if effect.needs_small else None)
        t = None if timestamp_ms is None else timestamp_ms / 1000.0
        return self.compositor.composite(frame, m, look, t=t)
