"""The live pipeline's I420 path, on real pictures: the plane helpers, MJPG straight to planes, the planar
Reducer, the I420 compositor against the BGR one, and CameraSource(as_i420=True).

Camera frames are full-range I420 and the compositor writes limited range (vcam/frames/i420.py), so
every comparison with the BGR route says which range each side is in. The BGR reference of a composited
frame is taken "as sent": converted to limited-range I420 and back, as the virtual camera would carry it.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import psnr

from vcam.compositing.backgrounds import ColorBackground, ImageBackground, cover_resize
from vcam.compositing.compositor_bgr import BGRCompositor
from vcam.compositing.compositor_i420 import I420Compositor
from vcam.compositing.look import Look
from vcam.config import load_settings
from vcam.frames import i420, turbojpeg
from vcam.frames.mjpg import MjpgDecoder
from vcam.frames.reduce import Reducer
from vcam.live.capture import CameraSource
from vcam.matting.matte import Matte

SAMPLINGS = {
    "420": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, turbojpeg.SAMP_420),
    "422": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, turbojpeg.SAMP_422),
    "444": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, turbojpeg.SAMP_444),
}
# MJPG to planes vs the BGR route: measured 48.9-49.0 dB on Y and 45.2-46.2 dB on chroma (desk video,
# quality 90, all three subsamplings); 40 leaves 5 dB for other libjpeg-turbo builds.
MIN_PSNR = 40.0
# I420 compositor vs the BGR one "as sent": measured 0.05-0.36 grey levels mean over the frame (7
# portraits, every effect; blur is the largest), 0.0 for "none".
MAX_COMPOSITE_DIFF = 1.0


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def jpeg(image: np.ndarray, sampling: int | None = None, quality: int = 90) -> np.ndarray:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, data = cv2.imencode(".jpg", image, params)
    assert ok
    return data


def full_range_reference(data: np.ndarray) -> np.ndarray:
    """The BGR route: OpenCV's decode, then the camera frame's (full-range) I420."""
    return i420.from_bgr(cv2.imdecode(data, cv2.IMREAD_COLOR), full_range=True)


@pytest.fixture(scope="module")
def desk_frames(desk_video) -> list[np.ndarray]:
    """Four real frames of the desk video, 640x360 BGR."""
    cap = cv2.VideoCapture(str(desk_video))
    frames = []
    for i in range(31):
        ok, frame = cap.read()
        assert ok, "the desk video has at least 31 frames"
        if i % 10 == 0:
            frames.append(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


# -- vcam/frames/i420.py -------------------------------------------------------------------------------------

def test_planes_are_views_at_the_offsets_of_the_packed_layout(desk_frames):
    """planes() gives Y rows, then the U block, then the V block of OpenCV's I420, as views (no copies)."""
    bgr = desk_frames[0]
    h, w = bgr.shape[:2]
    packed = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    assert i420.size(packed) == (w, h) and i420.shape((w, h)) == packed.shape
    y, u, v = i420.planes(packed)
    assert y.shape == (h, w) and u.shape == v.shape == (h // 2, w // 2)
    base = packed.ctypes.data
    c = (w // 2) * (h // 2)
    assert [p.ctypes.data - base for p in (y, u, v)] == [0, w * h, w * h + c]
    flat = packed.reshape(-1)
    assert (np.array_equal(u.reshape(-1), flat[w * h:w * h + c])
            and np.array_equal(v.reshape(-1), flat[w * h + c:]))
    # U is Cb and V is Cr (OpenCV's YCrCb has them the other way round): each the 2x2 average of its own
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    cb, cr = (cv2.resize(ycrcb[..., k], (w // 2, h // 2), interpolation=cv2.INTER_AREA) for k in (2, 1))
    assert mean_diff(u, cb) < 1.5 and mean_diff(v, cr) < 1.5
    assert mean_diff(u, cr) > 5, "the picture has colour enough to tell U from V"
    u[:] = 7  # views: writing a plane writes the frame
    assert (flat[w * h:w * h + c] == 7).all() and not (flat[w * h + c:] == 7).all()


def test_from_bgr_cuts_odd_sides_and_marks_the_range(desk_frames):
    """An odd-sized picture becomes I420 of the even size below it; full_range is full() of the limited
    one."""
    odd = cv2.resize(desk_frames[1], (641, 361))
    frame = i420.from_bgr(odd)
    assert frame.shape == (540, 640) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert i420.size(frame) == (640, 360)
    assert np.array_equal(frame, cv2.cvtColor(np.ascontiguousarray(odd[:360, :640]), cv2.COLOR_BGR2YUV_I420))
    camera = i420.from_bgr(odd, full_range=True)
    assert np.array_equal(camera, i420.full(frame))
    y = i420.planes(camera)[0]
    assert y.min() < 16 or y.max() > 235, "the full range reaches beyond limited Y"
    assert mean_diff(i420.to_bgr(frame), odd[:360, :640]) < 2.5


def test_limited_and_full_follow_the_bt601_range_formulas():
    """limited(): Y 16 + x*219/255, U/V 128 + (x-128)*224/255, rounded, for every value; full() inverts it
    within one level."""
    frame = i420.new((32, 16))  # Y: 512 pixels, U and V: 128 each, 256 in the chroma block
    frame[:16] = (np.arange(512) % 256).reshape(16, 32)
    frame[16:] = np.arange(256).reshape(8, 32)
    x = np.arange(256, dtype=np.float64)
    want_y = np.floor(16 + x * 219 / 255 + 0.5)
    want_c = np.floor(128 + (x - 128) * 224 / 255 + 0.5)
    lim = i420.limited(frame)
    assert (np.array_equal(lim[:16].reshape(-1)[:256], want_y)
            and np.array_equal(lim[:16].reshape(-1)[256:], want_y))
    assert np.array_equal(lim[16:].reshape(-1), want_c)
    assert lim[:16].min() == 16 and lim[:16].max() == 235 and lim[16:].min() == 16 and lim[16:].max() == 240

    # full(): (x - 16) * 255/219 and 128 + (x - 128) * 255/224, rounded (C 16 and 240 land on .5: either
    # way), over the limited range it is meant for
    exp = i420.full(frame)
    y_in, c_in = slice(16, 236), slice(16, 241)
    exact_y, exact_c = np.clip((x - 16) * 255 / 219, 0, 255), np.clip(128 + (x - 128) * 255 / 224, 0, 255)
    assert np.abs(exp[:16].reshape(-1)[:256][y_in] - exact_y[y_in]).max() <= 0.5 + 1e-6
    assert np.abs(exp[16:].reshape(-1)[c_in] - exact_c[c_in]).max() <= 0.5 + 1e-6

    back = i420.full(lim)
    assert np.abs(back.astype(int) - frame).max() <= 1
    in_place = frame.copy()
    assert i420.limited(in_place, in_place) is in_place and np.array_equal(in_place, lim)


def test_full_clips_values_below_the_limited_range():
    """full() of a limited-range frame with values under 16 (super-black, as some sources send) gives 0,
    not their mirror image (cv2.convertScaleAbs takes |x * a + b|: Y 0 came out as 19)."""
    frame = i420.new((32, 16))
    frame[:] = 0
    assert (i420.full(frame) == 0).all()


@pytest.mark.parametrize("source", [(960, 720), (320, 240)], ids=["down", "up"])
def test_resize_to_another_aspect_crops_like_cover_resize(desk_frames, source):
    """A 4:3 frame scaled to 16:9 is centre-cropped (as backgrounds.cover_resize does), not stretched."""
    picture = cv2.resize(desk_frames[2][:, 80:560], source, interpolation=cv2.INTER_AREA)  # a 4:3 view
    frame = i420.from_bgr(picture)
    out = i420.resize(frame, (640, 360))
    assert out.shape == (540, 640)
    expected = cover_resize(i420.to_bgr(frame), (640, 360))
    # measured 0.38 (down) and 0.47 (up); stretching instead gives about 27
    assert mean_diff(i420.to_bgr(out), expected) < 1.5
    assert mean_diff(cv2.resize(i420.to_bgr(frame), (640, 360)), expected) > 10, \
        "a stretch would be told apart"


def test_flip_mirrors_each_plane(desk_frames):
    """flip() is cv2.flip of each plane, into dst, leaving the source as it was."""
    frame = i420.from_bgr(desk_frames[3], full_range=True)
    before = frame.copy()
    dst = np.empty_like(frame)
    assert i420.flip(frame, dst) is dst
    for s, d in zip(i420.planes(frame), i420.planes(dst), strict=True):
        assert np.array_equal(d, cv2.flip(s, 1))
    assert np.array_equal(frame, before)
    assert not np.array_equal(dst, frame)


# -- vcam/frames/mjpg.py: decode_i420 ------------------------------------------------------------------------

def require_turbojpeg() -> None:
    """libturbojpeg, or skip; under CI=true (which installs libturbojpeg0) its absence is a failure, or the
    fast path would go untested."""
    if turbojpeg.library() is None:
        if os.environ.get("CI"):
            pytest.fail("libturbojpeg is missing under CI: MJPG-to-planes would go untested")
        pytest.skip("libturbojpeg is not installed (apt-get install libturbojpeg0)")


@pytest.mark.parametrize("name", list(SAMPLINGS))
def test_mjpg_decodes_to_planes_like_the_bgr_route(desk_frames, name):
    """Every chroma subsampling a webcam sends, decoded by libturbojpeg to planes, is the picture OpenCV's
    decode + BGR->I420 gives (full range)."""
    require_turbojpeg()
    sampling, code = SAMPLINGS[name]
    decoder = MjpgDecoder((640, 360))
    assert decoder.planar
    for bgr in desk_frames:
        data = jpeg(bgr, sampling)
        assert turbojpeg.YuvDecoder().header(data.reshape(-1)) == (640, 360, code), "the branch under test"
        out = decoder.decode_i420(data)
        ref = full_range_reference(data)
        assert out.shape == (540, 640) and out.dtype == np.uint8
        assert psnr(out[:360], ref[:360]) > MIN_PSNR, "Y"
        assert psnr(out[360:], ref[360:]) > MIN_PSNR, "U and V"


def test_grey_mjpg_has_neutral_chroma(desk_frames):
    """A greyscale JPEG decodes to its grey as Y and U = V = 128."""
    require_turbojpeg()
    grey = cv2.cvtColor(desk_frames[0], cv2.COLOR_BGR2GRAY)
    data = jpeg(grey)
    assert turbojpeg.YuvDecoder().header(data.reshape(-1))[2] == turbojpeg.SAMP_GRAY
    out = MjpgDecoder().decode_i420(data)
    assert out.shape == (540, 640)
    assert (out[360:] == 128).all()
    assert psnr(out[:360], cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)) > MIN_PSNR


def test_mjpg_without_libturbojpeg_gives_the_same_frames(desk_frames, monkeypatch):
    """Without the library, decode_i420 goes through BGR and gives the same frames (measured 0.22-0.33
    levels mean apart)."""
    require_turbojpeg()
    pictures = [jpeg(desk_frames[0], s) for s, _ in SAMPLINGS.values()]
    pictures.append(jpeg(cv2.cvtColor(desk_frames[1], cv2.COLOR_BGR2GRAY)))
    fast = MjpgDecoder()
    planar = [fast.decode_i420(p).copy() for p in pictures]
    monkeypatch.setattr(turbojpeg, "library", lambda: None)
    slow = MjpgDecoder()
    assert not slow.planar
    for data, expected in zip(pictures, planar, strict=True):
        out = slow.decode_i420(data)
        assert out.shape == (540, 640)
        assert mean_diff(out[:360], expected[:360]) < 1.0 and mean_diff(out[360:], expected[360:]) < 1.0
    assert np.abs(out[360:].astype(int) - 128).max() <= 1, "the grey one is still grey"


@pytest.mark.parametrize("library", ["libturbojpeg", "fallback"])
def test_odd_and_damaged_mjpg(desk_frames, monkeypatch, library):
    """An odd-sized JPEG comes out cut to even sides; a frame cut short (once frames were seen to end with
    the end marker) or random bytes give None without raising, and the next good frame decodes."""
    if library == "fallback":
        monkeypatch.setattr(turbojpeg, "library", lambda: None)
    else:
        require_turbojpeg()
    odd = jpeg(cv2.resize(desk_frames[0], (641, 361)))
    decoder = MjpgDecoder()
    out = decoder.decode_i420(odd)
    assert out.shape == (540, 640)
    assert mean_diff(out, full_range_reference(odd)) < 2  # measured 0.85

    good = jpeg(desk_frames[1])
    decoder = MjpgDecoder((640, 360))
    assert decoder.decode_i420(good) is not None
    assert decoder.decode_i420(good[:len(good) // 2]) is None, "cut short"
    noise = np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8)
    assert decoder.decode_i420(noise) is None
    assert decoder.decode_i420(np.zeros(2, np.uint8)) is None
    again = decoder.decode_i420(good)
    assert again is not None and psnr(again, full_range_reference(good)) > MIN_PSNR


# -- vcam/frames/reduce.py in planar mode --------------------------------------------------------------------

def test_planar_reducer_matches_the_bgr_one(desk_video):
    """From a full-range I420 frame: the grey copy is the BGR frame's grey, by(f) its BGR reduction, and
    ycc(f) is Y, Cr, Cb (cv2's YCrCb order) at 1/f."""
    cap = cv2.VideoCapture(str(desk_video))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    h, w = bgr.shape[:2]  # 540x960
    planar, packed = Reducer(), Reducer()
    planar.set(i420.from_bgr(bgr, full_range=True))
    packed.set(bgr)
    assert planar.planar and not packed.planar and planar.hw == (h, w)
    size = (w // 3, h // 3)
    grey = planar.gray(size, np.empty(size[::-1], np.uint8))
    assert mean_diff(grey, packed.gray(size, np.empty(size[::-1], np.uint8))) < 2  # measured 0.70
    assert mean_diff(planar.by(2), packed.by(2)) < 3  # measured 0.53
    assert planar.by(2).shape == (h // 2, w // 2, 3)
    ycc = planar.ycc(4)
    assert ycc.shape == (h // 4, w // 4, 3)
    expected = cv2.cvtColor(packed.by(4), cv2.COLOR_BGR2YCrCb)
    for k in range(3):  # measured 0.42, 0.37, 0.33; U and V swapped would be about 11
        assert mean_diff(ycc[..., k], expected[..., k]) < 1.5, f"YCrCb channel {k}"


# -- vcam/compositing/compositor_i420.py against compositor_bgr.py -------------------------------------------

@pytest.fixture(scope="module")
def mattes(engine, portraits):
    """Real portraits (600x800) with the engine's deferred alpha, LUT and source for the full-range I420
    frame and for the BGR picture."""
    cases = []
    for image_path, _ in portraits[::60]:
        bgr = cv2.imread(str(image_path))
        bgr = bgr[:bgr.shape[0] & ~1, :bgr.shape[1] & ~1]
        frame = i420.from_bgr(bgr, full_range=True)
        case = {"bgr": bgr, "i420": frame}
        for key, picture in (("i420", frame), ("bgr", bgr)):
            matte = engine.matting.run(picture)  # a new Matte: its own buffers
            alpha, lut, source = matte.alpha, matte.lut, matte.mask
            case[key + "_matte"] = (alpha, None if lut is None else lut.copy(),
                                    None if source is None else source.copy())
        cases.append(case)
    assert len(cases) >= 4
    return cases


def final_alpha(matte) -> np.ndarray:
    alpha, lut, _ = matte
    return alpha if lut is None else cv2.LUT(alpha, lut)


def regions(alpha: np.ndarray, margin: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(clearly background, clearly person) of a final alpha, `margin` px away from the edge."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    background = cv2.erode((alpha == 0).astype(np.uint8), kernel).astype(bool)
    person = cv2.erode((alpha == 255).astype(np.uint8), kernel).astype(bool)
    return background, person


def test_the_model_sees_the_same_person_in_i420(mattes):
    """The mask from the I420 frame (model fed from the planes) is the BGR frame's: IoU above 0.99
    (measured 0.9979-0.9997)."""
    for case in mattes:
        a, b = final_alpha(case["i420_matte"]) > 127, final_alpha(case["bgr_matte"]) > 127
        assert (a & b).sum() / (a | b).sum() > 0.99


EFFECTS = {
    "blur": ("blur", None),
    "desaturate": ("desaturate", None),
    "replace-colour": ("replace", lambda _: ColorBackground((40, 200, 90))),
    "replace-image": ("replace", lambda path: ImageBackground(path)),
    "transparent": ("transparent", None),
    "none": ("none", None),
}


@pytest.mark.parametrize("name", list(EFFECTS))
def test_i420_compositor_looks_like_the_bgr_one(mattes, background_image, name):
    """Every effect composited plane by plane (full range in, limited out) is what the BGR compositor's
    picture looks like once sent as I420, and the effect shows behind the person, not on them."""
    effect, make_background = EFFECTS[name]
    background = make_background(background_image) if make_background else None
    for case in mattes:
        bgr, frame = case["bgr"], case["i420"]
        h, w = bgr.shape[:2]
        alpha_i, lut_i, source_i = case["i420_matte"]
        alpha_b, lut_b, source_b = case["bgr_matte"]
        look = Look(effect=effect, background=background)
        out = I420Compositor().composite(frame, Matte(alpha_i, lut_i, source_i), look)
        assert out.shape == frame.shape and out is not frame
        reference = BGRCompositor().composite(bgr, Matte(alpha_b, lut_b, source_b), look)
        as_sent = i420.to_bgr(i420.from_bgr(reference))
        shown = i420.to_bgr(out)
        assert mean_diff(shown, as_sent) < MAX_COMPOSITE_DIFF

        y, u, v = i420.planes(out)
        assert (16 <= y.min() and y.max() <= 235
                and 16 <= min(u.min(), v.min()) and max(u.max(), v.max()) <= 240), "limited range out"
        background_px, person = regions(final_alpha(case["i420_matte"]))
        assert background_px.sum() > 20000 and person.sum() > 20000
        assert mean_diff(shown[person], bgr[person]) < 2.5, "the person is the camera's picture"
        half_background = cv2.resize(background_px.astype(np.uint8), (w // 2, h // 2),
                                     interpolation=cv2.INTER_NEAREST).astype(bool)
        if name == "none":
            assert np.array_equal(out, i420.limited(frame))
        elif name == "blur":
            y_in = i420.planes(frame)[0]
            sharp = np.abs(cv2.Laplacian(y_in, cv2.CV_16S))[background_px].mean()
            soft = np.abs(cv2.Laplacian(y, cv2.CV_16S))[background_px].mean()
            assert soft < 0.5 * sharp, "the background is blurred"
        elif name == "desaturate":
            assert (u[half_background] == 128).all() and (v[half_background] == 128).all()
            half_person = cv2.resize(person.astype(np.uint8), (w // 2, h // 2),
                                     interpolation=cv2.INTER_NEAREST).astype(bool)
            sent = i420.planes(i420.limited(frame))
            # (one portrait is a grey photo: compare, not > 128)
            for got, want in ((u, sent[1]), (v, sent[2])):
                assert mean_diff(got[half_person], want[half_person]) < 1, "the person keeps their colour"
        else:
            if name == "replace-image":
                expected = background.frame((w, h))[background_px]
            else:
                expected = np.array((0, 255, 0) if name == "transparent" else (40, 200, 90), np.uint8)
            assert mean_diff(shown[background_px], expected) < 2.5, "the background is replaced"


# -- vcam/live/capture.py: CameraSource(as_i420=True) --------------------------------------------------------

def i420_source(path: Path) -> CameraSource:
    settings = load_settings(None, use_user_config=False).replace("camera", source=str(path))
    return CameraSource(settings.camera, pace=False, as_i420=True)


def read_frames(source: CameraSource, n: int) -> list[np.ndarray]:
    source.open()
    try:
        frames, buffer = [], None
        for _ in range(n):
            frame = source.read(buffer)
            frames.append(frame.copy())
            buffer = frame
        again = source.read(buffer)
        assert np.shares_memory(again, buffer), "read into the buffer handed back"
        return frames
    finally:
        source.close()


def test_camera_source_reads_an_image_as_full_range_i420(desk_frames, tmp_path):
    """An (odd-sized) image file as the camera: even-sided full-range I420 frames of that picture."""
    picture = cv2.resize(desk_frames[0], (641, 361))
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), picture)
    frames = read_frames(i420_source(path), 2)
    for frame in frames:
        assert frame.shape == (540, 640) and frame.dtype == np.uint8
        assert mean_diff(i420.to_bgr(i420.limited(frame)), picture[:360, :640]) < 2.5
        assert mean_diff(i420.to_bgr(frame), picture[:360, :640]) > 4, "full range: not sendable as is"


def test_camera_source_decodes_an_mjpg_clip_to_i420(desk_frames, tmp_path):
    """An MJPG .avi (what a webcam sends) is demuxed and decoded to full-range I420 frames of the clip."""
    path = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 360))
    for bgr in desk_frames:
        writer.write(bgr)
    writer.release()
    source = i420_source(path)
    frames = read_frames(source, len(desk_frames) + 1)  # one past the end: the clip loops
    bgr_source = i420_source(path)
    bgr_source.as_i420 = False
    bgr_frames = read_frames(bgr_source, len(frames))  # the BGR route, for reference
    for i, frame in enumerate(frames):
        assert frame.shape == (540, 640) and frame.dtype == np.uint8
        # measured 37.7-39.4 dB against the pictures written (the writer's JPEG loss) ...
        assert psnr(i420.to_bgr(i420.limited(frame)), desk_frames[i % len(desk_frames)]) > 33
        # ... and 45+ dB against the same clip read as BGR and converted
        reference = i420.from_bgr(bgr_frames[i], full_range=True)
        assert psnr(frame[:360], reference[:360]) > MIN_PSNR and psnr(frame[360:], reference[360:]) > MIN_PSNR
    assert mean_diff(frames[0], frames[1]) > 1, "consecutive frames, not one repeated"
    source.open()
    try:
        assert source.raw_jpeg, "decoded by vcam.frames.mjpg, not OpenCV"
    finally:
        source.close()


def test_camera_source_converts_other_videos_to_i420(desk_video, desk_frames):
    """A non-MJPG video (OpenCV decodes it) comes out as full-range I420 too."""
    frames = read_frames(i420_source(desk_video), 1)
    assert frames[0].shape == (810, 960)
    small = cv2.resize(i420.to_bgr(i420.limited(frames[0])), (640, 360), interpolation=cv2.INTER_AREA)
    assert psnr(small, desk_frames[0]) > 40  # measured 53
