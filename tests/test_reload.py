"""Config hot reload: a valid config is applied without restarting the stream (saved file, `vcam ctl
reload`, SIGHUP), an invalid one is rejected with the error logged and the old one kept; and the real
`vcam run` daemon end to end (its control socket, SIGHUP, a corrupt library file, no X display)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import require_path, start_logged_daemon, unwritable_folder, wait_until
from control_rig import BLUE_BOXES, KEY_SENT, TOP_LEFT, RecordingSink, Rig, as_sent, close_to, toml

from vcam.control.client import request
from vcam.control.reload import ConfigWatcher, SighupReload
from vcam.control.signals import SignalInbox
from vcam.live import sinks as output


@pytest.fixture
def rig(tmp_path, desk_video):
    images = require_path("backgrounds", "images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(output.SINKS, "null", RecordingSink)
        r = Rig(tmp_path, desk_video, [images / "pixabay_porch-691330_1280.jpg"]).start()
        try:
            yield r
        finally:
            r.stop()


def _grey(frame: np.ndarray) -> bool:
    """The blue boxes turned grey. Their border pixels are left out: frames are sent as I420, whose colour
    has half the resolution of its brightness, so the person's edge just outside the region may tint them."""
    region = frame[BLUE_BOXES][2:-2, 2:-2].astype(int)
    return int(np.abs(region[..., 0] - region[..., 2]).max()) <= 2


def test_saved_config_is_applied_live_and_an_invalid_one_is_kept_out(rig, caplog):
    watcher = ConfigWatcher(rig.controller).start()
    try:
        frames_before = rig.pipeline.frames_sent
        threshold = rig.settings.matte.threshold
        states = []
        rig.holder.subscribe(states.append)
        rig.write_config(effect={"name": "desaturate"}, matte={"edge_width": 0.5})
        state = rig.wait_state(lambda s: s.look.effect == "desaturate")
        assert state.look.matte.edge_width == 0.5
        # one swap: never the new matte with the old effect
        assert not [s for s in states if s.look.matte.edge_width == 0.5 and s.look.effect != "desaturate"]
        rig.shows(_grey)

        # Invalid: logged with the key and the file, nothing changes, frames go on.
        with caplog.at_level(logging.ERROR, logger="vcam.control.reload"):
            rig.write_config(effect={"name": "transparent"}, matte={"threshold": 7})
            wait_until(lambda: "rejected" in caplog.text, 5, "the rejection logged")
        assert "[matte] threshold" in caplog.text and str(rig.config) in caplog.text
        assert rig.holder.get().look.effect == "desaturate"
        assert rig.controller.settings.matte.threshold == threshold
        t = time.perf_counter()
        assert _grey(rig.frame_after(t))

        # A TOML syntax error is rejected the same way (ctl reload gets the reason).
        rig.config.write_text("[effect\nname = ")
        reply = rig.ctl("reload")
        assert not reply["ok"] and "invalid TOML" in reply["error"] and "kept" in reply["error"]
        assert rig.pipeline.frames_sent > frames_before  # the stream never stopped
    finally:
        t0 = time.perf_counter()
        watcher.stop()
        # The watcher wakes at once instead of at its old half-second poll (SIGTERM must exit within 1 s)
        assert time.perf_counter() - t0 < 0.25 and not watcher._thread.is_alive()


