"""live/pipeline.py's Pipeline, the API the control paths build on, in-process: pause, mirror, reconfigure,
the file sink.

Real parts throughout: a real portrait (a still image is a looped camera source, so frames are
deterministic), the real model, the real mp4 writer and decoder.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import holds_open, wait_until

from vcam.compositing.look import look_from_settings
from vcam.config import load_settings
from vcam.errors import VcamError
from vcam.live.capture import CameraSource, CaptureThread
from vcam.live.pipeline import Pipeline
from vcam.live.slot import OneSlot
from vcam.live.state import LiveState, LiveStateHolder


def make_settings(tmp_path: Path, source: Path, **output):
    s = load_settings(use_user_config=False)
    s = s.replace("camera", source=str(source), fps=30)
    s = s.replace("output", **{"sink": "null", "width": 0, "height": 0, "fps": 30,
                               "file": str(tmp_path / "o.mp4"), **output})
    s = s.replace("effect", name="replace", background="#ff00ff")
    return s.replace("daemon", on_demand=False, idle_fps=5)


def copied_camera(tmp_path: Path, desk_video: Path):
    """A private copy of the desk video as the camera (so a test can watch who holds it open), 320x180
    settings on it, and a holder with their look."""
    source = tmp_path / "cam.mp4"
    shutil.copyfile(desk_video, source)
    s = make_settings(tmp_path, source, width=320, height=180)
    return source, s, LiveStateHolder(LiveState(look=look_from_settings(s)))


def test_pause_releases_the_camera_and_keeps_sending(tmp_path, desk_video):
    source, s, holder = copied_camera(tmp_path, desk_video)
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.status()["camera"] == "ok" and p.frames_sent > 10, 10, "live frames")
        assert holds_open(os.getpid(), source)
        holder.update(lambda st: st.with_changes(paused=True))
        wait_until(lambda: p.status()["camera"] == "released" and not holds_open(os.getpid(), source), 1.5,
                 "release")
        n0 = p.frames_sent
        time.sleep(1.0)
        sent = p.frames_sent - n0
        assert 3 <= sent <= 8, f"{sent} placeholder frames in 1 s at idle_fps 5"
        st = p.status()
        assert st["paused"] is True and st["camera"] == "released"
        holder.update(lambda st: st.with_changes(paused=False))
        wait_until(lambda: p.status()["camera"] == "ok" and holds_open(os.getpid(), source), 2, "camera back")
        n1 = p.frames_sent
        time.sleep(1.0)
        assert p.frames_sent - n1 >= 18  # live rate again
        st = p.status()
        assert st["latency_ms_p50"] is not None and st["latency_ms_p95"] >= st["latency_ms_p50"]
        assert st["effect"] == "replace" and st["background"] == "#ff00ff" and st["on_demand"] == "off"
    assert not holds_open(os.getpid(), source)
    p.stop()  # idempotent


def test_reconfigure_restarts_only_what_changed_and_keeps_old_on_failure(tmp_path, desk_video):
    source, s, holder = copied_camera(tmp_path, desk_video)
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_sent > 5, 10, "frames")
        # [output] changed: new size, same camera (still open, never released).
        p.reconfigure(s.replace("output", width=640, height=360))
        assert p.status()["size"] == [640, 360] and p.settings.output.width == 640
        wait_until(lambda: p.stats.ms["composite"] and p.compositor._compositor._frame_size == (640, 360), 3,
                 "new size")
        # A bad [camera] is refused; the old camera keeps running.
        bad = p.settings.replace("camera", source=str(tmp_path / "missing.mp4"))
        with pytest.raises(VcamError, match="missing.mp4"):
            p.reconfigure(bad)
        assert p.settings.camera.source == str(source)
        n0 = p.frames_sent
        wait_until(lambda: p.status()["camera"] == "ok" and p.frames_sent > n0 + 10, 3, "old camera running")
        # [matte] is live state: reconfigure leaves it to the caller (reload swaps it in together with
        # the effect, tests/test_reload.py), so no frame gets half of a change.
        before = holder.get()
        p.reconfigure(p.settings.replace("matte", threshold=0.7))
        assert p.settings.matte.threshold == 0.7 and holder.get() is before


def test_pause_releases_the_camera_while_the_output_is_stuck_in_a_send(tmp_path, desk_video):
    """The camera gate, not the output thread, lets the camera go: a pause must not wait for a slow send."""
    from vcam.live import sinks

    entered, slow = threading.Event(), threading.Event()

    class SlowSink(sinks.NullSink):
        def send(self, frame):
            if slow.is_set():
                entered.set()
                time.sleep(1.5)

    source, s, holder = copied_camera(tmp_path, desk_video)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sinks.SINKS, "null", SlowSink)
        with Pipeline(s, holder) as p:
            wait_until(lambda: p.status()["camera"] == "ok" and p.frames_sent > 5, 10, "live frames")
            slow.set()
            assert entered.wait(2), "the output thread never sent"
            t0 = time.monotonic()
            holder.update(lambda st: st.with_changes(paused=True))
            wait_until(lambda: not holds_open(os.getpid(), source), 1.0,
                       "the camera released during the send")
            assert time.monotonic() - t0 < 1.0 and p.status()["camera"] == "released"
            slow.clear()
            n0 = p.frames_sent
            wait_until(lambda: p.frames_sent > n0 + 1, 3, "the slow send over, placeholders going out")
            assert p.status()["paused"] is True


def test_file_sink_mirror_and_effect(tmp_path, portraits):
    image, _mask = portraits[0]
    s = make_settings(tmp_path, image, sink="file")
    holder = LiveStateHolder(LiveState(look=look_from_settings(s), mirror=False))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_sent >= 20, 10, "plain frames")
        holder.update(lambda st: st.with_changes(mirror=True))
        n0 = p.frames_sent
        wait_until(lambda: p.frames_sent >= n0 + 20, 5, "mirrored frames")
        assert not (tmp_path / "o.mp4").exists()  # written to a temporary file until closed
    frames = _decode_all(tmp_path / "o.mp4")
    src = cv2.imread(str(image))
    assert len(frames) >= 35 and frames[0].shape == src.shape  # output size 0 = the camera's
    plain, mirrored = frames[15].astype(int), frames[-1].astype(int)
    # The effect: the portrait's top corners (background) are magenta.
    for corner in (plain[:20, :20], plain[:20, -20:]):
        assert np.abs(corner.reshape(-1, 3).mean(0) - [255, 0, 255]).max() < 20
    # The mirror: the last frames are the first ones flipped left-right.
    assert np.abs(mirrored - plain[:, ::-1]).mean() < 4
    assert np.abs(mirrored - plain).mean() > 4 * np.abs(mirrored - plain[:, ::-1]).mean()


def test_a_failing_frame_never_stops_the_pipeline(tmp_path, desk_video, caplog):
    s = make_settings(tmp_path, desk_video, width=320, height=180)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    good = holder.get().look
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_processed > 5, 10, "frames")
        holder.update(lambda st: st.with_changes(look=good.with_changes(effect="no-such-effect")))

        def failed() -> int:
            return sum("frame failed" in r.getMessage() for r in caplog.records)

        # two failures: a frame with the good look still in the compositor then has been composited
        wait_until(lambda: failed() >= 2, 5, "frames with the broken look to fail")
        n0, k0 = p.frames_sent, p.frames_processed
        # a stage logs its first five failures: three more frames failing, and frames still sent
        wait_until(lambda: failed() >= 5 and p.frames_sent > n0 + 3, 5,
                   lambda: f"more failures and sends; {failed()} failed, {p.frames_sent - n0} sent")
        assert p.frames_processed == k0  # every frame fails before it is composited...
        holder.update(lambda st: st.with_changes(look=good))
        wait_until(lambda: p.frames_processed > k0 + 10, 3, "recovery")
        assert p.status()["camera"] == "ok"


def _decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_a_mirror_only_reload_does_not_reopen_the_output(tmp_path, portraits):
    """[output] mirror is live state: reopening the output for it would restart a file sink's recording
    (and break readers of a virtual camera on old v4l2loopback)."""
    image, _mask = portraits[0]
    s = make_settings(tmp_path, image, sink="file")
    holder = LiveStateHolder(LiveState(look=look_from_settings(s), mirror=False))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_sent >= 20, 10, "plain frames")
        sink = p.output.sink
        mirrored = s.replace("output", mirror=True)
        p.reconfigure(mirrored)  # what a reload does; the reload applies mirror to the holder
        holder.update(lambda st: st.with_changes(mirror=True))
        assert p.output.sink is sink and p.settings.output.mirror is True
        n0 = p.frames_sent
        wait_until(lambda: p.frames_sent >= n0 + 20, 5, "mirrored frames")
        n_total = p.frames_sent
    frames = _decode_all(tmp_path / "o.mp4")
    # one recording
    assert len(frames) >= n_total - 2, f"{len(frames)} frames in the recording, {n_total} sent"
    first, last = frames[5].astype(int), frames[-1].astype(int)
    assert np.abs(last - first[:, ::-1]).mean() < 4  # and the mirror did apply


def test_a_failed_reload_applies_nothing(tmp_path, desk_video):
    """A reload changing [segmentation] and an [output] that cannot be opened: the new engine must not go
    live (nor anything else of that reload); the old output keeps the frames coming."""
    s = make_settings(tmp_path, desk_video, width=320, height=180)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_processed > 5, 10, "frames")
        engine, sink = p.segmenter.engine, p.output.sink
        bad = s.replace("segmentation", interval=2).replace(
            "output", sink="virtualcam", device=str(tmp_path / "no-such-video10"))
        with pytest.raises(VcamError, match="no-such-video10"):
            p.reconfigure(bad)
        assert p.settings is s and p.segmenter.pending_engine is None
        k0, n0 = p.frames_processed, p.frames_sent
        wait_until(lambda: p.frames_processed > k0 + 5 and p.frames_sent > n0 + 5, 3,
                 "frames after the refusal")
        assert p.segmenter.engine is engine  # the old engine, not the refused reload's
        assert (p.output.sink is not None and p.output.sink.settings.sink == "null"
                and p.output.sink is not sink)
        # A refused [camera] after an accepted [output] change in the same reload: the output goes back too.
        bad = s.replace("output", width=640, height=360).replace("camera", source=str(tmp_path / "gone.mp4"))
        with pytest.raises(VcamError, match="gone.mp4"):
            p.reconfigure(bad)
        assert p.status()["size"] == [320, 180] and p.settings is s


class _SlowCamera(CameraSource):
    """The real desk-video source, but read() blocks like a V4L2 read waiting out its timeout, and it
    notes whether anyone closed it while a read was in progress."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.slow = threading.Event()
        self.in_slow_read = threading.Event()
        self.reading = False
        self.closed_while_reading = False

    def read(self, buffer=None):
        self.reading = True
        try:
            if self.slow.is_set():
                self.in_slow_read.set()
                time.sleep(2.0)
            return super().read(buffer)
        finally:
            self.reading = False

    def close(self) -> None:
        if self.reading:
            self.closed_while_reading = True
        super().close()


