"""Pixel checks of every effect on real portraits: behind the person, on the person, and the alpha."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vcam.compositing.backgrounds import (
    ColorBackground,
    ImageBackground,
    VideoBackground,
    cover_resize,
    parse_color,
)
from vcam.compositing.look import Look
from vcam.compositing.spans import PersonSpans, lut_bounds
from vcam.matting.matte import Matte

EDGE_MARGIN = 25  # px kept away from the true person edge for "behind the person" checks
# The model itself mislabels a little background on some portraits (its IoU is 0.962, not 1), so "behind the
# person" checks ask that nearly all clearly-background pixels match, not every single one.
MIN_SHARE = 0.95
PERSON_SHARE = 0.9  # it also misses a little of the person (dark clothes against dark walls)


def share_close(actual: np.ndarray, expected, tol: int = 3) -> float:
    """Fraction of pixels (rows of BGR values) within `tol` of `expected` in every channel."""
    diff = np.abs(actual.astype(int) - np.asarray(expected, dtype=int))
    return float((diff.reshape(len(actual), -1).max(axis=1) <= tol).mean())


@pytest.fixture(scope="module")
def samples(portraits):
    """A few real portraits with eroded ground-truth regions: clearly background, clearly person."""
    out = []
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_MARGIN + 1, 2 * EDGE_MARGIN + 1))
    for image_path, mask_path in portraits[::40]:
        image = cv2.imread(str(image_path))
        truth = (cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
        background = cv2.erode(1 - truth, kernel).astype(bool)
        person = cv2.erode(truth, kernel).astype(bool)
        if background.sum() > 5000:
            out.append((image, background, person))
    assert len(out) >= 4
    return out


def test_replace_with_colour_fills_the_background(engine, samples):
    look = Look(effect="replace", background=ColorBackground((40, 200, 90)))
    for image, background, person in samples:
        out = engine.process(image, look)
        assert share_close(out[background], (40, 200, 90)) >= MIN_SHARE, "behind the person: the colour"
        assert share_close(out[person], image[person]) >= PERSON_SHARE, "the person must be kept"


def test_replace_with_image_shows_the_image_behind(engine, samples, background_image):
    bg = ImageBackground(background_image)
    look = Look(effect="replace", background=bg)
    for image, background, person in samples:
        out = engine.process(image, look)
        expected = bg.frame((image.shape[1], image.shape[0]))
        assert share_close(out[background], expected[background]) >= MIN_SHARE
        assert share_close(out[person], image[person]) >= PERSON_SHARE


def test_default_replacement_is_white(engine, samples):
    image, background, _ = samples[0]
    out = engine.process(image, Look(effect="replace"))
    assert share_close(out[background], (255, 255, 255)) >= MIN_SHARE


def test_desaturate_makes_background_gray_and_keeps_person_colour(engine, samples):
    for image, background, person in samples:
        out = engine.process(image, Look(effect="desaturate")).astype(int)
        b, g, r = out[..., 0], out[..., 1], out[..., 2]
        spread = np.maximum(np.abs(b - g), np.abs(g - r))
        assert (spread[background] <= 1).mean() >= MIN_SHARE, "R=G=B behind the person"
        assert np.abs(out[person] - image[person]).mean() < 2
        assert spread[person].mean() > 5, "the person stays in colour"


def high_frequency_energy(image: np.ndarray, region: np.ndarray) -> float:
    """Mean squared Laplacian: dominated by real edges, not by 8-bit rounding noise."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float((cv2.Laplacian(gray, cv2.CV_32F) ** 2)[region].mean())


def test_blur_removes_background_detail_but_not_the_person(engine, samples):
    for image, background, person in samples:
        out = engine.process(image, Look(effect="blur", blur=24)).copy()
        before, after = high_frequency_energy(image, background), high_frequency_energy(out, background)
        assert after < 0.2 * before, f"background detail should drop sharply: {before:.2f} -> {after:.2f}"
        assert share_close(out[person], image[person]) >= PERSON_SHARE


def test_stronger_blur_blurs_more(engine, samples):
    image, background, _ = samples[0]
    weak = high_frequency_energy(engine.process(image, Look(effect="blur", blur=4)).copy(), background)
    strong = high_frequency_energy(engine.process(image, Look(effect="blur", blur=60)).copy(), background)
    assert strong < weak


