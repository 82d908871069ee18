"""The video background's live path: the clip decoded on its own thread as I420 at the output size, kept
as JPEGs after its first loop, showing the same pictures at the same times as the BGR path."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from conftest import psnr, require_path

from vcam.compositing import clip as clip_module
from vcam.compositing.backgrounds import VideoBackground, cover_resize
from vcam.frames import i420, turbojpeg


def clip_frames(path, size) -> list[np.ndarray]:
    """Every frame of the clip as the BGR path scales it, then converted to I420."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(i420.from_bgr(cover_resize(frame, size)))
    cap.release()
    return frames


@pytest.mark.parametrize("size", [(1280, 720), (854, 480)], ids=["clip-size", "scaled"])
def test_i420_frames_are_the_clips_frames_at_their_time_across_loops(background_video, size):
    """A 24 fps clip behind a 30 fps camera, for three loops: each camera frame gets the clip's frame
    nearest in time, the same picture as the BGR path (within JPEG's loss once the loop is kept)."""
    reference = clip_frames(background_video, size)  # 56 frames
    bg = VideoBackground(background_video)
    try:
        worst = 99.0
        for i in range(210):  # 7 s: the clip loops three times
            shown = bg.frame_i420(size, 100.0 + i / 30)
            n = round(i * 24 / 30)
            assert shown.shape == i420.shape(size)
            worst = min(worst, psnr(shown, reference[n % len(reference)]))
        assert bg._shown == round(209 * 24 / 30)
    finally:
        bg.close()
    print(f"\nworst PSNR against the BGR path: {worst:.1f} dB")
    # the same picture (45 dB at the clip's own size): a neighbouring frame is under 20 dB away
    assert worst > 36


def test_the_loop_is_decoded_once_then_played_from_jpegs(background_video, monkeypatch):
    if turbojpeg.library() is None:
        pytest.skip("libturbojpeg is not installed: clips are decoded all along")
    decoded = []
    original = clip_module.ClipFrames._advance

    def counting(self):
        decoded.append(self.done + 1)
        original(self)

    monkeypatch.setattr(clip_module.ClipFrames, "_advance", counting)
    bg = VideoBackground(background_video)
    try:
        for i in range(240):  # 8 s at 30 fps: 192 clip frames, 3.4 loops of 56
            bg.frame_i420((640, 360), i / 30)
    finally:
        bg.close()
    assert 56 <= len(decoded) <= 60, "the file is read once round (and one frame to find its end)"


def test_a_clip_too_long_to_keep_is_decoded_all_along(background_video, monkeypatch):
    monkeypatch.setattr(clip_module, "CACHE_BYTES", 100_000)  # a few JPEGs
    size = (640, 360)
    reference = clip_frames(background_video, size)
    bg = VideoBackground(background_video)
    try:
        for i in range(150):
            shown = bg.frame_i420(size, i / 30)
            assert psnr(shown, reference[round(i * 24 / 30) % len(reference)]) > 38
    finally:
        bg.close()


def test_a_clip_faster_than_the_camera_keeps_time():
    """A 30 fps clip behind a 10 fps camera: the frames in between are skipped, not shown late."""
    clip = require_path("backgrounds", "videos", "backscrub_rotating_earth.webm")
    bg = VideoBackground(clip)
    try:
        for i in range(101):  # 10 s at 10 fps
            bg.frame_i420((320, 180), 50.0 + i / 10)
        assert bg._shown == 300
    finally:
        bg.close()


def test_a_new_output_size_shows_the_same_clip_at_once(background_video):
    bg = VideoBackground(background_video)
    try:
        for i in range(10):
            bg.frame_i420((640, 360), i / 30)
        bigger = bg.frame_i420((1280, 720), 10 / 30)
        assert bigger.shape == i420.shape((1280, 720))
        assert bg.frame_i420((1280, 720), 11 / 30).shape == i420.shape((1280, 720))
    finally:
        bg.close()


def test_the_next_frame_is_made_while_this_one_is_shown(background_video):
    """Off the frame path: once running, asking for the next clip frame does not wait for a decode."""
    bg = VideoBackground(background_video)
    try:
        waits = []
        for i in range(60):
            t = time.perf_counter()
            bg.frame_i420((1280, 720), i / 24)  # a new clip frame every call
            waits.append(time.perf_counter() - t)
            time.sleep(1 / 24)
        assert np.median(waits[5:]) < 0.001  # a copy-free hand-over, not a 2-4 ms decode
    finally:
        bg.close()


def test_close_stops_the_clip_thread(background_video):
    before = [t for t in threading.enumerate() if t.name == "vcam-clip"]
    bg = VideoBackground(background_video)
    bg.frame_i420((320, 180), 0.0)
    ours = [t for t in threading.enumerate() if t.name == "vcam-clip" and all(t is not b for b in before)]
    assert len(ours) == 1
    bg.close()
    ours[0].join(2.0)
    assert not ours[0].is_alive()