def test_ctl_reload_and_sighup_apply_changed_sections_only(rig, tmp_path):
    rig.ok("effect", "none")
    rig.ok("blur-stronger")
    live_blur = rig.holder.get().look.blur
    # Only [output] mirror changed: the live effect and blur stay as the user set them.
    rig.write_config(output={"mirror": True})
    assert rig.ok("reload")["mirror"] is True
    assert rig.holder.get().look.effect == "none" and rig.holder.get().look.blur == live_blur
    rig.shows(lambda f: close_to(f, cv2.flip(rig.still_sent, 1), tol=0.5))

    # A camera change reopens just the camera: the next frames come from the new source.
    flipped = tmp_path / "flipped.png"
    cv2.imwrite(str(flipped), cv2.flip(rig.still, 0))
    rig.write_config(camera={"source": str(flipped)}, output={"mirror": False})
    assert rig.ok("reload")["mirror"] is False
    rig.shows(lambda f: close_to(f, as_sent(cv2.flip(rig.still, 0)), tol=0.5))

    # SIGHUP does the same as `vcam ctl reload`, run by the main loop's wait for signals.
    previous = signal.getsignal(signal.SIGHUP)
    signals = SignalInbox()
    sighup = SighupReload(rig.controller, signals)
    try:
        rig.write_config(effect={"name": "transparent"})
        os.kill(os.getpid(), signal.SIGHUP)
        assert signals.wait(5)
        rig.wait_state(lambda s: s.look.effect == "transparent")
        rig.shows(lambda f: (f[TOP_LEFT] == KEY_SENT).all())
    finally:
        sighup.stop()
        signals.close()
    assert signal.getsignal(signal.SIGHUP) is previous

    # A camera that cannot be opened: refused, the old camera keeps streaming.
    rig.write_config(camera={"source": str(tmp_path / "missing.png")})
    reply = rig.ctl("reload")
    assert not reply["ok"] and "missing.png" in reply["error"]
    t = time.perf_counter()
    assert rig.frame_after(t, settle=0.3) is not None
    assert rig.ok("status")["camera"] == "ok"


@pytest.mark.system
def test_vcam_run_daemon_end_to_end(tmp_path, desk_video):
    """The real `vcam run`: socket up, ctl works, SIGHUP and ctl reload, corrupt library file, no display."""
    images = require_path("backgrounds", "images")
    corrupt = tmp_path / "0_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 broken")
    config = tmp_path / "config.toml"
    sock = tmp_path / "ctl.sock"
    sections = {
        "camera": {"source": str(desk_video)},
        "output": {"sink": "null", "width": 480, "height": 270},
        "daemon": {"on_demand": False},
        "backgrounds": {"paths": [str(corrupt), str(images / "pixabay_porch-691330_1280.jpg")]},
        "control": {"socket": str(sock), "watch_config": False},
    }
    config.write_text(toml(sections))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    log = tmp_path / "vcam.log"
    daemon = start_logged_daemon(config, log)
    try:
        wait_until(lambda: sock.exists(), 30, "the control socket")

        def ctl(*args):
            return subprocess.run([sys.executable, "-m", "vcam", "ctl", "--socket", str(sock), *args],
                                  env=env, capture_output=True, text=True, timeout=30)

        wait_until(lambda: request(sock, "status")["result"]["frames_sent"] > 5, 30, "frames")
        status = ctl("status")
        assert status.returncode == 0 and "effect: blur" in status.stdout and "camera: ok" in status.stdout
        assert "hotkeys: disabled: no X display" in status.stdout

        result = ctl("next-background")
        assert result.returncode == 0
        assert "pixabay_porch" in result.stdout and "skipped" in result.stdout

        sections["effect"] = {"name": "desaturate"}
        config.write_text(toml(sections))
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: request(sock, "status")["result"]["effect"] == "desaturate", 10, "SIGHUP reload")

        sections["output"]["fps"] = 500  # out of range
        config.write_text(toml(sections))
        bad = ctl("reload")
        assert bad.returncode == 1 and "[output] fps" in bad.stderr
        daemon.send_signal(signal.SIGHUP)  # the same invalid file by signal: logged, ignored
        time.sleep(0.5)
        assert daemon.poll() is None
        assert request(sock, "status")["result"]["effect"] == "desaturate"

        sections["output"]["fps"] = 30
        sections["effect"] = {"name": "transparent"}
        config.write_text(toml(sections))
        assert ctl("reload").returncode == 0
        assert request(sock, "status")["result"]["effect"] == "transparent"
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
    text = log.read_text()
    assert code == 0, text
    assert not sock.exists()
    assert "0_corrupt.jpg" in text and "skipping" in text
    assert text.count("config reload rejected") == 2 and "Traceback" not in text
    assert text.count("hotkeys disabled") == 1  # one clear line, not one per retry


def test_ctl_reload_reaches_the_daemon_when_the_broken_config_sets_its_socket(rig, capsys):
    """`vcam ctl reload` must find the daemon through [control] socket even though that file is invalid."""
    from vcam.cli import main
    rig.write_config(matte={"threshold": 7})  # out of range: the config does not load
    assert main(["--config", str(rig.config), "ctl", "reload"]) == 1  # reached the daemon, which refused
    err = capsys.readouterr().err
    assert "refused" in err and "[matte] threshold" in err and "not running" not in err, err
    # Not even TOML: the socket line is still found in its [control] table.
    rig.config.write_text(f'[effect\nname = \n[control]\nsocket = "{rig.socket}"\n')
    assert main(["--config", str(rig.config), "ctl", "status"]) == 0
    assert "camera: ok" in capsys.readouterr().out
    assert rig.ok("status")["camera"] == "ok"


