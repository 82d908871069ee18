"""`vcam eval` on still pictures: IoU and boundary F of the raw model, vcam's live matte and vcam's
file-mode matte, each still set on its own, so that a matte tuned on one kind of picture cannot hide a
loss on another (docs/matte.md, "Every kind of picture").
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vcam.compositing.engine import Engine
from vcam.config import Settings
from vcam.errors import VcamError
from vcam.matting.matte import MatteBuilder
from vcam.testdata import testdata_path

BOUNDARY_TOLERANCE = 2   # px: an edge pixel this close to the true edge counts as right
WORST = 5                # pictures of each set reported as its worst (by the file-mode matte's IoU)
_SQUARE_3X3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))

# The still sets: folder under the test data -> what it holds (its images/ and masks/ share file stems).
STILL_SETS = {"portraits": "head-and-shoulders portraits, hand-drawn masks",
              "people_varied": "groups, full bodies, distant people, street scenes; remove.bg masks"}


class EvalError(VcamError):
    """The test data `vcam eval` needs is missing."""


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(pred | truth)
    return 1.0 if union == 0 else np.count_nonzero(pred & truth) / union


def _edges(mask: np.ndarray) -> np.ndarray:
    """The pixels on either side of the mask's boundary (a 1-px morphological gradient)."""
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, _SQUARE_3X3) > 0


def boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """Boundary F-score: harmonic mean of edge precision and recall within `tolerance` px."""
    bp, bt = _edges(pred), _edges(truth)
    n_pred, n_truth = np.count_nonzero(bp), np.count_nonzero(bt)
    if n_pred == 0 or n_truth == 0:
        return float(n_pred == n_truth)
    dist_to_truth = cv2.distanceTransform((~bt).astype(np.uint8), cv2.DIST_L2, 3)
    dist_to_pred = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, 3)
    precision = np.count_nonzero(dist_to_truth[bp] <= tolerance) / n_pred
    recall = np.count_nonzero(dist_to_pred[bt] <= tolerance) / n_truth
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def raw_alpha(confidence: np.ndarray, size: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """The raw model output at frame size: its confidence upsampled bilinearly, nothing else."""
    return cv2.resize(confidence, size, dst=dst, interpolation=cv2.INTER_LINEAR)


def write_row(tiles: list[np.ndarray], tile_height: int, target: Path) -> Path:
    """The BGR pictures `tiles` (all of one size) side by side, each `tile_height` px high, as a PNG."""
    h, w = tiles[0].shape[:2]
    size = (round(w * tile_height / h), tile_height)
    row = np.hstack([cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles])
    cv2.imwrite(str(target), row, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return target


def still_pairs(name: str, limit: int = 0) -> list[tuple[Path, Path]]:
    """(image, mask) paths of the still set `name` (STILL_SETS); `limit`: that many, spread evenly."""
    images = testdata_path(name, "images")
    masks = testdata_path(name, "masks")
    pairs = [(p, masks / (p.stem + ".png")) for p in sorted(images.glob("*.jpg"))] if images.is_dir() else []
    if not pairs:
        raise EvalError(f"{images}: no {name.replace('_', ' ')} found "
                        "(set VCAM_TESTDATA to the shared testdata folder)")
    if limit and limit < len(pairs):  # an even spread over the set, not its first few
        pairs = [pairs[round(i * len(pairs) / limit)] for i in range(limit)]
    return pairs


def read_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(image_path))
    truth = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    if image is None or truth is None:
        raise EvalError(f"{image_path}: cannot read the picture or its mask")
    if truth.shape != image.shape[:2]:
        raise EvalError(f"{mask_path}: mask is {truth.shape[1]}x{truth.shape[0]}, "
                        f"picture {image.shape[1]}x{image.shape[0]}")
    return image, truth > 127


def eval_stills(settings: Settings, pairs: list[tuple[Path, Path]]) -> dict:
    """Mean IoU and boundary F over still pictures of the raw model ("raw": its confidence at 50%), of
    vcam's live matte ("vcam": one model pass, quality "fast") and of the file-mode matte ("file": what
    `vcam apply` makes of a still with the configured quality; "vcam" again when that is "fast")."""
    file_mode = settings.matte.quality != "fast"
    names = ("raw", "vcam", "file") if file_mode else ("raw", "vcam")
    scores = {name: {"iou": [], "boundary_f": []} for name in names}
    with Engine(settings, video=False) as engine:  # `vcam apply`'s model passes, and its model for the rest
        segmenter = engine.matting.segmenter
        matte = MatteBuilder(settings.matte, video=False)  # the live path
        for image_path, mask_path in pairs:
            image, truth = read_pair(image_path, mask_path)
            h, w = image.shape[:2]
            confidence = segmenter.segment(image)  # (used before engine.alpha() runs the model again)
            alphas = [raw_alpha(confidence, (w, h)), matte.build(confidence, (w, h), image)]
            if file_mode:
                alphas.append(engine.alpha(image))
            for name, alpha in zip(names, alphas, strict=True):
                person = alpha >= 128
                scores[name]["iou"].append(iou(person, truth))
                scores[name]["boundary_f"].append(boundary_f(person, truth))
    if not file_mode:  # the file matte is the live one
        scores["file"] = scores["vcam"]
    out = {name: {k: float(np.mean(v)) for k, v in d.items()} for name, d in scores.items()}
    out["images"] = len(pairs)
    worst = sorted(range(len(pairs)), key=lambda i: scores["file"]["iou"][i])[:WORST]
    out["worst"] = [{"picture": pairs[i][0].stem,
                     **{name: {k: float(v[i]) for k, v in d.items()} for name, d in scores.items()}}
                    for i in worst]
    out["quality"] = settings.matte.quality
    return out
