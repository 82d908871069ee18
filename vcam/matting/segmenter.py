"""Segmentation stage: MediaPipe selfie segmentation, returning a soft person-confidence mask.

We use the .tflite files that mediapipe 0.10.21 ships in its wheel (newer releases ship none, and
nothing may be downloaded at run time), through one of two runtimes ([segmentation] runtime):
  - "mediapipe": the Tasks ImageSegmenter;
  - "litert": ai-edge-litert's Interpreter (XNNPACK) on the same file, with MediaPipe's own input
    sampling reproduced (corner-aligned bilinear warp to the model size, RGB scaled to 0..1, the output
    resized back bilinearly), so both give the same mask (mean difference < 0.1 grey level).
The mask is returned at the model's working resolution as uint8 0..255 confidence; turning it into an
alpha matte is the matte stage's job.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from vcam.errors import VcamError
from vcam.native import native_stderr_to_log
from vcam.frames.reduce import Reducer

log = logging.getLogger(__name__)

# Model input sizes (height, width): we downscale frames to this aspect ourselves (Reducer), which is
# cheaper than handing MediaPipe a full frame and getting a full-size float mask back.
MODEL_INPUT = {"general": (256, 256), "landscape": (144, 256)}


class ModelError(VcamError):
    """The model file is missing or not a selfie-segmentation model."""


def bundled_model_path(model: str) -> Path:
    """Path of a model file shipped inside the mediapipe wheel."""
    import mediapipe.modules.selfie_segmentation as pkg

    name = {"general": "selfie_segmentation.tflite", "landscape": "selfie_segmentation_landscape.tflite"}[model]
    return Path(os.path.dirname(pkg.__file__)) / name


def resolve_model_path(model: str, model_path: str = "") -> Path:
    return Path(model_path).expanduser() if model_path else bundled_model_path(model)


def mask_size_for(frame_w: int, frame_h: int, model: str) -> tuple[int, int]:
    """(width, height) of the working mask: the frame's aspect at about the model's resolution."""
    mh, mw = MODEL_INPUT.get(model, (256, 256))
    scale = max(mw / frame_w, mh / frame_h)
    return max(16, round(frame_w * scale)), max(16, round(frame_h * scale))


def _check_model_file(path: Path, user_path: bool = False) -> None:
    if path.is_file():
        return
    if user_path:
        raise ModelError(f"{path}: segmentation model not found (set by [segmentation] model_path)")
    raise ModelError(f"{path}: segmentation model not found; reinstall mediapipe==0.10.21 "
                     f"(the last release that bundles the selfie models) or set [segmentation] model_path")


def check_signature(inputs: list[dict], outputs: list[dict], path: Path) -> tuple[int, int]:
    """(height, width) of a selfie-segmentation model's input, from its tensor details, or ModelError.

    The shape is the whole test: one 1xHxWx3 float image in, one 1xHxWx1 mask of the same size out.
    Other MediaPipe models (face or hand landmarks, detectors) fail it; MediaPipe itself would load
    them and return nonsense.
    """
    shape_in = [int(d) for d in inputs[0]["shape"]] if len(inputs) == 1 else []
    shape_out = [int(d) for d in outputs[0]["shape"]] if len(outputs) == 1 else []
    if (len(shape_in) != 4 or shape_in[0] != 1 or shape_in[3] != 3 or inputs[0]["dtype"] != np.float32
            or shape_out != [1, shape_in[1], shape_in[2], 1]):
        raise ModelError(f"{path}: not a selfie-segmentation model (expected one 1xHxWx3 float input and one "
                         f"1xHxWx1 mask output); use a MediaPipe selfie segmentation .tflite file")
    return shape_in[1], shape_in[2]


def unusable_model(path: Path, error: Exception) -> ModelError:
    """The one-line error for a model file a runtime refused to load, with the runtime's first line."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelError(f"{path}: not a usable selfie-segmentation model ({first}); "
                      f"use a MediaPipe selfie segmentation .tflite file")


def read_signature(path: Path) -> tuple[int, int]:
    """check_signature() for a model file, read with LiteRT's parser (cheap: no tensors allocated)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_stderr_to_log():
            interp = Interpreter(model_path=str(path))
    except (RuntimeError, ValueError) as e:
        raise unusable_model(path, e) from None
    return check_signature(interp.get_input_details(), interp.get_output_details(), path)


class SegmenterBase:
    """What both runtimes share: the model file, the working mask size and a context manager.

    Subclasses implement `segment()` and `close()`.
    """

    def __init__(self, model: str, model_path: str, video: bool) -> None:
        """Resolve and check the model file (ModelError if it is missing)."""
        self.path = resolve_model_path(model, model_path)
        _check_model_file(self.path, user_path=bool(model_path))
        self.model = model
        self.video = video
        self._reducer = Reducer()
        self._mask: np.ndarray | None = None

    def _reduced(self, frame_bgr: np.ndarray, reduced: Reducer | None) -> Reducer:
        """The caller's Reducer, already set to this frame, or our own set to it."""
        if reduced is None:
            reduced = self._reducer
            reduced.set(frame_bgr)
        return reduced

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def Segmenter(model: str = "general", model_path: str = "", *, video: bool = False,
              runtime: str = "mediapipe"):
    """A segmenter for `runtime` ("mediapipe" or "litert"); both have the same interface and output."""
    if runtime == "litert":
        from vcam.matting.runtime_litert import LiteRTSegmenter
        return LiteRTSegmenter(model, model_path, video=video)
    return MediaPipeSegmenter(model, model_path, video=video)


class MediaPipeSegmenter(SegmenterBase):
    """One MediaPipe ImageSegmenter; `video=True` for streams (it needs increasing timestamps).

    Not thread-safe: one Segmenter per worker thread.
    """

    runtime = "mediapipe"

    def __init__(self, model: str = "general", model_path: str = "", *, video: bool = False) -> None:
        super().__init__(model, model_path, video)
        read_signature(self.path)
        self._last_ts = -1
        self._small: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self._segmenter = self._create(self.path, video)

    @staticmethod
    def _create(path: Path, video: bool):
        # Imported here: mediapipe is heavy and only the segmenting commands need it.
        from mediapipe.tasks.python import BaseOptions, vision

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

    def _prepare(self, frame_bgr: np.ndarray, reduced: Reducer | None) -> None:
        """Shrink `frame_bgr` to the working mask size as RGB into self._rgb (buffers kept between frames).

        `reduced`: the frame's shared Reducer (already set to this frame), if the caller has one.
        """
        reduced = self._reduced(frame_bgr, reduced)
        h, w = reduced.hw
        mw, mh = mask_size_for(w, h, self.model)
        if self._small is None or self._small.shape[:2] != (mh, mw):
            self._small = np.empty((mh, mw, 3), np.uint8)
            self._rgb = np.empty((mh, mw, 3), np.uint8)
            self._mask = np.empty((mh, mw), np.uint8)
        reduced.resize((mw, mh), self._small)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2RGB, dst=self._rgb)

    def segment(self, frame_bgr: np.ndarray, timestamp_ms: int | None = None,
                reduced: Reducer | None = None) -> np.ndarray:
        """Person confidence 0..255 (uint8) at the working mask size for this frame's aspect."""
        import mediapipe as mp

        self._prepare(frame_bgr, reduced)
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