def test_config_created_after_start_in_a_missing_folder_is_applied(rig, monkeypatch, tmp_path):
    """No ~/.config/vcam at start (here not even $XDG_CONFIG_HOME): a config written there later is
    picked up like a saved one."""
    from vcam.config import load_settings, user_config_path
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg" / "config"))
    path = user_config_path()
    assert not path.parent.parent.parent.exists()
    monkeypatch.setattr(rig.controller, "config_path", None)
    monkeypatch.setattr(rig.controller, "load_settings", lambda: load_settings())
    watcher = ConfigWatcher(rig.controller).start()
    try:
        path.parent.mkdir(parents=True)  # like `mkdir -p ~/.config/vcam`: three folders in a burst
        sections = dict(rig.sections, effect={"name": "desaturate"})
        path.write_text(toml(sections))
        rig.wait_state(lambda s: s.look.effect == "desaturate", timeout=5)
        rig.shows(_grey)
        assert watcher.watched == path.parent
        # And it keeps watching it: the next save is applied too.
        path.write_text(toml(dict(sections, effect={"name": "transparent"})))
        rig.wait_state(lambda s: s.look.effect == "transparent", timeout=5)
    finally:
        watcher.stop()


@pytest.mark.parametrize("blank", ["", " \t "])
def test_reload_to_replace_from_the_library_never_shows_white_first(rig, blank):
    """[effect] name = "replace" with no background (empty, or only whitespace: the same) takes the
    library's entry; until it has loaded, the old picture stays: no state (so no frame) with replace and no
    background, which the compositor would draw white."""
    assert len(rig.library) > 0 and rig.holder.get().look.effect == "blur"
    states = []
    rig.holder.subscribe(states.append)
    rig.write_config(effect={"name": "replace", "background": blank})
    rig.ok("reload")
    final = rig.wait_state(lambda s: s.look.effect == "replace" and s.look.background is not None)
    assert final.look.background.label.endswith(rig.library[0].name)
    assert not [s for s in states if s.look.effect == "replace" and s.look.background is None]


def test_reload_reads_a_padded_background_without_its_spaces(rig):
    """[effect] background = " /path/pic.jpg " reloads to that picture, as startup reads it, instead of
    being refused as a file whose name starts with a space."""
    picture = require_path("backgrounds", "images", "mate_nature_Aqua.jpg")  # not the library's entry
    rig.write_config(effect={"name": "replace", "background": f" {picture}\t"})
    rig.ok("reload")
    final = rig.wait_state(lambda s: s.look.effect == "replace" and s.look.background is not None)
    assert final.look.background.label.endswith(picture.name)


@pytest.mark.system
def test_a_reload_that_fails_with_any_error_keeps_the_running_pipeline(rig, tmp_path):
    """A 1x1 PNG as camera fails inside OpenCV (not a VcamError), an unwritable folder fails the file
    sink: both refused, the old camera and output go on, and the good config still applies afterwards."""
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    before = rig.pipeline.settings
    camera = dict(rig.sections["camera"])
    rig.write_config(camera={"source": str(tiny)})
    reply = rig.ctl("reload")
    assert not reply["ok"] and "tiny.png" in reply["error"], reply
    assert rig.pipeline.settings == before
    assert rig.frame_after(time.perf_counter(), settle=0.3) is not None  # the old camera still streams
    assert rig.ok("status")["camera"] == "ok"

    with unwritable_folder(tmp_path / "locked") as locked:
        rig.write_config(camera=camera, output={"sink": "file", "file": str(locked / "out.mp4")})
        reply = rig.ctl("reload")
        assert not reply["ok"] and "out.mp4" in reply["error"], reply
        assert rig.pipeline.settings == before
        assert rig.frame_after(time.perf_counter(), settle=0.3) is not None  # the old output still sends

    rig.write_config(camera=camera, output={"sink": "null"}, effect={"name": "desaturate"})
    # the good config is applied: nothing of the refused ones was half-applied
    assert rig.ok("reload")["effect"] == "desaturate"
