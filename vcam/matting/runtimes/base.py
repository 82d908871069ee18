"""What every segmentation runtime is: a frame in, the person-confidence mask out.

The runtimes (mediapipe.py, litert.py) run the same model file and give the same mask; the registry
(vcam/matting/runtimes/__init__.py) picks one by [segmentation] runtime.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from vcam.frames.reduce import Reducer
from vcam.matting.models import check_model_file, resolve_model_path


class SegmenterBase(ABC):
    """One model loaded for one stream of frames; not thread-safe (one per worker thread).

    `segment()` returns person confidence 0..255 (uint8) at the working mask size for the frame's aspect
    (models.mask_size_for), in a buffer reused by the next call.
    """

    runtime = "base"

    def __init__(self, model: str, model_path: str, video: bool) -> None:
        """Resolve and check the model file (ModelError if it is missing)."""
        self.path = resolve_model_path(model, model_path)
        check_model_file(self.path, user_path=bool(model_path))
        self.model = model
        self.video = video
        self._reducer = Reducer()
        self._mask: np.ndarray | None = None

    @abstractmethod
    def segment(self, frame: np.ndarray, timestamp_ms: int | None = None,
                reduced: Reducer | None = None) -> np.ndarray:
        """Person confidence for `frame` (BGR, or I420: frames/i420.py). `reduced`: the frame's shared
        Reducer, already set to it, if the caller has one; `timestamp_ms` only matters in video mode."""

    @abstractmethod
    def close(self) -> None:
        """Free the model."""

    def _reduced(self, frame: np.ndarray, reduced: Reducer | None) -> Reducer:
        """The caller's Reducer, already set to this frame, or our own set to it."""
        if reduced is None:
            reduced = self._reducer
            reduced.set(frame)
        return reduced

    def __enter__(self) -> SegmenterBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
