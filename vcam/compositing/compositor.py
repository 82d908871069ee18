"""What every compositor is: a frame, its Matte and the Look in, the frame with its background changed out.

Why a base: the BGR compositor (`vcam apply`, `vcam eval`) and the I420 one (the live pipeline) draw the
same effects in two pixel formats; choosing the effect's drawing, checking the matte and blending after
it are the same for both, so they live here once and each format keeps only its drawing and its blend.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from vcam.compositing.backgrounds import SolidColors
from vcam.compositing.blur import SmallBlur
from vcam.compositing.effects import EFFECTS
from vcam.compositing.look import Look
from vcam.compositing.spans import PersonSpans
from vcam.frames.reduce import Reducer
from vcam.matting.matte import Matte

# (frame, matte, look, out, t) -> `out` with the effect's background drawn (or, for an effect that needs
# no matte, the finished frame)
Draw = Callable[[np.ndarray, "Matte | None", Look, np.ndarray, "float | None"], np.ndarray]


class Compositor(ABC):
    """One stream's compositor; its buffers follow the frame size.

    Inputs: a frame in the subclass's format; its Matte (matting/matte.py; None only for an effect whose
        registry entry says needs_matte=False); the Look (effect, background, blur, key colour).
    Outputs: the composited frame, into `out` if given, else into a buffer reused by the next call.
    Options: none; everything that changes the picture is in the Look, per frame.

    A subclass gives `_size()` and `_make_buffers()` (its frame-sized buffers, `_out` among them), a
    `_draw_<name>` method for each effect registry entry's `draws`, and `blend()`.
    """

    def __init__(self, spans: PersonSpans) -> None:
        self.spans = spans
        self._solids = SolidColors()  # filled once per size, not every frame
        self._blur = SmallBlur()
        self._reducer = Reducer()  # the blur's small picture when the Matte brings none
        self._frame_size: tuple[int, int] | None = None  # (width, height) the buffers are for
        self._out: np.ndarray | None = None
        self._draw: dict[str, Draw] = {name: getattr(self, f"_draw_{e.draws}") for name, e in EFFECTS.items()
                                       if e.draws}

    @abstractmethod
    def _size(self, frame: np.ndarray) -> tuple[int, int]:
        """(width, height) of `frame`; ValueError if it is not in this compositor's format."""

    @abstractmethod
    def _make_buffers(self, size: tuple[int, int]) -> None:
        """The frame-sized buffers for (width, height) `size`."""

    def _ensure(self, size: tuple[int, int]) -> None:
        """The frame-sized buffers, made once per size."""
        if self._frame_size != size:
            self._frame_size = size
            self._make_buffers(size)

    @abstractmethod
    def blend(self, frame: np.ndarray, matte: Matte, out: np.ndarray) -> np.ndarray:
        """out = frame * alpha + out * (1 - alpha), in place, on the person's rectangles (spans.py)."""

    def composite(self, frame: np.ndarray, matte: Matte | None, look: Look, out: np.ndarray | None = None,
                  t: float | None = None) -> np.ndarray:
        """The composited frame (see the class docstring). `t`: the frame's time in seconds, which a video
        background keeps pace with (Background.frame). `out` must not be `frame`."""
        self._ensure(self._size(frame))
        draw = self._draw.get(look.effect)
        if draw is None:
            raise ValueError(f"unknown effect {look.effect!r}")
        out = self._out if out is None else out
        if not EFFECTS[look.effect].needs_matte:
            return draw(frame, None, look, out, t)
        if matte is None:
            raise ValueError(f"effect {look.effect!r} needs a matte")
        draw(frame, matte, look, out, t)
        return self.blend(frame, matte, out)
