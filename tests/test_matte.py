"""The matte stage on real pictures: edge quality on the portraits, temporal behaviour on real frames,
the second segmentation runtime and the every-Nth-frame model schedule."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vcam.commands.eval_stills import eval_stills, iou
from vcam.compositing.engine import Engine
from vcam.config import ConfigError, load_settings
from vcam.matting import schedule
from vcam.matting.matte import MatteBuilder, guide_size, smoothstep_lut
from vcam.matting.models import ModelError
from vcam.matting.runtimes import open_segmenter


@pytest.fixture(scope="module")
def settings():
    return load_settings(use_user_config=False)


def read_frames(path, n, step=1):
    cap = cv2.VideoCapture(str(path))
    frames = []
    i = 0
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(frame)
        i += 1
    cap.release()
    assert len(frames) == n, f"{path}: only {len(frames)} frames"
    return frames


def _show(name, scores):
    print(f"\n{name}: " + " | ".join(f"{k} IoU {scores[k]['iou']:.4f} BF {scores[k]['boundary_f']:.4f}"
                                    for k in ("raw", "vcam", "file")))


@pytest.mark.parametrize("name", ["portraits", "people_varied"])
def test_file_matte_beats_raw_model_on_every_still_set(still_scores, name):
    """What `vcam apply` makes of a still (quality = "best") beats the raw model on each kind of picture,
    not only on the portraits the matte was first tuned on, which it lost to on people_varied before
    (docs/matte.md): the documented targets, IoU >= 0.965 and boundary F +0.05 on the portraits, IoU
    +0.005 and boundary F +0.03 on people_varied."""
    scores = still_scores(name)
    _show(name, scores)
    raw, file = scores["raw"], scores["file"]
    assert scores["quality"] == "best"
    assert file["iou"] >= raw["iou"] + 0.002
    assert file["boundary_f"] >= raw["boundary_f"] + 0.03
    if name == "portraits":
        assert scores["images"] >= 200
        assert file["iou"] >= 0.965
        assert file["boundary_f"] >= raw["boundary_f"] + 0.05
    else:
        assert scores["images"] >= 100
        assert file["iou"] >= raw["iou"] + 0.005


@pytest.mark.parametrize("name", ["portraits", "people_varied"])
def test_live_matte_stays_close_to_or_above_raw_model_on_every_still_set(still_scores, name):
    """The live matte by default (one model pass, grey guide: the cheapest within the live budget)
    sharpens the portraits' edges and, thanks to the `confident` bound, no longer falls clearly below
    the raw model on varied pictures: measured -0.002 IoU / -0.013 boundary F there; unbounded it was
    -0.004 / -0.025, and the matte shipped before (threshold 0.6) -0.013 / -0.081 (docs/matte.md)."""
    scores = still_scores(name)
    raw, live = scores["raw"], scores["vcam"]
    if name == "portraits":
        assert live["iou"] >= raw["iou"]
        assert live["boundary_f"] >= raw["boundary_f"] + 0.03
    else:
        assert live["iou"] >= raw["iou"] - 0.005
        assert live["boundary_f"] >= raw["boundary_f"] - 0.02


def test_colour_guide_beats_the_grey_one_and_the_raw_model_on_varied_pictures(settings, people_varied,
                                                                             still_scores):
    """guide = "colour" follows edges a grey guide cannot see (two colours of one grey, a person both
    lighter and darker than the wall): on people_varied the live matte with the grey guide falls below
    the raw model (full set: boundary F 0.6520 vs 0.6650), with the colour guide it is above it (0.6729)."""
    assert settings.matte.guide == "grey"  # the default: its live column is the grey guide's
    grey = still_scores("people_varied")
    colour = eval_stills(settings.replace("matte", guide="colour", quality="fast"), people_varied)
    raw, grey, colour = grey["raw"], grey["vcam"], colour["vcam"]
    print(f"\nraw {raw}, grey {grey}, colour {colour}")
    assert colour["boundary_f"] >= grey["boundary_f"] + 0.01
    assert colour["iou"] >= grey["iou"]
    assert colour["iou"] >= raw["iou"] and colour["boundary_f"] >= raw["boundary_f"]


def test_colour_guide_of_an_i420_frame_matches_the_bgr_one(settings, portraits):
    """A live I420 frame is guided by its own planes, converted to BGR at guide size: its matte is the
    BGR frame's, but for the chroma's subsampling."""
    from vcam.frames import i420
    image = cv2.imread(str(portraits[0][0]))
    h, w = (d // 4 * 4 for d in image.shape[:2])
    image = np.ascontiguousarray(image[:h, :w])
    with open_segmenter("general") as seg:
        conf = seg.segment(image).copy()
    matte = settings.replace("matte", guide="colour").matte
    bgr = MatteBuilder(matte, video=False).build(conf, (w, h), image).copy()
    planar = MatteBuilder(matte, video=False).build(conf, (w, h), i420.from_bgr(image, full_range=True))
    assert iou(bgr >= 128, planar >= 128) > 0.99


def test_matte_never_drops_what_the_model_is_sure_of(settings, portraits, people_varied):
    """Where the model is sure of the person (confidence >= `confident`), the live matte keeps them,
    whatever the grey guide says: unbounded, it made holes there in 8 of the 145 people_varied pictures
    (up to 1% of the sure area: a person both lighter and darker than the wall), bounded in none."""
    builder = MatteBuilder(settings.matte, video=False)
    with open_segmenter("general", runtime="litert") as seg:
        for image_path, _ in portraits[::26] + people_varied:
            image = cv2.imread(str(image_path))
            h, w = image.shape[:2]
            conf = seg.segment(image).copy()
            sure = cv2.resize(conf, (w, h)) >= round(settings.matte.confident * 255)
            inside = cv2.erode(sure.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # off the bound's border
            alpha = builder.build(conf, (w, h), image)
            assert (alpha[inside] < 128).sum() <= 1e-3 * inside.sum(), image_path.name


def test_guided_refinement_is_what_moves_the_edge(settings, portraits):
    """Without the guide (refine = none) the live matte is no better than the raw model's edge."""
    pairs = portraits[::13]
    plain = eval_stills(settings.replace("matte", refine="none", threshold=0.5, quality="fast"), pairs)
    guided = eval_stills(settings.replace("matte", quality="fast"), pairs)
    assert plain["vcam"]["boundary_f"] == pytest.approx(plain["raw"]["boundary_f"], abs=0.01)
    assert guided["vcam"]["boundary_f"] > plain["vcam"]["boundary_f"] + 0.03


