"""Key presses run their actions off the listener's thread, and a pause never waits behind a slow one."""
from __future__ import annotations

import logging
import threading

from conftest import wait_until

from vcam.control.key_actions import KeyActions


def test_a_pause_pressed_behind_a_slow_switch_runs_at_once():
    release, ran = threading.Event(), []
    paused = threading.Event()

    def dispatch(action: str) -> None:
        if action == "next-background":
            release.wait(10)  # a background load waiting out its deadline
        ran.append(action)
        if action == "toggle-pause":
            paused.set()

    keys = KeyActions(dispatch, logging.getLogger("test"), "hotkey")
    try:
        keys.submit("next-background")
        keys.submit("next-effect")
        keys.submit("toggle-pause")
        assert paused.wait(2), "the pause waited behind the switch"
        assert ran == ["toggle-pause"]  # the switch and the effect after it still wait, in order
        release.set()
        wait_until(lambda: len(ran) == 3, 5, lambda: f"the switch and the effect to run; ran {ran}")
        assert ran == ["toggle-pause", "next-background", "next-effect"]
    finally:
        release.set()
        keys.stop()


def test_a_failing_action_is_logged_and_the_keys_go_on(caplog):
    done = threading.Event()

    def dispatch(action: str) -> None:
        if action == "bad":
            raise RuntimeError("boom")
        done.set()

    keys = KeyActions(dispatch, logging.getLogger("test.keys"), "hotkey")
    try:
        with caplog.at_level(logging.WARNING, logger="test.keys"):
            keys.submit("bad")
            keys.submit("next-effect")
            assert done.wait(2)
        assert any("hotkey bad failed: boom" in r.getMessage() for r in caplog.records)
    finally:
        keys.stop()