def test_capture_stop_never_closes_under_a_read_and_a_stopped_thread_publishes_nothing(desk_video):
    s = load_settings(use_user_config=False).replace("camera", source=str(desk_video))
    source = _SlowCamera(s.camera)
    slot = OneSlot()
    capture = CaptureThread(source, slot)
    capture.start()
    wait_until(lambda: slot.take(0.1) is not None, 10, "frames")
    source.slow.set()
    wait_until(source.in_slow_read.is_set, 2, "a slow read in progress")
    closed = capture.stop(timeout=0.1)
    assert source.reading  # stop() returned while the 2 s read goes on: shutdown never waits it out
    assert not closed and not source.closed_while_reading
    slot.clear()
    wait_until(lambda: not source.reading, 5, "the read to return")
    wait_until(lambda: not source.is_open, 2, "the thread's way out: it closes its source last")
    assert slot.take(0) is None  # nothing published after stop() (nothing else takes from this slot)
    assert not source.reading and not source.is_open  # the thread closed its own source on the way out
    assert not source.closed_while_reading


def test_segmentation_reloads_while_paused_leave_no_engine_open(tmp_path, desk_video):
    """Two [segmentation] reloads before the worker could swap either in: the first one's engine is
    closed, not leaked (the worker swaps engines only between frames, and there are none while paused)."""
    s = make_settings(tmp_path, desk_video, width=320, height=180)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_processed > 3, 10, "frames")
        holder.update(lambda st: st.with_changes(paused=True))
        wait_until(lambda: p.status()["camera"] == "released", 2, "pause")
        p.reconfigure(p.settings.replace("segmentation", model="landscape"))
        first = p.segmenter.pending_engine
        p.reconfigure(p.settings.replace("segmentation", model="general", interval=2))
        second = p.segmenter.pending_engine
        assert first is not second and first.segmenter._interp is None, "the unused engine was closed"
        holder.update(lambda st: st.with_changes(paused=False))
        wait_until(lambda: p.segmenter.engine is second, 3, "the latest engine swapped in")
        k0 = p.frames_processed
        wait_until(lambda: p.frames_processed > k0 + 5, 3, "frames with the new engine")