def test_transparent_rgba_alpha_is_the_matte(engine, samples):
    image, background, person = samples[0]
    alpha = engine.alpha(image).copy()
    rgba = engine.compositor.rgba(image, alpha)
    assert rgba.shape == image.shape[:2] + (4,)
    assert np.array_equal(rgba[..., 3], alpha)
    assert np.array_equal(rgba[..., :3], image)
    assert (rgba[..., 3][background] <= 10).mean() >= 0.9 and (rgba[..., 3][person] >= 245).mean() >= 0.9


def test_transparent_live_renders_key_colour(engine, samples):
    image, background, _ = samples[0]
    out = engine.process(image, Look(effect="transparent", key_color=(0, 255, 0)))
    assert share_close(out[background], (0, 255, 0)) >= MIN_SHARE


def test_none_is_passthrough(engine, samples):
    image = samples[0][0]
    assert np.array_equal(engine.process(image, Look(effect="none")), image)


def test_video_background_advances_and_loops(background_video, samples):
    image = samples[0][0]
    size = (image.shape[1], image.shape[0])
    bg = VideoBackground(background_video)
    cap = cv2.VideoCapture(str(background_video))
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    first = bg.frame(size).copy()
    second = bg.frame(size).copy()
    assert np.abs(first.astype(int) - second).mean() > 0.5, "consecutive frames differ"
    for _ in range(count - 2):
        bg.frame(size)
    looped = bg.frame(size)
    assert np.abs(looped.astype(int) - first).mean() < 3, "after the last frame it starts again"
    bg.close()


def test_video_background_keeps_its_own_frame_rate(background_video):
    """A 24 fps clip behind a 30 fps camera plays at 24 fps: each camera frame gets the clip's frame
    nearest in time (scaled once and reused, not decoded again), and a hold-up doesn't make it race."""
    clip = background_video
    size = (640, 360)
    cap = cv2.VideoCapture(str(clip))
    assert cap.get(cv2.CAP_PROP_FPS) == 24
    reference = []
    while (frame := cap.read()[1]) is not None:
        reference.append(cover_resize(frame, size))
    bg = VideoBackground(clip)
    start = 1000.0  # any clock: counted from the first frame's time
    for i in range(90):  # 3 s at 30 fps, past the clip's end (56 frames): it loops
        shown = bg.frame(size, start + i / 30)
        n = round(i * 24 / 30)
        assert np.abs(shown.astype(int) - reference[n % len(reference)]).mean() < 1.0, (i, n)
    assert bg._shown == round(89 * 24 / 30), "72 frames decoded for 90 camera frames"
    before = bg._shown
    bg.frame(size, start + 89 / 30 + 5.0)  # held up for 5 s
    assert bg._shown == before + 1, "after a hold-up it goes on from where it was, one frame on"
    bg.close()


def test_video_background_faster_than_the_camera_keeps_time():
    """A 30 fps clip behind a 10 fps camera (a dim room, a slow laptop) still plays at 30 fps: the
    frames in between are skipped, not shown late."""
    from conftest import require_path

    clip = require_path("backgrounds", "videos", "backscrub_rotating_earth.webm")
    bg = VideoBackground(clip)
    assert bg.fps == 30
    for i in range(101):  # 10 s at 10 fps
        bg.frame((320, 180), 50.0 + i / 10)
    assert bg._shown == 300
    bg.close()


def test_cover_resize_crops_instead_of_stretching():
    image = np.zeros((100, 400, 3), np.uint8)
    image[:, 175:225] = 255  # a centred white band, 1/8 of the width
    out = cover_resize(image, (200, 200))
    assert out.shape == (200, 200, 3)
    white_fraction = (out[100, :, 0] > 127).mean()
    assert 0.45 <= white_fraction <= 0.55, "the band keeps its aspect: half of the cropped square"


def test_compositing_allocates_no_full_frames(engine, samples):
    """The hot path reuses its buffers: after a warm-up frame, no frame-sized allocation per frame."""
    import tracemalloc

    image = samples[0][0]
    frame_bytes = image.size
    for look in (Look(effect="blur"), Look(effect="replace"), Look(effect="transparent"),
                 Look(effect="desaturate"), Look(effect="replace", background=ColorBackground((1, 2, 3)))):
        engine.process(image, look)  # warm-up: buffers for this size
        tracemalloc.start()
        for _ in range(3):
            engine.process(image, look)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < frame_bytes / 4, f"{look.effect}: {peak} bytes allocated per frame"


def test_image_background_is_resized_once_and_cached(background_image):
    bg = ImageBackground(background_image)
    a = bg.frame((640, 360))
    b = bg.frame((640, 360))
    assert a is b


@pytest.mark.parametrize("text,bgr", [("white", (255, 255, 255)), ("#00ff00", (0, 255, 0)),
                                      ("#f00", (0, 0, 255)), ("0,128,255", (255, 128, 0))])
