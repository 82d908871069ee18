"""Global hotkeys under a real Xvfb, keys sent by xdotool from another process: each default hotkey
changes the live state and the next output frames show it; a raising action, a missing or vanishing X
server, invalid key strings, and no logging of other keys."""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import cv2
import pytest
from conftest import require_tool, wait_until
from control_rig import (
    KEY_SENT,
    SIZE,
    TOP_LEFT,
    as_sent,
    background_region,
    blueness,
    close_to,
    key_pixels,
    sharpness,
    toml,
)

import vcam.control.hotkeys as hotkeys_module
from vcam.cli import main
from vcam.config import ConfigError, load_settings
from vcam.control.hotkeys import HotkeyService, bindings
from vcam.live.placeholder import placeholder


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number")


def _start_xvfb(number: int | None = None) -> tuple[subprocess.Popen, str]:
    """A real X server; with no number it picks a free one itself (-displayfd)."""
    xvfb = require_tool("Xvfb")
    if number is not None:
        proc = subprocess.Popen([xvfb, f":{number}", "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        display = f":{number}"

        def listening() -> bool:
            assert proc.poll() is None, "Xvfb ended"
            return Path(f"/tmp/.X11-unix/X{number}").exists()

        wait_until(listening, 10, "Xvfb to start", step=0.05)
        return proc, display
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-nolisten", "tcp"], pass_fds=(w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    assert number, "Xvfb did not report its display"
    return proc, f":{number}"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _press(display: str, *keys: str) -> None:
    """Key presses from another process, as a user's keyboard would send them (XTEST)."""
    subprocess.run([require_tool("xdotool"), "key", "--delay", "30", *keys],
                   env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


@pytest.fixture(scope="module")
def xdisplay():
    require_tool("xdotool")
    proc, display = _start_xvfb()
    try:
        yield display
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def live(rig, xdisplay):
    """The rig's pipeline with the default hotkeys listening on the Xvfb display."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", xdisplay)
        service = HotkeyService(rig.settings.hotkeys, lambda action: rig.controller.run(action)).start()
        try:
            assert service.wait_active(10), service.state
            yield rig, service
        finally:
            service.stop()


def test_default_bindings_cover_the_actions():
    settings = load_settings(use_user_config=False)
    assert bindings(settings.hotkeys) == {
        "<ctrl>+<alt>+e": "next-effect", "<ctrl>+<alt>+w": "previous-effect",
        "<ctrl>+<alt>+b": "next-background", "<ctrl>+<alt>+v": "previous-background",
        "<ctrl>+<alt>+p": "toggle-pause", "<ctrl>+<alt>+m": "toggle-mirror",
        "<ctrl>+<alt>+]": "blur-stronger", "<ctrl>+<alt>+[": "blur-weaker",
        "<ctrl>+<alt>+s": "edge-softer", "<ctrl>+<alt>+h": "edge-harder"}
    from vcam.control.catalog import ACTIONS
    assert set(bindings(settings.hotkeys).values()) <= set(ACTIONS)
    assert bindings(settings.replace("hotkeys", enabled=False).hotkeys) == {}


@pytest.mark.parametrize("combo, complaint", [
    ("<ctl>+<alt>+b", "unknown key '<ctl>'"),
    ("ctrl+b", "'ctrl'"),
    ("<ctrl>+<alt>+", "ends with '+'"),
    ("<ctrl>+b+b", "twice"),
])
def test_invalid_key_string_is_a_config_error_naming_the_key(tmp_path, capsys, combo, complaint):
    config = tmp_path / "config.toml"
    config.write_text(toml({"hotkeys": {"next_background": combo}}))
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert str(config) in message and "[hotkeys] next_background" in message and complaint in message
    assert main(["--config", str(config), "ctl", "status"]) == 2
    assert "[hotkeys] next_background" in capsys.readouterr().err


@pytest.mark.parametrize("combo", ["<ctrl>+<alt>+e", "<alt>+<ctrl>+E"])
def test_two_actions_on_one_combination_is_a_config_error_naming_both(tmp_path, capsys, combo):
    config = tmp_path / "config.toml"
    config.write_text(toml({"hotkeys": {"toggle_pause": combo}}))  # next_effect's default combination
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert str(config) in message and "next_effect" in message and "toggle_pause" in message, message
    assert main(["--config", str(config), "ctl", "status"]) == 2
    err_text = capsys.readouterr().err
    assert "toggle_pause" in err_text and "Traceback" not in err_text
    # Unbinding the other one makes it valid.
    config.write_text(toml({"hotkeys": {"toggle_pause": combo, "next_effect": ""}}))
    assert bindings(load_settings(config).hotkeys)[combo] == "toggle-pause"


@pytest.mark.system
def test_each_default_hotkey_changes_the_next_frames(live):
    rig, service = live
    porch, aqua, retro, _ = rig.library
    display = os.environ["DISPLAY"]

    def press(keys, state_predicate, frame_predicate):
        _press(display, keys)
        rig.wait_state(state_predicate)
        return rig.shows(frame_predicate)

    rig.ok("effect", "blur")
    press("ctrl+alt+e", lambda s: s.look.effect == "replace",  # next effect
          lambda f: close_to(f[TOP_LEFT], background_region(porch)))
    press("ctrl+alt+w", lambda s: s.look.effect == "blur",  # previous effect
          lambda f: sharpness(f) < 0.5 * sharpness(rig.still))
    press("ctrl+alt+w", lambda s: s.look.effect == "none", lambda f: close_to(f, rig.still_sent, tol=0.5))

    press("ctrl+alt+b", lambda s: s.look.background is not None and "Aqua" in s.look.background.label,
          lambda f: close_to(f[TOP_LEFT], background_region(aqua)))  # next background (and its effect)
    press("ctrl+alt+v", lambda s: "porch" in s.look.background.label,  # previous background
          lambda f: close_to(f[TOP_LEFT], background_region(porch)))

    rig.ok("effect", "none")
    frame = press("ctrl+alt+m", lambda s: s.mirror,
                  lambda f: close_to(f, cv2.flip(rig.still_sent, 1), tol=0.5))
    assert blueness(frame) < blueness(rig.still) - 40  # the blue boxes moved to the other side
    press("ctrl+alt+m", lambda s: not s.mirror, lambda f: close_to(f, rig.still_sent, tol=0.5))

    press("ctrl+alt+p", lambda s: s.paused,  # privacy pause: the placeholder, camera released
          lambda f: close_to(f, as_sent(placeholder("paused", SIZE)), tol=0.5))
    assert rig.ok("status")["camera"] == "released"
    press("ctrl+alt+p", lambda s: not s.paused, lambda f: close_to(f, rig.still_sent, tol=0.5))

    rig.ok("effect", "blur")
    blur = rig.holder.get().look.blur
    before = sharpness(rig.shows(lambda f: sharpness(f) < 0.5 * sharpness(rig.still)))
    press("ctrl+alt+bracketright", lambda s: s.look.blur > blur,  # blur stronger
          lambda f: sharpness(f) < 0.9 * before)
    press("ctrl+alt+bracketleft", lambda s: s.look.blur == blur,  # blur weaker
          lambda f: sharpness(f) == pytest.approx(before, rel=0.05))

    rig.ok("effect", "transparent")
    width = (rig.holder.get().look.matte or rig.settings.matte).edge_width
    keyed = key_pixels(rig.shows(lambda f: (f[TOP_LEFT] == KEY_SENT).all()))
    softer = key_pixels(press("ctrl+alt+s", lambda s: s.look.matte.edge_width > width,  # edge softer
                              lambda f: key_pixels(f) < keyed))
    # edge harder: back to the first edge (the camera is a still: the same matte), nowhere near the softer
    # one, which differs by only about half a percent of the key pixels
    press("ctrl+alt+h", lambda s: s.look.matte.edge_width == pytest.approx(width),
          lambda f: abs(key_pixels(f) - keyed) < (keyed - softer) / 4)
    assert service.fired == 13


@pytest.mark.system
def test_other_keys_are_neither_acted_on_nor_logged(live, caplog):
    rig, service = live
    fired = service.fired
    state = rig.holder.get()
    with caplog.at_level(logging.DEBUG):
        _press(os.environ["DISPLAY"], "s", "e", "c", "r", "e", "t", "ctrl+alt+z", "alt+e", "ctrl+e", "Return")
        time.sleep(0.5)
    assert service.fired == fired and rig.holder.get() == state
    assert not [r for r in caplog.records if r.name.startswith(("vcam.control.hotkeys", "pynput"))]


@pytest.mark.system
def test_a_raising_action_is_logged_and_the_listener_keeps_running(xdisplay, monkeypatch, caplog):
    monkeypatch.setenv("DISPLAY", xdisplay)
    calls = []

    def dispatch(action):
        calls.append(action)
        if len(calls) == 1:
            raise RuntimeError("the action broke")

    service = HotkeyService(load_settings(use_user_config=False).hotkeys, dispatch).start()
    try:
        assert service.wait_active(10), service.state
        with caplog.at_level(logging.WARNING, logger="vcam.control.hotkeys"):
            _press(xdisplay, "ctrl+alt+e")
            wait_until(lambda: calls, 5, "the first key's action")
            _press(xdisplay, "ctrl+alt+b")
            wait_until(lambda: len(calls) >= 2, 5, "the second key's action")
        assert calls == ["next-effect", "next-background"]
        assert "hotkey action next-effect failed: the action broke" in caplog.text
        assert service.state.startswith("active")
    finally:
        service.stop()


@pytest.mark.system
def test_no_display_then_display_appears_then_vanishes(monkeypatch, caplog):
    require_tool("xdotool")
    monkeypatch.setattr(hotkeys_module, "RETRY_S", 0.3)
    number = _free_display()
    display = f":{number}"
    monkeypatch.setenv("DISPLAY", display)
    calls = []
    with caplog.at_level(logging.INFO, logger="vcam.control.hotkeys"):
        service = HotkeyService(load_settings(use_user_config=False).hotkeys, calls.append).start()
        proc = None
        try:
            time.sleep(1.2)  # four retries without a server
            assert service.state.startswith("disabled: cannot open X display")
            disabled_lines = [r for r in caplog.records if "disabled" in r.getMessage()]
            assert len(disabled_lines) == 1  # one clear line, not one per retry
            assert "vcam ctl" in disabled_lines[0].getMessage()

            proc, _ = _start_xvfb(number)  # the session starts: hotkeys come up by themselves
            assert service.wait_active(10), service.state
            _press(display, "ctrl+alt+p")
            wait_until(lambda: calls, 5, "the key's action")
            assert calls == ["toggle-pause"]

            _stop(proc)  # the X server goes away ...
            wait_until(lambda: not service.state.startswith("active"), 5, "the listener to notice")
            proc, _ = _start_xvfb(number)  # ... and comes back: the listener is recreated
            assert service.wait_active(10), service.state
            _press(display, "ctrl+alt+m")
            wait_until(lambda: len(calls) >= 2, 10, "the key's action on the new listener")
            assert calls == ["toggle-pause", "toggle-mirror"]
            assert "lost the X display" in caplog.text
        finally:
            service.stop()
            if proc is not None:
                _stop(proc)


def test_unset_display_disables_hotkeys_with_one_line(monkeypatch, caplog, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no systemctl either: no session to ask for its DISPLAY
    monkeypatch.setattr(hotkeys_module, "RETRY_S", 0.1)
    with caplog.at_level(logging.INFO, logger="vcam.control.hotkeys"):
        service = HotkeyService(load_settings(use_user_config=False).hotkeys, lambda a: None).start()
        time.sleep(0.5)
        service.stop()
    assert service.state.startswith("disabled: no X display")
    assert len([r for r in caplog.records if "disabled" in r.getMessage()]) == 1


@pytest.mark.system
def test_changed_hotkeys_rebuild_the_listener(xdisplay, monkeypatch):
    """What a config reload does: the new combination works at once, the old one no longer does."""
    monkeypatch.setenv("DISPLAY", xdisplay)
    settings = load_settings(use_user_config=False)
    calls = []
    service = HotkeyService(settings.hotkeys, calls.append).start()
    try:
        assert service.wait_active(10), service.state
        service.update(settings.replace("hotkeys", next_effect="<ctrl>+<shift>+<f9>").hotkeys)
        wait_until(lambda: "<ctrl>+<shift>+<f9> next-effect" in service.state, 10,
                   lambda: f"the new combination; state {service.state}")
        assert service.state.startswith("active")
        _press(xdisplay, "ctrl+alt+e", "ctrl+shift+F9")
        wait_until(lambda: calls, 10, "the new combination's action")
        time.sleep(0.3)
        assert calls == ["next-effect"] and service.fired == 1
        service.update(settings.replace("hotkeys", enabled=False).hotkeys)
        wait_until(lambda: service.state.startswith("off"), 10, lambda: f"off; state {service.state}")
        _press(xdisplay, "ctrl+shift+F9")
        time.sleep(0.3)
        assert service.fired == 1
    finally:
        service.stop()