def test_a_failing_engine_close_on_reload_does_not_stop_segmentation(tmp_path, desk_video, caplog):
    """MediaPipe's close() may raise; swapping in a reloaded engine must go on regardless (the segmenter
    thread died there once, leaving the placeholder on screen while the watchdog was still fed)."""
    s = make_settings(tmp_path, desk_video, width=320, height=180)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_processed > 3, 10, "frames")
        old = p.segmenter.engine
        real_close = old.close

        def failing_close():
            real_close()
            raise RuntimeError("failed to close (as MediaPipe may raise)")

        old.close = failing_close
        p.reconfigure(p.settings.replace("segmentation", model="landscape"))
        wait_until(lambda: p.segmenter.engine is not old, 3, "the new engine swapped in")
        k0 = p.frames_processed
        wait_until(lambda: p.frames_processed > k0 + 10, 3, "frames with the new engine")
        assert p.dead_threads() == [] and p.status()["dead_threads"] == []
        assert "closing the previous segmentation engine failed" in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_pipeline_thread_that_ends_is_reported(tmp_path, desk_video):
    """The last guard behind the loops' own error handling: a stage thread that ended is in status(), and
    the daemon then stops its watchdog pings (commands/run.py). Here the compositor's hand-over breaks."""
    s = make_settings(tmp_path, desk_video, width=320, height=180)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    with Pipeline(s, holder) as p:
        wait_until(lambda: p.frames_processed > 3, 10, "frames")
        assert p.dead_threads() == []

        def broken_take(*args, **kwargs):
            raise SystemExit  # ends the thread that calls it, quietly

        p.matte_slot.take = broken_take
        wait_until(lambda: p.dead_threads() == ["vcam-compositor"], 2, "the compositor reported as ended")
        p.capture.source.read = broken_take  # the capture thread's read breaks the same way
        wait_until(lambda: p.dead_threads() == ["vcam-compositor", "vcam-capture"], 2, "the capture reported")
        assert p.status()["dead_threads"] == ["vcam-compositor", "vcam-capture"]
        from vcam.commands.run import status_line

        assert status_line(p.status()).endswith("ended: vcam-compositor vcam-capture")  # in systemctl status
    assert p.dead_threads() == []  # a stopped pipeline has no running threads to report


