"""What every sink is: a context manager that takes I420 frames of one size, so the output stage can send
to a virtual camera, a window, a file or nowhere alike."""
from __future__ import annotations

import numpy as np

from vcam.config import OutputSettings
from vcam.errors import VcamError


class OutputError(VcamError):
    """The output cannot be opened; the message says how to fix it."""


class Sink:
    """Takes I420 frames (vcam/frames/i420.py) of exactly `size` (width, height)."""

    name = "sink"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        self.settings = settings
        self.size = size
        self.fps = fps

    def send(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
