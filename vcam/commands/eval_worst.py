"""`vcam eval --worst DIR`: pictures of each still set's worst cases, where the matte goes wrong.

Why a command and not pictures in docs/: neither still set may be redistributed (the test data's README),
so docs/matte.md names the worst pictures and says what goes wrong, and this writes them on a machine
that has the data. Each PNG is one row: the picture | the raw model's errors | the file-mode matte's
errors, the errors drawn over the dimmed picture (ERROR_COLOURS).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vcam.commands.eval_stills import STILL_SETS, raw_alpha, read_pair, write_row
from vcam.compositing.engine import Engine
from vcam.config import Settings
from vcam.testdata import testdata_path

# BGR: matte and mask agree on person | the matte takes background for person | the matte misses person
ERROR_COLOURS = {"agree": (80, 200, 80), "extra": (40, 40, 230), "missed": (230, 120, 30)}
TILE_HEIGHT = 320


def error_overlay(image: np.ndarray, person: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """`image` dimmed, with the matte's person (bool `person`) against the true mask (bool `truth`) drawn
    over it: agreeing person tinted, extra person and missed person in solid colours."""
    out = image // 2
    agree = person & truth
    out[agree] = (out[agree] // 2 + np.array(ERROR_COLOURS["agree"], np.uint8) // 2)
    out[person & ~truth] = ERROR_COLOURS["extra"]
    out[truth & ~person] = ERROR_COLOURS["missed"]
    return out


def write_worst(settings: Settings, result: dict, out_dir: Path) -> list[Path]:
    """A PNG row for each picture `result` (evaluate()'s) lists as worst, per still set, into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with Engine(settings, video=False) as engine:
        segmenter = engine.matting.segmenter  # (its confidence is used before engine.alpha() runs again)
        for name in STILL_SETS:
            for entry in result.get(name, {}).get("worst", []):
                stem = entry["picture"]
                image, truth = read_pair(testdata_path(name, "images", stem + ".jpg"),
                                         testdata_path(name, "masks", stem + ".png"))
                h, w = image.shape[:2]
                raw = raw_alpha(segmenter.segment(image), (w, h)) >= 128
                file = engine.alpha(image) >= 128
                tiles = [image, error_overlay(image, raw, truth), error_overlay(image, file, truth)]
                written.append(write_row(tiles, TILE_HEIGHT, out_dir / f"worst_{name}_{stem}.png"))
    return written
