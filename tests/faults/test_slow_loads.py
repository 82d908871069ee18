"""Background loads that are slow or never end: they have a deadline, never block colours, other switches,
the privacy pause or shutdown, and a switch whose caller gave up is never applied later.

The slow load is the real loader running a load_background that sleeps (the file side, FIFOs and devices,
is tests/faults/test_background_files.py; a file that really blocks is in test_daemon_faults.py).
"""
from __future__ import annotations

import threading
import time

import pytest
from conftest import require_path, wait_until

import vcam.control.actions as actions
import vcam.control.library as library_module
import vcam.control.loader as loader_module
from vcam.compositing.backgrounds import BackgroundError, ColorBackground
from vcam.compositing.look import Look
from vcam.config import load_settings
from vcam.control.actions import ActionError, Controller
from vcam.control.library import BackgroundLibrary
from vcam.live.state import LiveState, LiveStateHolder

SIZE = (320, 180)


@pytest.fixture
def images():
    return require_path("backgrounds", "images")


class SlowFiles:
    """load_background, but files whose name starts with "slow" take `delay` s (or until released)."""

    def __init__(self, monkeypatch, delay: float) -> None:
        self.delay = delay
        self.release = threading.Event()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.opened: list = []
        real = library_module.load_background

        def load(spec: str):
            name = spec.rsplit("/", 1)[-1]
            if name.startswith("slow"):
                self.started.append(name)
                self.release.wait(self.delay)
                self.finished.append(name)
            bg = real(spec)
            self.opened.append(bg)
            return bg

        monkeypatch.setattr(library_module, "load_background", load)

    def finish(self, closing: Controller | BackgroundLibrary) -> None:
        """Release the slow loads, close `closing` and wait until its loader threads have ended. A loader
        thread still in OpenCV (a decode, a prewarm) when pytest's interpreter shuts down aborts the whole
        run: std::terminate at exit (docs/control.md, Signals)."""
        self.release.set()
        closing.close()
        wait_until(lambda: not any(t.name.startswith("vcam-bg-loader") for t in threading.enumerate()), 10,
                   "the loaders to end")


def _copies(images, tmp_path, names: list[str]) -> list:
    src = (images / "mate_nature_Aqua.jpg").read_bytes()
    paths = []
    for name in names:
        (tmp_path / name).write_bytes(src)
        paths.append(tmp_path / name)
    return paths


def _controller(paths) -> tuple[Controller, LiveStateHolder]:
    holder = LiveStateHolder(LiveState(look=Look(effect="blur")))
    settings = load_settings(use_user_config=False).replace("backgrounds", paths=[str(p) for p in paths])
    return Controller(None, holder, settings), holder


def test_a_stuck_load_is_abandoned_at_its_deadline_and_the_next_runs_on_a_fresh_worker(
        images, tmp_path, monkeypatch):
    monkeypatch.setattr(loader_module, "LOAD_DEADLINE_S", 0.5)
    slow = SlowFiles(monkeypatch, delay=30)
    stuck, good = _copies(images, tmp_path, ["slow.jpg", "good.jpg"])
    library = BackgroundLibrary([str(stuck), str(good)], lambda: SIZE)
    shown = []
    try:
        t0 = time.monotonic()
        first = library.select("1", shown.append)
        second = library.select("2", shown.append)  # queued behind the stuck one
        with pytest.raises(BackgroundError, match="still loading after 0.5 s"):
            first.result(5)
        assert time.monotonic() - t0 < 2
        assert second.result(5).index == 1  # ran on a fresh worker while the first is still stuck
        assert slow.finished == [] and [s.index for s in shown] == [1]
        t0 = time.monotonic()
        library.close()  # never joins the stuck worker
        assert time.monotonic() - t0 < 0.2
        slow.release.set()
        wait_until(lambda: slow.finished, 5, "the abandoned load to finish")
        time.sleep(0.3)
        # The abandoned load finished late: its result was discarded (closed), never shown.
        assert [s.index for s in shown] == [1] and library.position == 1
    finally:
        slow.finish(library)


def test_pause_takes_effect_at_once_behind_two_slow_switches(images, tmp_path, monkeypatch):
    """The committed traceback: `vcam ctl pause` timed out behind queued background loads."""
    slow = SlowFiles(monkeypatch, delay=3)
    paths = _copies(images, tmp_path, ["slow1.jpg", "slow2.jpg"])
    ctl, holder = _controller(paths)
    try:
        presses = [threading.Thread(target=ctl.run, args=("next-background",)) for _ in range(2)]
        for press in presses:
            press.start()
            time.sleep(0.1)
        assert slow.started  # a load is under way and another queued
        t0 = time.monotonic()
        assert ctl.run("pause")["paused"] is True
        assert holder.get().paused and time.monotonic() - t0 < 1.0
        assert ctl.run("toggle-pause")["paused"] is False and time.monotonic() - t0 < 1.0
        assert ctl.run("status")["paused"] is False
        # Other actions don't wait for the loads either (the lock is not held while loading).
        t0 = time.monotonic()
        ctl.run("blur-stronger")
        assert time.monotonic() - t0 < 1.0
        slow.release.set()
        for press in presses:
            press.join(10)
    finally:
        slow.finish(ctl)


def test_a_switch_whose_caller_gave_up_is_never_applied(images, tmp_path, monkeypatch):
    monkeypatch.setattr(actions, "LOAD_TIMEOUT_S", 0.5)
    slow = SlowFiles(monkeypatch, delay=1.5)
    paths = _copies(images, tmp_path, ["slow.jpg"])
    ctl, holder = _controller(paths)
    try:
        with pytest.raises(ActionError, match="still loading"):
            ctl.run("effect", ["replace"])  # loads the library's first entry: slow
        with pytest.raises(ActionError, match="still loading"):
            ctl.run("next-background")
        time.sleep(2.5)  # the loads complete meanwhile
        state = holder.get()
        assert state.look.effect == "blur" and state.look.background is None, state.look
        assert ctl.library.position is None
    finally:
        slow.finish(ctl)


def test_colours_are_shown_at_once_over_a_stuck_load_and_win(images, tmp_path, monkeypatch):
    slow = SlowFiles(monkeypatch, delay=2)
    paths = _copies(images, tmp_path, ["slow.jpg"])
    ctl, holder = _controller(paths)
    try:
        pending = threading.Thread(target=ctl.run, args=("background", [str(paths[0])]))
        pending.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        assert ctl.run("background", ["#ff0000"])["background"] == "#ff0000"
        assert time.monotonic() - t0 < 0.5
        pending.join(10)
        time.sleep(0.2)
        bg = holder.get().look.background
        assert isinstance(bg, ColorBackground) and bg.label == "#ff0000"  # the later choice stays
    finally:
        slow.finish(ctl)


def test_close_returns_at_once_with_a_load_in_progress(images, tmp_path, monkeypatch):
    slow = SlowFiles(monkeypatch, delay=30)
    ctl, _ = _controller(_copies(images, tmp_path, ["slow.jpg"]))
    try:
        threading.Thread(target=lambda: pytest.raises(ActionError, ctl.run, "next-background"),
                         daemon=True).start()
        time.sleep(0.3)
        assert slow.started
        t0 = time.monotonic()
        ctl.close()
        assert time.monotonic() - t0 < 0.2
        with pytest.raises(ActionError, match="stopping"):
            ctl.run("next-background")
    finally:
        slow.finish(ctl)
