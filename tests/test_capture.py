"""Capture stage: MJPG sources demuxed by OpenCV, decoded by vcam.frames.mjpg (libjpeg-turbo's fast path).

A USB webcam's 720p/1080p arrives as MJPG; an MJPG clip made from the real desk video stands in for it
(the same container the benchmark uses), read through the real CameraSource.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import psnr, wait_until

from vcam.commands.bench import prepare_clip
from vcam.config import load_settings
from vcam.frames import mjpg
from vcam.live.capture import MAX_BAD_FRAMES, CameraError, CameraSource


def source_for(path: Path) -> CameraSource:
    settings = load_settings(None, use_user_config=False).replace("camera", source=str(path))
    return CameraSource(settings.camera, pace=False)


@pytest.fixture(scope="module")
def mjpg_clip(desk_video, tmp_path_factory) -> Path:
    return prepare_clip(desk_video, (640, 360), 12, tmp_path_factory.mktemp("clip"))


def opencv_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_mjpg_clip_is_decoded_by_vcam_like_opencv_and_loops(mjpg_clip):
    reference = opencv_frames(mjpg_clip)
    source = source_for(mjpg_clip)
    source.open()
    try:
        assert source.raw_jpeg, "an MJPG clip is demuxed only and decoded by vcam.frames.mjpg"
        buffer = None
        for i in range(len(reference) + 3):  # past the end: the file loops
            frame = source.read(buffer)
            assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
            # libjpeg-turbo's fast IDCT: not bit-exact, but far below what the eye or a call app keeps
            assert psnr(frame, reference[i % len(reference)]) > 40
            buffer = frame
        again = source.read(buffer)
        assert np.shares_memory(again, buffer), "decoded into the buffer the caller hands back"
    finally:
        source.close()
    assert not source.raw_jpeg


def test_other_videos_keep_opencv_decoding(desk_video):
    source = source_for(desk_video)
    source.open()
    try:
        assert not source.raw_jpeg
        assert source.read().shape == (540, 960, 3)
    finally:
        source.close()


def test_undecodable_frames_are_skipped_then_reported(mjpg_clip, tmp_path):
    """A damaged frame is dropped and the next one shown; a stream of them counts as a failing camera."""
    data = bytearray(mjpg_clip.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i:i + 3] == b"\xff\xd8\xff"]  # each frame's JPEG SOI
    assert len(starts) >= 12
    one_bad = tmp_path / "one_bad.avi"
    broken = bytearray(data)
    broken[starts[2]:starts[2] + 3] = b"XYZ"  # frame 2 is no JPEG any more
    one_bad.write_bytes(bytes(broken))
    reference = opencv_frames(mjpg_clip)
    source = source_for(one_bad)
    source.open()
    try:
        frames = [source.read() for _ in range(4)]
    finally:
        source.close()
    assert psnr(frames[1], reference[1]) > 40
    assert psnr(frames[2], reference[3]) > 40, "the damaged frame 2 was skipped"

    all_bad = tmp_path / "all_bad.avi"
    for s in starts:
        data[s:s + 3] = b"XYZ"
    all_bad.write_bytes(bytes(data))
    source = source_for(all_bad)
    source.open()
    try:
        with pytest.raises(CameraError, match=f"{MAX_BAD_FRAMES} MJPG frames in a row cannot be decoded"):
            source.read()
    finally:
        source.close()


def test_damaged_frames_are_refused_not_shown(mjpg_clip):
    """A frame cut short, a header claiming another size, or no JPEG at all: None (the caller keeps the
    previous picture). A camera that never ends its frames with the end marker still gets every frame."""
    frame = opencv_frames(mjpg_clip)[0]
    jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    decoder = mjpg.MjpgDecoder((640, 360))
    whole = decoder.decode(jpeg)
    assert whole is not None and psnr(whole, frame) > 35
    assert decoder.decode(np.concatenate([jpeg, np.zeros(100, np.uint8)])) is not None, "zero padding is fine"
    assert decoder.decode(jpeg[: len(jpeg) * 2 // 3]) is None, "cut short"
    assert decoder.decode(np.frombuffer(b"not a jpeg at all" * 10, np.uint8)) is None
    assert decoder.decode(np.zeros(0, np.uint8)) is None
    other = cv2.imencode(".jpg", cv2.resize(frame, (320, 180)))[1]
    assert decoder.decode(other) is None, "a size the stream does not have"
    assert mjpg.MjpgDecoder().decode(other).shape == (180, 320, 3), "any sane size when none is known"

    huge = bytearray(jpeg.tobytes())  # a damaged header claiming 60000x60000
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    assert mjpg.MjpgDecoder().decode(np.frombuffer(bytes(huge), np.uint8)) is None
    assert decoder.decode(np.frombuffer(bytes(huge), np.uint8)) is None

    no_end = jpeg[:-2]  # this camera never sends the end marker: its frames are decoded all the same
    fresh = mjpg.MjpgDecoder((640, 360))
    assert all(fresh.decode(no_end) is not None for _ in range(3))
    assert mjpg.is_jpeg_fourcc(cv2.VideoWriter_fourcc(*"MJPG"))
    assert not mjpg.is_jpeg_fourcc(cv2.VideoWriter_fourcc(*"avc1"))


def test_each_opening_of_the_camera_stamps_its_frames_with_a_new_run(mjpg_clip, tmp_path):
    """The worker resets the matte's temporal smoothing when the run changes: a reopened camera is a cut."""
    import time

    from vcam.live.capture import CaptureThread
    from vcam.live.slot import OneSlot

    camera = tmp_path / "camera.avi"
    camera.write_bytes(mjpg_clip.read_bytes())
    slot = OneSlot()
    capture = CaptureThread(source_for(camera), slot)
    capture.source.pace = True

    def next_frame(timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = slot.take(0.2)
            if item is not None:
                return item
        raise AssertionError("no frame")

    capture.start()
    try:
        first = next_frame()
        assert first.run > 0 and next_frame().run == first.run
        camera.rename(tmp_path / "unplugged.avi")  # the camera goes away ...
        wait_until(lambda: capture.state == "unavailable", 5, "the capture to see it gone")
        (tmp_path / "unplugged.avi").rename(camera)  # ... and comes back
        slot.clear()
        after = next_frame()
        assert after.run > first.run
    finally:
        capture.stop()


def test_a_wake_just_before_take_is_not_lost():
    """stop() wakes each slot; a consumer that checked its stop flag just before and only then starts to
    wait must return at once, not after its whole timeout (it then counted as a thread that did not stop)."""
    import time

    from vcam.live.slot import OneSlot

    slot = OneSlot()
    slot.wake()  # no one is waiting yet
    t0 = time.monotonic()
    assert slot.take(5.0) is None
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    assert slot.take(0.3) is None  # the wake was used up: the next take waits as usual
    assert time.monotonic() - t0 >= 0.25


def test_a_camera_clip_with_display_rotation_is_read_upright(tmp_path, portraits):
    from conftest import mp4_with_display_rotation

    clip = tmp_path / "phone.mp4"
    mp4_with_display_rotation(cv2.imread(str(portraits[0][0])), clip)
    source = source_for(clip)
    source.open()
    try:
        assert source.read().shape[:2] == (800, 600)  # stored 600 tall, shown 800 tall
    finally:
        source.close()