def test_restarting_threads_on_purpose_is_not_reported_as_ended(tmp_path, desk_video):
    """Camera reopens (a [camera] reload), pause and resume stop and start threads on purpose: none of it
    may look like an ended stage, or the daemon would stop its watchdog pings and systemd kill a healthy
    vcam."""
    source, s, holder = copied_camera(tmp_path, desk_video)
    seen: list[list[str]] = []
    done = threading.Event()

    with Pipeline(s, holder) as p:
        def poll():
            while not done.is_set():
                dead = p.dead_threads()
                if dead:
                    seen.append(dead)
                time.sleep(0.002)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        wait_until(lambda: p.frames_sent > 5, 10, "frames")
        other = tmp_path / "other.mp4"
        shutil.copyfile(desk_video, other)
        for path in (other, source, other):
            p.reconfigure(p.settings.replace("camera", source=str(path)))
            k0 = p.frames_processed
            wait_until(lambda k0=k0: p.frames_processed > k0 + 3, 5, "frames from the reopened camera")
        holder.update(lambda st: st.with_changes(paused=True))
        wait_until(lambda: p.status()["camera"] == "released", 2, "pause")
        holder.update(lambda st: st.with_changes(paused=False))
        k0 = p.frames_processed
        wait_until(lambda: p.frames_processed > k0 + 3, 5, "frames after the pause")
        done.set()
        poller.join()
    assert seen == []


def test_an_output_size_vcam_cannot_process_is_refused_with_the_camera_size(tmp_path, desk_video):
    """[output] height alone set (width 0 = the camera's 960): 960x20 is beyond 16:1. It failed on every
    frame, with only the placeholder sent; now start() and a reload refuse it in one line, and a reload keeps
    the old."""
    s = make_settings(tmp_path, desk_video, width=0, height=20)
    holder = LiveStateHolder(LiveState(look=look_from_settings(s)))
    with pytest.raises(VcamError, match=r"\[output\] width and height: 960x20 .*16:1.*960x540"):
        Pipeline(s, holder).start()
    good = make_settings(tmp_path, desk_video, width=320, height=180)
    with Pipeline(good, holder) as p:
        wait_until(lambda: p.frames_processed > 3, 10, "frames")
        with pytest.raises(VcamError, match=r"960x20"):
            p.reconfigure(good.replace("output", width=0, height=20))
        assert p.status()["size"] == [320, 180]
        k0 = p.frames_processed
        wait_until(lambda: p.frames_processed > k0 + 3, 3, "frames at the old size")
