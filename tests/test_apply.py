"""`vcam apply` end to end, as a user runs it: real files in, real files out, clear errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import mp4_with_display_rotation
from control_rig import toml

pytestmark = pytest.mark.system  # every test here starts `vcam apply` (python -m vcam)


def vcam(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "vcam", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def portrait(portraits):
    return portraits[0]


def background_region(mask_path: Path, margin: int = 25) -> np.ndarray:
    truth = (cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode(1 - truth, kernel).astype(bool)


def test_replace_image_with_colour(tmp_path, portrait):
    out = tmp_path / "out.png"
    proc = vcam("apply", portrait[0], out, "--effect", "replace", "--background", "#0000ff")
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(out))
    bg = background_region(portrait[1])
    close = (np.abs(image[bg].astype(int) - (255, 0, 0)).max(axis=1) <= 3).mean()
    assert close >= 0.95, f"only {close:.1%} of the clearly-background pixels are the colour"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"], "no temporary files left behind"


def test_blank_configured_background_is_the_white_default(tmp_path, portrait):
    """[effect] background = " " names no background, like "": replace shows the default white instead of
    failing to load a file named " "."""
    config = tmp_path / "c.toml"
    config.write_text(toml({"effect": {"background": "  "}}))
    out = tmp_path / "out.png"
    proc = vcam("--config", config, "apply", portrait[0], out, "--effect", "replace")
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(out))
    close = (np.abs(image[background_region(portrait[1])].astype(int) - 255).max(axis=1) <= 3).mean()
    assert close >= 0.95, f"only {close:.1%} of the clearly-background pixels are white"


def test_transparent_png_has_matte_alpha(tmp_path, portrait):
    out = tmp_path / "cut.png"
    assert vcam("apply", portrait[0], out, "--effect", "transparent").returncode == 0
    rgba = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert rgba.shape[2] == 4
    truth = cv2.imread(str(portrait[1]), cv2.IMREAD_GRAYSCALE) > 127
    person = rgba[..., 3] >= 128
    assert (person & truth).sum() / (person | truth).sum() > 0.9


def test_mask_effect_writes_grayscale_matte(tmp_path, portrait):
    out = tmp_path / "m.png"
    assert vcam("apply", portrait[0], out, "--effect", "mask").returncode == 0
    matte = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert matte.ndim == 2 and matte.dtype == np.uint8
    truth = cv2.imread(str(portrait[1]), cv2.IMREAD_GRAYSCALE) > 127
    person = matte >= 128
    assert (person & truth).sum() / (person | truth).sum() > 0.9


def test_directory_of_images(tmp_path, portraits):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir(), dst.mkdir()
    for image, _ in portraits[:3]:
        shutil.copy(image, src / image.name)
    proc = vcam("apply", src, dst, "--effect", "desaturate")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dst.iterdir()) == sorted(image.name for image, _ in portraits[:3])
    for image, mask in portraits[:3]:
        out = cv2.imread(str(dst / image.name)).astype(int)
        bg = background_region(mask)
        # JPEG chroma noise allows a little spread; the original has far more
        assert np.abs(out[..., 0] - out[..., 2])[bg].mean() < 3


def test_video_keeps_fps_size_and_replaces_background(tmp_path, desk_video, background_video):
    clip = tmp_path / "clip.avi"  # a short real clip: the first 45 frames of the desk video
    cap = cv2.VideoCapture(str(desk_video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    ok, frame = cap.read()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), fps, frame.shape[1::-1])
    for _ in range(45):
        writer.write(frame)
        ok, frame = cap.read()
    writer.release()
    cap.release()
    out = tmp_path / "out.mp4"
    proc = vcam("apply", clip, out, "--effect", "replace", "--background", "0,255,0")
    assert proc.returncode == 0, proc.stderr
    result = cv2.VideoCapture(str(out))
    assert abs(result.get(cv2.CAP_PROP_FPS) - fps) < 0.01
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 45
    ok, first = result.read()
    assert ok and first.shape == frame.shape
    corner = first[:40, :40].reshape(-1, 3).astype(int)  # top-left: wall behind the woman
    assert np.median(np.abs(corner - (0, 255, 0))) <= 12


def test_video_background_for_video(tmp_path, desk_video):
    from tests.conftest import require_path
    from vcam.compositing.backgrounds import VideoBackground

    background_video = require_path("backgrounds", "videos", "backscrub_rotating_earth.webm")
    out = tmp_path / "v.avi"
    clip = tmp_path / "short.mp4"
    cap = cv2.VideoCapture(str(desk_video))
    ok, frame = cap.read()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, frame.shape[1::-1])
    for _ in range(30):
        writer.write(frame)
        ok, frame = cap.read()
    writer.release()
    proc = vcam("apply", clip, out, "--effect", "video", "--background", background_video)
    assert proc.returncode == 0, proc.stderr
    result = cv2.VideoCapture(str(out))
    frames = [result.read()[1] for _ in range(30)]
    assert all(f is not None for f in frames)
    source = VideoBackground(background_video)
    expected = [source.frame(frame.shape[1::-1]).copy() for _ in range(30)]
    corner = (slice(135, 270), slice(240, 480))  # shelves behind the woman, where the earth turns

    def distance(a, b):
        return np.abs(a[corner].astype(int) - b[corner]).mean()

    assert distance(expected[0], expected[29]) > 2, \
        "the background clip must move for this test to mean anything"
    assert distance(frames[0], expected[0]) < distance(frames[0], expected[29])
    assert distance(frames[29], expected[29]) < distance(frames[29], expected[0]), \
        "background advances per frame"


def test_missing_input(tmp_path):
    assert_clean_error(vcam("apply", tmp_path / "nope.jpg", tmp_path / "o.jpg"), "nope.jpg", "not found")
    assert not (tmp_path / "o.jpg").exists()


def test_not_an_image(tmp_path):
    bad = tmp_path / "fake.jpg"
    bad.write_text("hello")
    assert_clean_error(vcam("apply", bad, tmp_path / "o.jpg"), "fake.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.jpg"]


def test_truncated_image(tmp_path, portrait):
    data = portrait[0].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert_clean_error(vcam("apply", cut, tmp_path / "o.jpg"), "cut.jpg")
    assert not (tmp_path / "o.jpg").exists()


def test_truncated_video(tmp_path, desk_video):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(desk_video.read_bytes()[:2000])
    assert_clean_error(vcam("apply", cut, tmp_path / "o.mp4"), "cut.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


def test_video_cut_in_the_middle_is_refused(tmp_path):
    from tests.conftest import require_path

    video = require_path("videos", "outdoor_sitting_640x360.mp4")
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.45)])  # header intact, frames missing from the middle on
    cap = cv2.VideoCapture(str(cut))
    assert cap.isOpened() and cap.read()[0], "the cut file must still open, or this test means nothing"
    cap.release()
    proc = vcam("apply", cut, tmp_path / "o.avi", "--effect", "blur")
    assert_clean_error(proc, "cut.mp4", "truncated")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


def test_truncated_background_image_is_refused(tmp_path, portrait, background_image):
    cut = tmp_path / "bg.jpg"
    data = background_image.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = vcam("apply", portrait[0], tmp_path / "o.jpg", "--effect", "replace", "--background", cut)
    assert_clean_error(proc, "bg.jpg", "truncated")
    assert not (tmp_path / "o.jpg").exists()


def test_truncated_png_input_is_one_line(tmp_path, portrait):
    png = tmp_path / "p.png"
    cv2.imwrite(str(png), cv2.imread(str(portrait[0])))
    data = png.read_bytes()
    png.write_bytes(data[: len(data) * 3 // 4])
    assert_clean_error(vcam("apply", png, tmp_path / "o.png"), "p.png")


@pytest.mark.parametrize("w,h,effect,words", [
    (3, 3, "blur", ["3x3", "too small"]),  # the blur's quarter-size copy had no pixels: a traceback
    (7680, 16, "replace", ["7680x16", "16:1"]),  # the model's mask would be 122880 px wide: a traceback
])
def test_picture_vcam_cannot_process_is_one_line(tmp_path, w, h, effect, words):
    image = tmp_path / "odd.png"
    cv2.imwrite(str(image), np.full((h, w, 3), 128, np.uint8))
    assert_clean_error(vcam("apply", image, tmp_path / "o.png", "--effect", effect), "odd.png", *words)
    assert not (tmp_path / "o.png").exists()
    writer = cv2.VideoWriter(str(tmp_path / "odd.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for _ in range(3):
        writer.write(np.full((h, w, 3), 128, np.uint8))
    writer.release()
    if (tmp_path / "odd.mp4").stat().st_size > 0:  # the mp4 writer may refuse a 3x3 video itself
        assert_clean_error(vcam("apply", tmp_path / "odd.mp4", tmp_path / "o.mp4", "--effect", effect),
                           "odd.mp4")
        assert not (tmp_path / "o.mp4").exists()


def test_edge_sizes_vcam_can_process_are_processed(tmp_path):
    """The smallest picture (16x16) and the most elongated (16:1) go through every effect."""
    rng = np.random.default_rng(1)
    for w, h in ((16, 16), (256, 16), (16, 256)):
        image = tmp_path / f"p{w}x{h}.png"
        cv2.imwrite(str(image), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for effect in ("blur", "mask"):
            out = tmp_path / f"o{w}x{h}{effect}.png"
            proc = vcam("apply", image, out, "--effect", effect)
            assert proc.returncode == 0, proc.stderr
            assert cv2.imread(str(out)).shape[:2] == (h, w)


def test_output_same_as_input_is_refused(tmp_path, portrait):
    copy = tmp_path / "me.jpg"
    shutil.copy(portrait[0], copy)
    before = copy.read_bytes()
    assert_clean_error(vcam("apply", copy, copy, "--effect", "blur"), "me.jpg", "INPUT")
    assert copy.read_bytes() == before
    assert_clean_error(vcam("apply", tmp_path, tmp_path, "--effect", "blur"), "INPUT")
    assert copy.read_bytes() == before


def test_unknown_effect(tmp_path, portrait):
    assert_clean_error(vcam("apply", portrait[0], tmp_path / "o.jpg", "--effect", "sparkle"),
                       "--effect", "sparkle")


def test_bad_colour(tmp_path, portrait):
    proc = vcam("apply", portrait[0], tmp_path / "o.jpg", "--effect", "replace", "--background", "#12345")
    assert_clean_error(proc, "#12345")


def test_bad_background_file(tmp_path, portrait):
    bad = tmp_path / "bg.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = vcam("apply", portrait[0], tmp_path / "o.jpg", "--effect", "replace", "--background", bad)
    assert_clean_error(proc, "bg.png")


def test_output_directory_missing(tmp_path, portrait):
    assert_clean_error(vcam("apply", portrait[0], tmp_path / "no" / "o.jpg"), "does not exist")


def test_transparent_needs_alpha_format(tmp_path, portrait):
    assert_clean_error(vcam("apply", portrait[0], tmp_path / "o.jpg", "--effect", "transparent"), "o.jpg")


def test_blur_option_sets_the_strength(tmp_path, portrait):
    bg = background_region(portrait[1])
    original = cv2.imread(str(portrait[0])).astype(np.float32)
    change = {}  # how far the background moved from the original: more the stronger the blur
    for strength in ("2", None, "80"):  # None: the config's 24
        out = tmp_path / f"blur{strength}.png"
        extra = ["--blur", strength] if strength else []
        assert vcam("apply", portrait[0], out, "--effect", "blur", *extra).returncode == 0
        change[strength] = float(np.abs(cv2.imread(str(out)) - original)[bg].mean())
    assert change["2"] < change[None] < change["80"], change


def test_model_option_picks_the_model(tmp_path, portrait):
    truth = cv2.imread(str(portrait[1]), cv2.IMREAD_GRAYSCALE) > 127
    mattes = {}
    for model in ("general", "landscape"):
        out = tmp_path / f"{model}.png"
        assert vcam("apply", portrait[0], out, "--effect", "mask", "--model", model).returncode == 0
        mattes[model] = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
        person = mattes[model] >= 128
        assert (person & truth).sum() / (person | truth).sum() > 0.9, model
    # two models see the picture differently: thousands of edge pixels differ, not a rounding difference
    differ = (np.abs(mattes["general"].astype(int) - mattes["landscape"]) > 32).sum()
    assert differ > 1000, differ


def test_video_display_rotation_is_honoured(tmp_path, portrait):
    clip, out = tmp_path / "phone.mp4", tmp_path / "matte.mp4"
    mp4_with_display_rotation(cv2.imread(str(portrait[0])), clip)
    assert vcam("apply", clip, out, "--effect", "mask").returncode == 0
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    truth = cv2.imread(str(portrait[1]), cv2.IMREAD_GRAYSCALE) > 127
    assert ok and frame.shape[:2] == truth.shape  # upright: 800 tall, 600 wide
    person = frame[..., 0] >= 128
    assert (person & truth).sum() / (person | truth).sum() > 0.9  # and the model saw an upright person
