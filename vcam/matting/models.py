"""The selfie-segmentation model files: where they are, and whether a file really is one.

We use the .tflite files that mediapipe 0.10.21 ships in its wheel, found in an installed mediapipe or
in vcam's cache (vcam/matting/model_cache.py; nothing is downloaded while running), or a file the user
names ([segmentation] model_path). Both
runtimes (vcam/matting/runtimes/) check a file the same way, so a wrong file fails with the same
one-line error whichever runs it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vcam.matting.model_cache import ModelError, find_model
from vcam.native import native_stderr_to_log

# Model input sizes (height, width): we downscale frames to this aspect ourselves (Reducer), which is
# cheaper than handing MediaPipe a full frame and getting a full-size float mask back.
MODEL_INPUT = {"general": (256, 256), "landscape": (144, 256)}


def resolve_model_path(model: str, model_path: str = "") -> Path:
    """The user's model file if [segmentation] model_path names one, else a verified copy of the selfie
    model from an installed mediapipe 0.10.21 or vcam's cache (ModelMissing says how to get one)."""
    return find_model(model, model_path)[0]


def check_model_file(path: Path, user_path: bool = False) -> None:
    """ModelError unless `path` is a file, saying which setting or package to fix."""
    if path.is_file():
        return
    if user_path:
        raise ModelError(f"{path}: segmentation model not found (set by [segmentation] model_path)")
    raise ModelError(f"{path}: segmentation model not found; run `vcam setup --models` "
                     f"or set [segmentation] model_path")


def mask_size_for(frame_w: int, frame_h: int, model: str) -> tuple[int, int]:
    """(width, height) of the working mask: the frame's aspect at about the model's resolution."""
    mh, mw = MODEL_INPUT.get(model, (256, 256))
    scale = max(mw / frame_w, mh / frame_h)
    return max(16, round(frame_w * scale)), max(16, round(frame_h * scale))


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
    # Imported here: ai-edge-litert is heavy, and only the commands that load a model need it.
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_stderr_to_log():
            interp = Interpreter(model_path=str(path))
    except (RuntimeError, ValueError) as e:
        raise unusable_model(path, e) from None
    return check_signature(interp.get_input_details(), interp.get_output_details(), path)
