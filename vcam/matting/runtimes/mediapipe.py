"""The "mediapipe" runtime: MediaPipe Tasks' ImageSegmenter on the selfie model.

MediaPipe is given the frame already shrunk to the working mask size as RGB, which is cheaper than
handing it a full frame and getting a full-size float mask back.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from vcam.frames.reduce import Reducer
from vcam.matting.models import ModelError, mask_size_for, read_signature, unusable_model
from vcam.matting.runtimes.base import SegmenterBase
from vcam.native import native_stderr_to_log

if TYPE_CHECKING:
    from mediapipe.tasks.python.vision import ImageSegmenter


class MediaPipeSegmenter(SegmenterBase):
    """One MediaPipe ImageSegmenter; `video=True` for streams (it needs increasing timestamps)."""

    runtime = "mediapipe"

    def __init__(self, model: str = "general", model_path: str = "", *, video: bool = False) -> None:
        super().__init__(model, model_path, video)
        read_signature(self.path)
        self._last_ts = -1
        self._small: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self._segmenter = self._create(self.path, video)

    @staticmethod
    def _create(path: Path, video: bool) -> ImageSegmenter:
        # Imported here: mediapipe is heavy and only the segmenting commands need it.
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise ModelError('[segmentation] runtime = "mediapipe" needs the mediapipe package '
                             '(pip install "vcam[mediapipe]"), or use runtime = "litert"') from None

        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        try:
            with native_stderr_to_log(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="MessageFactory class is deprecated")
                return vision.ImageSegmenter.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise unusable_model(path, e) from None

    def close(self) -> None:
        self._segmenter.close()

    def _prepare(self, frame: np.ndarray, reduced: Reducer | None) -> None:
        """Shrink `frame` to the working mask size as RGB into self._rgb (buffers kept between frames)."""
        reduced = self._reduced(frame, reduced)
        h, w = reduced.hw
        mw, mh = mask_size_for(w, h, self.model)
        if self._small is None or self._small.shape[:2] != (mh, mw):
            self._small = np.empty((mh, mw, 3), np.uint8)
            self._rgb = np.empty((mh, mw, 3), np.uint8)
            self._mask = np.empty((mh, mw), np.uint8)
        reduced.resize((mw, mh), self._small)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2RGB, dst=self._rgb)

    def segment(self, frame: np.ndarray, timestamp_ms: int | None = None,
                reduced: Reducer | None = None) -> np.ndarray:
        """Person confidence 0..255 (uint8) at the working mask size for this frame's aspect."""
        # Imported here: mediapipe is heavy (imported once the model loads, so this is a lookup).
        import mediapipe as mp

        self._prepare(frame, reduced)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=self._rgb)
        if self.video:
            ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
            ts = max(ts, self._last_ts + 1)  # VIDEO mode rejects non-increasing timestamps
            self._last_ts = ts
            result = self._segmenter.segment_for_video(image, ts)
        else:
            result = self._segmenter.segment(image)
        confidence = result.confidence_masks[-1].numpy_view()
        cv2.convertScaleAbs(confidence, dst=self._mask, alpha=255.0)
        return self._mask
