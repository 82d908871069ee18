"""The matte that replace/transparent use, on the real portraits, against the hand-drawn masks."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam.config import load_settings
from vcam.compositing.engine import Engine
from vcam.matting import model_cache
from vcam.matting.models import ModelError
from vcam.matting.runtimes import open_segmenter


def mean_iou(portraits, model: str) -> float:
    settings = load_settings(use_user_config=False).replace("segmentation", model=model)
    ious = []
    with Engine(settings, video=False) as engine:
        for image_path, mask_path in portraits:
            image = cv2.imread(str(image_path))
            truth = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
            person = engine.alpha(image) >= 128
            ious.append(np.logical_and(person, truth).sum() / np.logical_or(person, truth).sum())
    return float(np.mean(ious))


def test_general_model_matte_iou_on_all_portraits(portraits):
    iou = mean_iou(portraits, "general")
    print(f"\nvcam matte, general model, {len(portraits)} portraits: mean IoU {iou:.4f}")
    assert len(portraits) >= 200
    assert iou >= 0.965  # the raw model scores 0.962 here; the matte must beat it (docs/matte.md)
    same_on_every_python(iou)


def same_on_every_python(iou: float) -> None:
    """With VCAM_IOU_RECORD set (CI runs the suite on two Pythons), the first run records the portraits' IoU
    and the next must match it: the same model bytes give the same masks whatever numpy and OpenCV."""
    record = os.environ.get("VCAM_IOU_RECORD")
    if not record:
        return
    here = {"iou": iou, "python": platform.python_version()}
    path = Path(record)
    if not path.exists():
        path.write_text(json.dumps(here))
        return
    first = json.loads(path.read_text())
    print(f"portraits IoU: {first['iou']:.5f} on Python {first['python']}, {iou:.5f} on {here['python']}")
    assert abs(iou - first["iou"]) < 0.0005, (first, here)  # under a tenth of one portrait's worth


def test_landscape_model_is_selectable_and_sound(portraits):
    iou = mean_iou(portraits[::4], "landscape")
    print(f"\nvcam matte, landscape model, {len(portraits[::4])} portraits: mean IoU {iou:.4f}")
    assert iou >= 0.94


def test_both_models_are_found_verified():
    for model in ("general", "landscape"):
        path, origin = model_cache.find_model(model)
        assert origin in ("mediapipe", "cache") and model_cache.is_valid(path, model_cache.MODELS[model])


def test_confidence_mask_is_soft_not_thresholded(portraits):
    image = cv2.imread(str(portraits[0][0]))
    with open_segmenter("general") as seg:
        confidence = seg.segment(image)
    assert confidence.dtype == np.uint8
    soft = np.count_nonzero((confidence > 10) & (confidence < 245))
    assert soft > 0.005 * confidence.size, "expected a soft band of intermediate confidences at the edges"


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        open_segmenter("general", str(tmp_path / "nope.tflite"))


@pytest.mark.parametrize("runtime", ["mediapipe", "litert"])
def test_incompatible_model_file_is_a_clear_error(tmp_path, runtime):
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"this is not a flatbuffer" * 100)
    with pytest.raises(ModelError, match="bogus.tflite"):
        open_segmenter("general", str(bogus), runtime=runtime)


@pytest.mark.parametrize("runtime", ["mediapipe", "litert"])
@pytest.mark.parametrize("other", ["face_landmark/face_landmark.tflite", "holistic_landmark/hand_recrop.tflite"])
def test_other_mediapipe_models_are_refused(runtime, other):
    """Real .tflite files of other tasks: MediaPipe would load them and segment nonsense."""
    bundled = model_cache.mediapipe_model_path("general")
    if bundled is None:
        pytest.skip("the other MediaPipe models come only with mediapipe 0.10.21 (Python 3.10-3.12, x86_64)")
    path = bundled.parent.parent / other
    assert path.is_file()
    with pytest.raises(ModelError, match="not a selfie-segmentation model"):
        open_segmenter("general", str(path), runtime=runtime)


def test_video_mode_accepts_repeated_timestamps(portraits):
    image = cv2.imread(str(portraits[0][0]))
    with open_segmenter("general", video=True) as seg:
        first = seg.segment(image, 100).copy()
        second = seg.segment(image, 100)  # same timestamp again: must not raise
    assert np.abs(first.astype(int) - second.astype(int)).mean() < 2