def test_build_reuses_its_buffer_and_follows_size_changes(settings, portraits):
    image = cv2.imread(str(portraits[0][0]))
    with open_segmenter("general") as seg:
        conf = seg.segment(image).copy()
    builder = MatteBuilder(settings.matte, video=True)
    h, w = image.shape[:2]
    first = builder.build(conf, (w, h), image)
    second = builder.build(conf, (w, h), image)
    assert first is second and first.shape == (h, w) and first.dtype == np.uint8
    small = cv2.resize(image, (w // 2, h // 2))
    third = builder.build(conf, (w // 2, h // 2), small)  # new size mid-stream: no crash, right shape
    assert third.shape == (h // 2, w // 2)
    # without a frame (the old call) it still works: plain bilinear upsampling
    assert builder.build(conf, (w, h)).shape == (h, w)


def test_guide_is_reduced_to_refine_size_and_never_enlarged():
    assert guide_size(1280, 720, 240) == (427, 240)
    assert guide_size(1920, 1080, 240) == (427, 240)
    assert guide_size(320, 180, 240) == (320, 180)


def _still_then_cut(settings_matte, a, b, conf_a, conf_b, frames_a=8):
    builder = MatteBuilder(settings_matte, video=True)
    h, w = a.shape[:2]
    for _ in range(frames_a):
        builder.build(conf_a, (w, h), a)
    return builder.build(conf_b, (w, h), b).copy()


def test_temporal_smoothing_does_not_smear_a_moving_person(settings, portraits):
    """A sudden change of picture (person moved) is followed at once where the frame changed;
    the same smoothing without the motion gate (motion = 0) would show a ghost of the old matte."""
    a = cv2.imread(str(portraits[0][0]))
    b = cv2.imread(str(portraits[1][0]))
    b = cv2.resize(b, a.shape[1::-1])
    with open_segmenter("general") as seg:
        conf_a, conf_b = seg.segment(a).copy(), seg.segment(b).copy()
    h, w = a.shape[:2]
    per_frame = MatteBuilder(settings.matte, video=False).build(conf_b, (w, h), b).copy()
    gated = _still_then_cut(settings.matte, a, b, conf_a, conf_b)
    ungated = _still_then_cut(dataclasses.replace(settings.matte, motion=0), a, b, conf_a, conf_b)
    changed = cv2.absdiff(per_frame, _still_then_cut(settings.matte, a, a, conf_a, conf_a)) > 128
    assert changed.mean() > 0.05, "the two portraits should differ"
    gated_err = cv2.absdiff(gated, per_frame)[changed].mean()
    ungated_err = cv2.absdiff(ungated, per_frame)[changed].mean()
    assert gated_err < 15, gated_err
    assert ungated_err > 60, ungated_err


def test_temporal_smoothing_steadies_still_edges(settings, desk_video):
    """On real consecutive frames, the matte changes less on still pixels with smoothing than without."""
    frames = read_frames(desk_video, 40)
    def change_on_still(matte_settings):
        with Engine(settings.replace("matte", **dataclasses.asdict(matte_settings)), video=True) as engine:
            prev = prev_gray = None
            total, count = 0.0, 0
            for i, frame in enumerate(frames):
                alpha = engine.alpha(frame, i * 33).copy()
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                if prev is not None:
                    still = cv2.absdiff(gray, prev_gray) < 2
                    total += float(cv2.absdiff(alpha, prev)[still].sum())
                    count += int(still.sum())
                prev, prev_gray = alpha, gray
        return total / count
    smoothed = change_on_still(settings.matte)
    unsmoothed = change_on_still(dataclasses.replace(settings.matte, temporal=0.0))
    print(f"\nstill-pixel matte change: smoothed {smoothed:.3f}, per-frame {unsmoothed:.3f}")
    assert smoothed < 0.75 * unsmoothed


def test_live_edge_width_change_keeps_working(settings, portraits):
    image = cv2.imread(str(portraits[0][0]))
    with open_segmenter("general") as seg:
        conf = seg.segment(image).copy()
    h, w = image.shape[:2]
    builder = MatteBuilder(settings.matte, video=True)
    builder.build(conf, (w, h), image)
    hard = dataclasses.replace(settings.matte, edge_width=0.0)
    builder.configure(hard)
    alpha = builder.build(conf, (w, h), image)
    assert set(np.unique(alpha)) <= {0, 255}


def test_litert_runtime_gives_the_same_mask_as_mediapipe(portraits):
    """Same model, input sampled from the shared reduction rather than MediaPipe's mask-size copy
    (runtime_litert.py): the masks agree to a fraction of a grey level on average."""
    diffs, ious = [], []
    with open_segmenter("general") as mp_seg, open_segmenter("general", runtime="litert") as lite:
        for image_path, _ in portraits[::11]:
            image = cv2.imread(str(image_path))
            a = mp_seg.segment(image).copy()
            b = lite.segment(image)
            assert a.shape == b.shape
            diffs.append(np.abs(a.astype(int) - b.astype(int)).mean())
            ious.append(iou(a >= 128, b >= 128))
    assert np.mean(diffs) < 0.6 and max(diffs) < 2.5
    assert np.mean(ious) > 0.995 and min(ious) > 0.97


def test_litert_runtime_landscape_model_and_engine(settings, portraits):
    """The landscape model through litert and the file engine beats that raw model on the same portraits:
    boundary F +0.07 on these 33 (+0.06 on all 264); without the guided filter it would be +0.01."""
    s = settings.replace("segmentation", runtime="litert", model="landscape")
    with Engine(s, video=False) as engine:
        assert engine.matting.segmenter.runtime == "litert" and engine.matting.segmenter.model == "landscape"
    scores = eval_stills(s, portraits[::8])
    _show("landscape", scores)
    raw, file = scores["raw"], scores["file"]
    assert file["iou"] > raw["iou"] > 0.94
    assert file["boundary_f"] >= raw["boundary_f"] + 0.04


def test_litert_runtime_rejects_a_bogus_model(tmp_path):
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer" * 100)
    with pytest.raises(ModelError, match="bogus.tflite"):
        open_segmenter("general", str(bogus), runtime="litert")
    with pytest.raises(ModelError, match="not found"):
        open_segmenter("general", str(tmp_path / "missing.tflite"), runtime="litert")


def test_interval_two_skips_the_model_but_the_matte_follows_each_frame(settings, desk_video, monkeypatch):
    # the cap alone decides (the schedule's own triggers switched off): the model on every other frame
    monkeypatch.setattr(schedule, "RUN_SHARE", 2.0)
    monkeypatch.setattr(schedule, "KEEP_SHARE", 0.0)
    frames = read_frames(desk_video, 12, step=3)  # every 3rd frame: real motion between them
    every = settings.replace("matte", temporal=0.0).replace("segmentation", interval=1)
    alternate = every.replace("segmentation", interval=2)
    with Engine(every, video=True) as per_frame, Engine(alternate, video=True) as skipping:
        segmenter = skipping.matting.segmenter
        model_frames = []  # the frames the model really ran on (counted at the model's own call)
        real_segment = segmenter.segment

        def counted_segment(*args, **kwargs):
            model_frames.append(i)
            return real_segment(*args, **kwargs)

        monkeypatch.setattr(segmenter, "segment", counted_segment)
        for i, frame in enumerate(frames):
            reference = per_frame.alpha(frame, i * 100) >= 128
            alpha = skipping.alpha(frame, i * 100) >= 128
            assert iou(alpha, reference) > 0.95
        assert model_frames == list(range(0, len(frames), 2))  # the model on every other frame only


@pytest.mark.parametrize("text, words", [
    ('[matte]\nrefine = "bilateral"\n', ["refine", "guided, none"]),
    ('[segmentation]\nruntime = "onnx"\n', ["runtime", "mediapipe, litert"]),
    ("[segmentation]\ninterval = 9\n", ["interval", "between"]),
    ("[matte]\nmotion = -1\n", ["motion", "between"]),
    ('[matte]\nquality = "ultra"\n', ["quality", "fast, best"]),
    ("[matte]\nconfident = 0.2\n", ["confident", "between"]),
])
def test_bad_matte_settings_name_the_key(tmp_path, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    for word in words:
        assert word in str(err.value)


def test_guided_filter_is_the_guided_filter(settings, portraits):
    """vcam's guided filter against opencv-contrib's on a real portrait and its model mask: the same
    filter when a and b are kept at full size, and within a level or two where they are made at half
    size (the default), with the same edge."""
    from vcam.matting.guided import GuidedFilter
    from vcam.matting.matte import guide_size

    image = cv2.imread(str(portraits[5][0]))
    with open_segmenter("general") as seg:
        conf = seg.segment(image)
    h, w = image.shape[:2]
    gw, gh = guide_size(w, h, settings.matte.refine_size)
    guide = cv2.cvtColor(cv2.resize(image, (gw, gh), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    src = cv2.resize(conf, (gw, gh), interpolation=cv2.INTER_LINEAR)
    r, eps = settings.matte.refine_radius, (settings.matte.refine_eps * 255.0) ** 2
    reference = cv2.ximgproc.guidedFilter(guide, src, r, eps, dDepth=cv2.CV_32F)
    full = GuidedFilter(subsample=1).apply(guide, src, r, eps, np.empty((gh, gw), np.float32))
    assert np.abs(full - reference).max() < 0.05
    half = GuidedFilter().apply(guide, src, r, eps, np.empty((gh, gw), np.float32))
    diff = np.abs(half - reference)
    assert diff.mean() < 0.8 and np.percentile(diff, 99) < 8
    assert iou(half >= 0.6 * 255, reference >= 0.6 * 255) > 0.998


def test_flat_picture_with_refine_eps_zero_gives_no_blotches(settings):
    """refine_eps = 0 is allowed; on flat parts of the picture (variance ~0: a plain wall, a dark room)
    the guided filter must not divide float rounding noise by ~0, which turned the matte into 0/255
    blotches there. The mask is 160 with 5% specks: the matte must stay near the smoothstep of 160."""
    rng = np.random.default_rng(3)
    matte = dataclasses.replace(settings.matte, refine_eps=0.0)
    expected = int(smoothstep_lut(matte.threshold, matte.edge_width)[160])
    for base in (30, 115, 203):
        frame = np.full((360, 640, 3), base, np.uint8)
        frame[rng.random((360, 640)) < 0.01] += 1  # sensor noise: a level up here and there
        confidence = np.full((256, 455), 160, np.uint8)
        specks = rng.random(confidence.shape) < 0.05
        confidence[specks] = rng.integers(0, 256, specks.sum())
        alpha = MatteBuilder(matte, video=False).build(confidence, (640, 360), frame)
        assert expected - 60 < int(alpha.min()) and int(alpha.max()) < expected + 60, \
            (base, alpha.min(), alpha.max(), expected)
