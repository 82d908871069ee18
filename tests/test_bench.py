"""`vcam bench --json` runs the real pipeline (real MJPG decode, model, compositing) and reports every
figure the issue asks for. Timings themselves are not asserted: that is what the bench is for."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.system
def test_bench_json_reports_all_figures(desk_video):
    r = subprocess.run([sys.executable, "-m", "vcam", "bench", "--video", str(desk_video),
                        "--sizes", "640x360", "--effects", "blur,none", "--frames", "30", "--seconds", "1.5",
                        "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    rows = report["results"]
    assert [(row["size"], row["effect"]) for row in rows] == [("640x360", "blur"), ("640x360", "none")]
    blur, none = rows
    for row in rows:
        assert row["uncapped_fps"] > 0 and row["cpu_pct_30fps"] > 0
        assert row["peak_rss_mb"] >= row["rss_mb"] > 50
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"]
        assert 20 <= row["fps_30"] <= 36  # paced like a 30 fps camera
        assert row["ms"]["read"] > 0 and row["ms"]["send"] is not None  # I420 all the way: no conversion left
        # Where the CPU went, thread by thread: it adds up to the process's CPU per frame.
        per = row["thread_cpu_ms"]
        assert set(per) == {"capture", "segmenter", "compositor", "output", "other"}
        assert per["capture"] > 0 and per["output"] > 0
        assert sum(per.values()) == pytest.approx(row["cpu_pct_30fps"] / 30 * 10, rel=0.05, abs=0.1)
    # The stages really ran for blur and were skipped for none.
    assert blur["ms"]["segment"] > 0 and blur["ms"]["composite"] > 0
    assert blur["thread_cpu_ms"]["segmenter"] > 5 * none["thread_cpu_ms"]["segmenter"]
    # Each case in its own process: none's memory is its own, not blur's high-water mark inherited.
    assert none["peak_rss_mb"] < blur["peak_rss_mb"] - 5
    assert none["ms"]["segment"] is None and none["ms"]["composite"] is None  # null: the stage never ran


@pytest.mark.system
def test_bench_bad_size_is_one_line():
    r = subprocess.run([sys.executable, "-m", "vcam", "bench", "--sizes", "big"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["vcam: error: --sizes: 'big' is not WIDTHxHEIGHT"]
    r = subprocess.run([sys.executable, "-m", "vcam", "bench", "--sizes", "2000x16"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "16:1" in r.stderr


def test_per_thread_cpu_counts_a_replaced_thread_from_zero():
    """A stage thread replaced during the run (a camera reopened) is a new thread: it counts from 0, and
    the old one's CPU before the run is not subtracted from it (that gave negative figures)."""
    from vcam.commands.bench import _per_thread_ms

    before = {("vcam-capture", 101): 5.0, ("vcam-segmenter", 102): 1.0}
    after = {("vcam-capture", 201): 0.3, ("vcam-segmenter", 102): 1.6}
    per = _per_thread_ms(before, after, cpu=1.2, frames=100)
    assert per["capture"] == 3.0 and per["segmenter"] == 6.0 and per["compositor"] == 0.0
    assert per["other"] == 3.0  # 12 ms a frame in all: the rest is the old capture thread and the others


@pytest.mark.system
def test_bench_measures_the_still_clip_beside_the_moving_one(desk_video):
    """The still clip (a person sitting nearly still) gets rows of its own, and the share of frames the
    model ran on says what the schedule saved there."""
    from conftest import require_path

    still = require_path("videos", "outdoor_sitting_640x360.mp4")
    r = subprocess.run([sys.executable, "-m", "vcam", "bench", "--video", str(desk_video), "--still", "blur",
                        "--still-video", str(still), "--sizes", "640x360", "--effects", "blur",
                        "--frames", "30", "--seconds", "2", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["results"]
    assert [(row["effect"], row["clip"]) for row in rows] == [("blur", "desk"), ("blur", "outdoor")]
    moving, sitting = rows
    assert moving["model_share"] > 0.9
    assert sitting["model_share"] < moving["model_share"]


def _flat_clip(path: Path, grey: int) -> Path:
    """A three-frame MJPG clip of one flat grey: a source whose prepared clip is easy to recognise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), grey, np.uint8))
    writer.release()
    return path


def _first_frame_grey(path: Path) -> int:
    ok, frame = cv2.VideoCapture(str(path)).read()
    assert ok, path
    return round(float(frame.mean()))


def test_sources_with_one_file_name_keep_their_own_prepared_clips(tmp_path):
    """--video and --still-video may share a file name in different folders: each keeps its own prepared
    clip (they were both named <stem>_<size>.avi, so the second overwrote the first's)."""
    from vcam.commands.bench import prepare_clip

    dark = _flat_clip(tmp_path / "moving" / "clip.avi", 30)
    light = _flat_clip(tmp_path / "sitting" / "clip.avi", 220)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    dark_clip = prepare_clip(dark, (64, 48), 10, prepared)
    light_clip = prepare_clip(light, (64, 48), 10, prepared)
    assert _first_frame_grey(dark_clip) == pytest.approx(30, abs=3)
    assert _first_frame_grey(light_clip) == pytest.approx(220, abs=3)
