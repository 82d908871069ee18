"""`vcam eval`: the metrics themselves, and the command on a subset of the real data."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vcam.cli import main
from vcam.commands.eval import _parabolic_argmin, eval_video
from vcam.commands.eval_stills import boundary_f, iou
from vcam.config import load_settings


def disc(shift=0, size=200, r=60):
    yy, xx = np.mgrid[:size, :size]
    return (xx - 100 - shift) ** 2 + (yy - 100) ** 2 <= r * r


def test_iou_and_boundary_f_on_known_shapes():
    a = disc()
    assert iou(a, a) == 1.0 and boundary_f(a, a) == 1.0
    assert boundary_f(a, disc(shift=1)) == 1.0          # within the 2 px tolerance
    assert boundary_f(a, disc(shift=8)) < 0.5            # an edge 8 px off is mostly wrong
    assert 0.75 < iou(a, disc(shift=8)) < 0.95          # ... while IoU hardly notices
    assert iou(a, np.zeros_like(a)) == 0.0


def test_parabolic_argmin_finds_fractional_minimum():
    errs = [(k - 1.3) ** 2 + 2 for k in range(5)]
    assert _parabolic_argmin(errs) == pytest.approx(1.3, abs=1e-6)
    assert _parabolic_argmin([1, 2, 3, 4]) == 0.0


def test_eval_command_on_a_subset_vcam_beats_raw(capsys, testdata):
    """The documented targets (docs/matte.md), on enough of the data that they hold with a margin: a
    quarter of the portraits (file mode: boundary F +0.061 there, +0.055 on all; without the guided filter
    +0.013), 44 of people_varied (file: IoU +0.023, boundary F +0.058) and the videos' full 300 frames
    (flicker 0.35x and 0.32x raw, lag 0)."""
    args = ["--portraits", "66", "--people", "44", "--frames", "300", "--no-timing", "--json"]
    assert main(["eval", *args]) == 0
    result = json.loads(capsys.readouterr().out)
    p = result["portraits"]
    assert p["images"] == 66 and p["quality"] == "best"
    assert 0.9 < p["raw"]["iou"] <= p["vcam"]["iou"] < 1.0  # live
    assert p["vcam"]["boundary_f"] >= p["raw"]["boundary_f"] + 0.03
    assert p["file"]["iou"] > p["raw"]["iou"] and p["file"]["boundary_f"] >= p["raw"]["boundary_f"] + 0.05
    people = result["people_varied"]  # each still set on its own
    assert people["images"] == 44 and people["quality"] == "best"
    assert people["file"]["iou"] >= people["raw"]["iou"] + 0.005
    assert people["file"]["boundary_f"] >= people["raw"]["boundary_f"] + 0.03
    assert len(result["videos"]) >= 2
    for name, v in result["videos"].items():
        assert v["frames"] == 300
        assert 0 < v["vcam"]["flicker"] <= 0.5 * v["raw"]["flicker"], name
        assert v["vcam"]["lag"] <= 1.0, name
        # the motion gate follows a moving edge in the same frame (0.00 on both videos); without its
        # dilation it trails the outdoor clip's slow moves by 0.98 frames, inside the target: hold it to
        # half a frame, between the two
        assert v["vcam"]["lag"] < 0.5, name


def test_lag_metric_sees_the_lag_of_an_ungated_average(desk_video):
    """Plain exponential smoothing (no motion gate) trails moving edges by a few frames: the metric says
    so."""
    settings = load_settings(use_user_config=False)
    ungated = eval_video(settings.replace("matte", temporal=0.8, motion=0), desk_video, 60)
    gated = eval_video(settings, desk_video, 60)
    print(f"\nlag ungated {ungated['vcam']['lag']:.2f}, gated {gated['vcam']['lag']:.2f}")
    assert ungated["vcam"]["lag"] > 1.5
    assert gated["vcam"]["lag"] < ungated["vcam"]["lag"] - 1.0


def test_lag_metric_sees_a_carried_mask_on_real_motion(desk_video, monkeypatch):
    """The lag counts only where the picture itself moved (the model's jitter on a still picture is
    flicker): that must not hide a matte that really trails, here the model's mask carried unchanged
    over three frames of every four while the person types."""
    from vcam.matting import schedule

    monkeypatch.setattr(schedule, "RUN_SHARE", 2.0)  # the cap alone decides: the model on every 4th frame
    monkeypatch.setattr(schedule, "KEEP_SHARE", 2.0)  # ... and the matte kept as it is in between
    settings = load_settings(use_user_config=False).replace("segmentation", interval=4)
    carried = eval_video(settings, desk_video, 60)
    print(f"\nlag of a mask carried over 3 frames: {carried['vcam']['lag']:.2f}")
    assert carried["vcam"]["lag"] > 1.0


def test_eval_prints_a_table(capsys, testdata):
    assert main(["eval", "--portraits", "3", "--people", "3", "--frames", "0", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "mean IoU at 50%" in out and "boundary F (2 px)" in out and "raw model" in out
    assert "portraits (3)" in out and "people_varied (3)" in out and "vcam file" in out


def test_eval_without_test_data_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VCAM_TESTDATA", str(tmp_path / "nowhere"))
    assert main(["eval", "--portraits", "5", "--frames", "0", "--no-timing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no portraits" in err[0] and "nowhere" in err[0]


def test_picture_strip_has_input_raw_matte_and_composite(tmp_path, testdata):
    from vcam.commands.eval import write_strips

    settings = load_settings(use_user_config=False)
    written = write_strips(settings, tmp_path, tile_height=90, frames={"outdoor_sitting_640x360": (12,)})
    assert [p.name for p in written] == ["matte_strip_outdoor_12.png"]
    strip = cv2.imread(str(written[0]))
    assert strip.shape == (90, 4 * 160, 3)
    tiles = [strip[:, i * 160:(i + 1) * 160] for i in range(4)]
    matte = tiles[2][:, :, 0]
    assert (matte > 250).mean() > 0.05 and (matte < 5).mean() > 0.3  # a person on a background
    person = matte > 250
    # the composite keeps the input where the person is, and differs from it behind them
    assert np.abs(tiles[3][person].astype(int) - tiles[0][person].astype(int)).mean() < 12
    assert np.abs(tiles[3][matte < 5].astype(int) - tiles[0][matte < 5].astype(int)).mean() > 25


def test_error_overlay_colours_extra_and_missed_person():
    from vcam.commands.eval_worst import ERROR_COLOURS, error_overlay

    image = np.full((4, 6, 3), 200, np.uint8)
    truth = np.zeros((4, 6), bool)
    truth[:, :3] = True  # the person: the left half
    person = np.zeros((4, 6), bool)
    person[:, 1:4] = True  # the matte: one column short on the left, one too many on the right
    out = error_overlay(image, person, truth)
    assert tuple(out[0, 0]) == ERROR_COLOURS["missed"]
    assert tuple(out[0, 3]) == ERROR_COLOURS["extra"]
    assert tuple(out[0, 5]) == (100, 100, 100)  # background both agree on: the picture, dimmed
    assert out[0, 1, 1] > out[0, 1, 0] and tuple(out[0, 1]) != tuple(out[0, 5])  # agreed person: tinted


def test_eval_names_the_worst_pictures_and_draws_them(tmp_path, capsys, testdata):
    args = ["eval", "--portraits", "12", "--people", "-1", "--frames", "0", "--no-timing", "--json",
            "--worst", str(tmp_path)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    worst = result["portraits"]["worst"]
    ious = [w["file"]["iou"] for w in worst]
    assert len(worst) == 5 and ious == sorted(ious)
    assert ious[-1] <= result["portraits"]["file"]["iou"]  # the five lowest lie at or below the mean
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"worst_portraits_{w['picture']}.png" for w in worst)
    row = cv2.imread(str(tmp_path / written[0]))
    assert row.shape[0] == 320 and row.shape[1] > 3 * 200  # picture | raw errors | file errors
