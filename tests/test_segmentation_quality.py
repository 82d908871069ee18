"""The matte that replace/transparent use, on the real portraits, against the hand-drawn masks: what
`vcam apply` makes of a still (file mode, [matte] quality = "best") against the raw model it starts from."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam.commands.eval_stills import eval_stills
from vcam.config import load_settings
from vcam.matting import model_cache
from vcam.matting.models import ModelError
from vcam.matting.runtimes import open_segmenter


def scores(portraits, model: str, result: dict | None = None) -> tuple[dict, dict]:
    """(raw model, file-mode matte) mean IoU and boundary F over `portraits` with `model`; the file-mode
    matte is the file Engine's (Engine(video=False).alpha(), as `vcam apply` makes a still). `result`:
    eval_stills() of those portraits with those settings, if computed already."""
    if result is None:
        settings = load_settings(use_user_config=False).replace("segmentation", model=model)
        result = eval_stills(settings, portraits)
    assert result["quality"] == "best" and result["images"] == len(portraits)
    raw, file = result["raw"], result["file"]
    print(f"\n{model} model, {len(portraits)} portraits: raw IoU {raw['iou']:.4f} BF {raw['boundary_f']:.4f}"
          f" | vcam IoU {file['iou']:.4f} BF {file['boundary_f']:.4f}")
    return raw, file


def test_general_model_matte_iou_on_all_portraits(portraits, still_scores):
    """IoU 0.9667 against the raw model's 0.9623, boundary F +0.055 (docs/matte.md); without the guided
    filter the file mode's extra model passes alone give 0.9646 and +0.012. (The default model is the
    general one: the session's default-settings scores are this model's.)"""
    assert load_settings(use_user_config=False).segmentation.model == "general"
    raw, vcam = scores(portraits, "general", still_scores("portraits"))
    assert len(portraits) >= 200
    assert vcam["iou"] >= 0.965 and vcam["iou"] > raw["iou"]
    assert vcam["boundary_f"] >= raw["boundary_f"] + 0.05
    same_on_every_python(vcam["iou"])


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
    """The landscape model's matte beats that raw model on the same portraits: boundary F +0.065 on these
    66 (+0.062 on all), where the matte without the guided filter gets +0.011."""
    raw, vcam = scores(portraits[::4], "landscape")
    assert vcam["iou"] > raw["iou"] > 0.94
    assert vcam["boundary_f"] >= raw["boundary_f"] + 0.04


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
@pytest.mark.parametrize("other", ["face_landmark/face_landmark.tflite",
                                   "holistic_landmark/hand_recrop.tflite"])
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