def test_parse_color(text, bgr):
    assert parse_color(text) == bgr


@pytest.mark.parametrize("text", ["#zzz", "300,0,0", "background.png", ""])
def test_parse_color_rejects(text):
    assert parse_color(text) is None


def full_frame_blend(frame: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The compositing formula over every pixel, in floats: what the strip-limited blend must equal."""
    a = alpha[..., None].astype(np.float64) / 255.0
    return np.clip(frame * a + background * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("effect", ["desaturate", "replace"])
def test_blend_limited_to_the_person_equals_the_whole_frame_formula(engine, samples, effect):
    """The compositor blends only the person's edge (copying the inside, leaving the outside): the
    result must still be the formula at every pixel, on real mattes and on an awkward synthetic one."""
    solid = ColorBackground((40, 90, 200))
    cases = [(image, engine.alpha(image).copy()) for image, _, _ in samples[:3]]
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (181, 333, 3), dtype=np.uint8)
    alpha = np.zeros((181, 333), np.uint8)
    alpha[20:150, 100:300] = 255
    alpha[60:80, 50:320] = rng.integers(0, 256, (20, 270), dtype=np.uint8)
    alpha[180, 0], alpha[0, 332] = 9, 200  # lone pixels in the corners, in the last, shorter strip
    cases.append((odd, alpha))
    for image, alpha in cases:
        if effect == "desaturate":
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            background = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            out = engine.compositor.composite(image, Matte(alpha), Look(effect="desaturate"))
        else:
            background = solid.frame(image.shape[1::-1])
            out = engine.compositor.composite(image, Matte(alpha), Look(effect="replace", background=solid))
        spans = engine.compositor.spans.find(alpha)
        assert any(solid_run for *_, solid_run in spans), "the inside of the person should be copied"
        expected = full_frame_blend(image, alpha, background)
        assert np.abs(out.astype(int) - expected).max() <= 1  # each uint8 product rounds on its own


def test_soft_edge_lut_left_to_the_compositor_gives_the_same_frame(engine, samples):
    """Live, the matte's soft-edge LUT is applied by the compositor on the blended rectangles only:
    the frame must be the one the final matte gives, pixel for pixel."""
    solid = ColorBackground((40, 90, 200))
    for image, _, _ in samples[:3]:
        for effect in ("replace", "blur"):
            look = Look(effect=effect, background=solid)
            final = engine.compositor.composite(image, Matte(engine.alpha(image).copy()), look).copy()
            matte = engine.matting.run(image)
            soft, lut = matte.alpha, matte.lut
            assert lut is not None and np.any(soft != cv2.LUT(soft, lut)), "the LUT was really left undone"
            lo, hi = lut_bounds(lut)
            assert 0 < lo < hi < 255 and lut[lo - 1] == 0 and lut[hi] == 255
            source = matte.mask.copy()
            assert np.array_equal(engine.process(image, look), final)
            assert np.array_equal(engine.compositor.composite(image, Matte(soft, lut), look), final)
            assert np.array_equal(engine.compositor.composite(image, Matte(soft, lut, source), look), final)


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (333, 181), (64, 48)])
def test_person_extent_read_from_the_small_mask_bounds_the_full_one(size):
    """The compositor may find the person's extent from the small mask the alpha was upsampled from;
    its rectangles must still cover every pixel the LUT makes visible and copy only full-person ones."""
    from vcam.matting.matte import smoothstep_lut

    w, h = size
    rng = np.random.default_rng(3)
    lut = smoothstep_lut(0.6, 0.3)
    lo, hi = lut_bounds(lut)
    for gw, gh in ((427, 240), (455, 256), (max(8, w // 3), max(8, h // 3))):
        source = np.zeros((gh, gw), np.uint8)
        cv2.ellipse(source, (gw // 2, gh), (gw // 4, gh * 3 // 4), 0, 0, 360, 255, -1)
        source = cv2.GaussianBlur(source, (0, 0), 3)
        source[rng.integers(0, gh, 40), rng.integers(0, gw, 40)] = rng.integers(0, 256, 40)  # lone specks
        source[:, :2] = hi  # the edges, where the positions are clamped
        alpha = cv2.resize(source, (w, h), interpolation=cv2.INTER_LINEAR)
        exact, bounded = PersonSpans(), PersonSpans()
        exact.find(alpha)
        spans = bounded.find(alpha, lut, source)
        # the extremes read from the source bound every strip's true column-wise max and min
        assert (bounded._colmax >= exact._colmax).all() and (bounded._colmin <= exact._colmin).all()
        covered = np.zeros((h, w), bool)
        for y0, y1, x0, x1, solid in spans:
            covered[y0:y1, x0:x1] = True
            if solid:
                assert (alpha[y0:y1, x0:x1] >= hi).all(), (gw, gh, y0, y1, x0, x1)
        assert covered[alpha >= lo].all(), (gw, gh)
        exact = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1, s in PersonSpans().find(alpha, lut) if not s)
        bounded = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1, s in PersonSpans().find(alpha, lut, source)
                      if not s)
        if w >= 2 * gw:  # upsampling, as live: the bound stays close to the exact extent
            assert bounded <= 1.5 * exact + 64 * h / 12


def test_reducer_halves_to_box_averages_and_shares_them():
    from vcam.frames.reduce import Reducer

    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    reduced = Reducer()
    reduced.set(frame)
    quarter = reduced.by(4)
    assert reduced.by(2) is reduced.by(2)  # made once per frame
    box = frame.reshape(180, 4, 320, 4, 3).mean(axis=(1, 3))
    assert np.abs(quarter.astype(float) - box).max() <= 1.0  # two roundings of the halvings
    small = reduced.resize((455, 256), np.empty((256, 455, 3), np.uint8))
    direct = cv2.resize(reduced.by(2), (455, 256), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(small, direct)  # by the largest whole factor (2), then the rest bilinearly
    gray = reduced.gray((427, 240), np.empty((240, 427), np.uint8))
    resized = cv2.resize(reduced.by(2), (427, 240), interpolation=cv2.INTER_LINEAR)
    direct = cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)
    assert np.abs(gray.astype(int) - direct).max() <= 1  # grey first, then resized: the same guide
    odd = rng.integers(0, 256, (723, 1283, 3), dtype=np.uint8)
    reduced.set(odd)
    assert reduced.by(4).shape == (723 // 4, 1283 // 4, 3) and reduced.by(3).shape == (241, 427, 3)


def test_strong_blur_at_1080p_reduces_further_but_looks_the_same(engine, samples):
    """At 1080p a strong blur is made at 1/8 instead of 1/4: the same look, within a few grey levels."""
    from vcam.compositing.blur import blur_factor
    from vcam.compositing.compositor_bgr import BGRCompositor

    image = cv2.resize(samples[0][0], (1920, 1080))
    assert blur_factor(24, 1080) == 8 and blur_factor(24, 720) == 4 and blur_factor(12, 1080) == 4
    at_eighth = BGRCompositor().blurred(image, 24, np.empty_like(image))
    at_quarter = cv2.resize(cv2.stackBlur(cv2.resize(image, (480, 270), interpolation=cv2.INTER_AREA),
                                          (13, 13)), (1920, 1080), interpolation=cv2.INTER_LINEAR)
    assert np.abs(at_eighth.astype(int) - at_quarter).mean() < 3.0
    everywhere = np.ones(image.shape[:2], bool)
    eighth = high_frequency_energy(at_eighth, everywhere)
    quarter = high_frequency_energy(at_quarter, everywhere)
    assert eighth <= 1.1 * quarter, f"no less blurred than at 1/4: {eighth:.3f} vs {quarter:.3f}"


@pytest.mark.parametrize("strength", [12, 24, 28])
def test_blur_is_the_triangle_kernel_of_stack_blur(samples, strength):
    """blurred() makes stackBlur's triangle kernel from two box passes (half the cost). Against the exact
    triangle filter (float, the same radius at 1/4 size) it is off by roundings only, for odd and even
    box widths (strength 12 and 28 give even ones), except at the frame's own border."""
    from vcam.compositing.compositor_bgr import BGRCompositor

    image = cv2.resize(samples[0][0], (1280, 720))
    radius = round(strength / 4)
    triangle = np.concatenate([np.arange(1, radius + 2), np.arange(radius, 0, -1)]).astype(np.float32)
    triangle /= triangle.sum()
    quarter = cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA).astype(np.float32)
    exact = cv2.resize(cv2.sepFilter2D(quarter, -1, triangle, triangle, borderType=cv2.BORDER_REPLICATE),
                       (1280, 720), interpolation=cv2.INTER_LINEAR)
    ours = BGRCompositor().blurred(image, strength, np.empty_like(image))
    inside = (slice(4 * radius + 8, -4 * radius - 8),) * 2
    diff = np.abs(ours - exact)[inside]
    assert diff.max() <= 2.0 and diff.mean() < 0.6
