"""The control socket (control/server.py) on a running pipeline: every action (control/actions.py), what
the next frames show, concurrent and hostile clients, the socket's permissions, and `vcam ctl`'s output
and exit status."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import cv2
import pytest
from control_rig import (
    KEY_SENT,
    SIZE,
    TOP_LEFT,
    as_sent,
    background_region,
    blueness,
    close_to,
    grey,
    key_pixels,
    sent_color,
    sharpness,
)

from vcam.cli import main
from vcam.config import load_settings
from vcam.control.actions import HANDLERS
from vcam.control.catalog import ACTIONS
from vcam.control.client import socket_path
from vcam.control.server import ControlServer
from vcam.errors import VcamError
from vcam.live.placeholder import placeholder


def _raw(rig, data: bytes, read_timeout: float = 5.0) -> dict:
    """Send raw bytes (no framing help) and parse the one-line reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(read_timeout)
        s.connect(str(rig.socket))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading an oversized request; its reply is still readable
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def test_effect_actions_change_the_next_frames(rig):
    assert rig.ok("effect", "none")["effect"] == "none"
    rig.shows(lambda f: close_to(f, rig.still_sent, tol=0.5))  # the camera picture, untouched

    rig.ok("effect", "transparent")
    rig.shows(lambda f: (f[TOP_LEFT] == KEY_SENT).all())  # the key colour behind the person

    rig.ok("effect", "desaturate")
    assert blueness(rig.still) > 40 and not grey(rig.still)
    # blue boxes turned grey: a predicate that no frame of the previous step (the key colour) meets
    rig.shows(grey)

    # next/previous walk blur > replace > desaturate > transparent > none
    assert rig.ok("next-effect")["effect"] == "transparent"
    assert rig.ok("previous-effect")["effect"] == "desaturate"
    assert rig.ok("prev-effect")["effect"] == "replace"
    assert rig.ok("previous-effect")["effect"] == "blur"
    # blurred and still blue: neither the key colour (blueness 1), grey (0), the sharp replaced background
    # nor the camera picture as it is, which the frames still in flight from the steps above may show
    rig.shows(lambda f: sharpness(f) < 0.5 * sharpness(rig.still) and blueness(f) > 40)


def test_background_actions_show_the_library_entry(rig):
    porch, aqua, retro, video = rig.library
    result = rig.ok("background", "2")
    assert (result["effect"], result["background_index"], result["library_size"]) == ("replace", 2, 4)
    rig.shows(lambda f: close_to(f[TOP_LEFT], background_region(aqua)))

    assert rig.ok("next-background")["background_index"] == 3
    rig.shows(lambda f: close_to(f[TOP_LEFT], background_region(retro)))

    result = rig.ok("next-bg")  # the video: effect "video", and it plays
    assert (result["effect"], result["background_index"]) == ("video", 4)
    first = rig.shows(lambda f: not close_to(f[TOP_LEFT], background_region(retro))).copy()
    rig.shows(lambda f: not close_to(f, first, tol=0.5))  # the video plays (the camera is a still)

    assert rig.ok("next-background")["background_index"] == 1  # wraps around
    rig.shows(lambda f: close_to(f[TOP_LEFT], background_region(porch)))
    assert rig.ok("previous-background")["background_index"] == 4
    assert rig.ok("prev-bg")["background_index"] == 3

    result = rig.ok("background", str(porch))  # a path: found in the library
    assert result["background_index"] == 1
    rig.shows(lambda f: close_to(f[TOP_LEFT], background_region(porch)))

    result = rig.ok("background", "#ff0000")  # a colour
    assert result["background"] == "#ff0000"
    rig.shows(lambda f: (f[TOP_LEFT] == sent_color((0, 0, 255))).all())

    for bad in ("9", "0", "123456", "/nonexistent/bg.jpg"):  # 123456: an entry number, not a colour
        reply = rig.ctl("background", bad)
        assert not reply["ok"] and bad.lstrip("/").split("/")[0] in reply["error"]
    # refused: nothing changed
    assert (rig.frame_after(time.perf_counter())[TOP_LEFT] == sent_color((0, 0, 255))).all()


def test_blur_edge_mirror_and_pause_actions(rig):
    rig.ok("effect", "blur")
    start = rig.holder.get().look.blur
    # 0 < : a frame still in flight from the test before (a solid colour behind the person) is not a blur
    soft = sharpness(rig.shows(lambda f: 0 < sharpness(f) < 0.5 * sharpness(rig.still)))
    assert rig.ok("blur-stronger")["blur"] > start
    rig.shows(lambda f: sharpness(f) < 0.9 * soft)
    rig.ok("blur-weaker")
    assert rig.ok("blur-weaker")["blur"] < start
    rig.shows(lambda f: sharpness(f) > 1.1 * soft)
    for _ in range(20):
        rig.ok("blur-weaker")
    assert rig.holder.get().look.blur == 1  # clamped to the config's range

    rig.ok("effect", "transparent")
    keyed = key_pixels(rig.shows(lambda f: (f[TOP_LEFT] == KEY_SENT).all()))
    width = rig.ok("edge-softer")["edge_width"]
    assert width == pytest.approx(rig.settings.matte.edge_width + 0.1)
    rig.shows(lambda f: key_pixels(f) < keyed)  # a wider soft edge: fewer pixels fully background
    rig.ok("edge-harder")
    assert rig.ok("edge-harder")["edge_width"] == pytest.approx(rig.settings.matte.edge_width - 0.1)
    rig.shows(lambda f: key_pixels(f) > keyed)

    rig.ok("effect", "none")
    assert rig.ok("mirror", "on")["mirror"] is True
    rig.shows(lambda f: close_to(f, cv2.flip(rig.still_sent, 1), tol=0.5))
    assert rig.ok("toggle-mirror")["mirror"] is False
    assert rig.ok("mirror")["mirror"] is True
    assert rig.ok("mirror", "off")["mirror"] is False
    assert not rig.ctl("mirror", "sideways")["ok"]

    result = rig.ok("pause")
    assert result["paused"] is True
    rig.shows(lambda f: close_to(f, as_sent(placeholder("paused", SIZE)), tol=0.5))
    assert rig.ok("status")["camera"] == "released"
    assert rig.ok("toggle-pause")["paused"] is False
    rig.shows(lambda f: close_to(f, rig.still_sent, tol=0.5))
    rig.ok("toggle-pause")
    assert rig.ok("resume")["paused"] is False


def test_status_reports_the_running_daemon(rig):
    rig.ok("effect", "blur")
    status = rig.ok("status")
    for key in ("effect", "background", "fps", "latency_ms_p50", "latency_ms_p95", "camera", "on_demand",
                "paused", "mirror", "frames_sent", "library_size"):
        assert key in status, key
    assert status["effect"] == "blur" and status["camera"] == "ok" and status["fps"] > 10
    assert status["latency_ms_p50"] > 0


def test_every_action_is_served(rig):
    """Each named action answers over the socket (the ones above check what they do)."""
    assert HANDLERS.keys() == ACTIONS.keys()  # the catalog and the handlers name the same actions
    args = {"effect": ["blur"], "background": ["1"]}
    for name in ACTIONS:
        if name == "reload":
            continue  # test_reload.py: it needs a config file
        reply = rig.ctl(name, *args.get(name, []))
        assert reply["ok"], (name, reply)
    rig.ok("resume")


def test_malformed_and_oversized_requests_get_errors_and_the_daemon_goes_on(rig):
    limit = rig.settings.control.max_request_bytes
    cases = {
        b"not json\n": "malformed",
        b"[1, 2]\n": "action",
        b'{"args": []}\n': "action",
        b'{"action": 5}\n': "action",
        b'{"action": "status", "args": "x"}\n': "args",
        b'{"action": "status", "args": [1]}\n': "args",
        b'{"action": "self-destruct"}\n': "unknown action",
        b'{"action": "effect"}\n': "usage",
        b'{"action": "effect", "args": ["blur", "x"]}\n': "usage",
        b'{"action": "effect", "args": ["sparkles"]}\n': "sparkles",
        b"\xff\xfe\x00garbage\n": "malformed",
        b"[" * 3000 + b"\n": "malformed",  # nested deeper than the JSON parser recurses
        b"\n": "malformed",
        b"x" * (limit * 50): "too large",
        b'{"action": "status", "args": ["' + b"a" * limit + b'"]}\n': "too large",
    }
    sent_before = rig.pipeline.frames_sent
    for data, expected in cases.items():
        reply = _raw(rig, data)
        assert reply["ok"] is False and expected in reply["error"], (data[:40], reply)
    # A client that connects and closes without a word, and one that half-sends and stops.
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(rig.socket))
    reply = _raw(rig, b'{"action": "sta', read_timeout=rig.settings.control.client_timeout + 5)
    assert reply["ok"] is False and "no complete request" in reply["error"]
    # A client trickling a byte now and then is cut off after client_timeout in total, not per byte.
    timeout = rig.settings.control.client_timeout
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout + 5)
        s.connect(str(rig.socket))
        t0 = time.perf_counter()
        reply = b""
        try:
            for byte in b'{"action": "status"}':
                s.sendall(bytes([byte]))
                time.sleep(0.25)
                if time.perf_counter() - t0 > timeout + 1:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = s.recv(65536)
        assert b"no complete request" in reply and time.perf_counter() - t0 < timeout + 1.5
    assert rig.ok("status")["camera"] == "ok"
    time.sleep(0.3)
    assert rig.pipeline.frames_sent > sent_before  # frames kept flowing all along


def test_concurrent_clients_and_a_stuck_one_do_not_stall_each_other(rig):
    stuck = socket.socket(socket.AF_UNIX)
    stuck.connect(str(rig.socket))
    stuck.sendall(b'{"action": "status"')  # and never finishes the line
    try:
        results: list = []
        errors: list = []

        def client(i: int) -> None:
            try:
                for j in range(5):
                    # Cheap actions, and one client switching backgrounds (a load each) meanwhile.
                    action = "next-background" if i == 0 else ("status", "blur-weaker", "toggle-mirror",
                                                                "edge-softer")[(i + j) % 4]
                    t0 = time.perf_counter()
                    reply = rig.ctl(action)
                    results.append((reply["ok"], time.perf_counter() - t0))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert not errors
        assert len(results) == 40 and all(ok for ok, _ in results)
        # All answered while the stuck client still held its connection (its timeout is 2 s).
        assert time.perf_counter() - t < rig.settings.control.client_timeout
    finally:
        stuck.close()
    state = rig.holder.get()
    assert rig.ok("status")["background_index"] == rig.controller.library.position + 1
    assert state.look.background is not None
    rig.ok("mirror", "off")


def test_socket_is_private_and_single(rig, tmp_path):
    mode = stat.S_IMODE(os.stat(rig.socket).st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_ISSOCK(os.stat(rig.socket).st_mode)
    # Default place: $XDG_RUNTIME_DIR/vcam.sock (the test's private runtime dir).
    default = socket_path(load_settings(use_user_config=False).control)
    assert default == __import__("pathlib").Path(os.environ["XDG_RUNTIME_DIR"]) / "vcam.sock"
    # A second daemon on the same socket is refused while the first is alive ...
    with pytest.raises(VcamError, match="already"):
        ControlServer(rig.controller, rig.settings.control).start()
    assert rig.ok("status")
    # ... but a stale socket file left by a crash is replaced, and removed on stop.
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    settings = rig.settings.replace("control", socket=str(stale))
    server = ControlServer(rig.controller, settings.control).start()
    try:
        assert stat.S_IMODE(os.stat(stale).st_mode) == 0o600
        assert main(["ctl", "--socket", str(stale), "status"]) == 0
    finally:
        server.stop()
    assert not stale.exists()


def test_vcam_ctl_prints_and_exits_by_outcome(rig, capsys):
    assert main(["ctl", "--socket", str(rig.socket), "effect", "desaturate"]) == 0
    out = capsys.readouterr().out
    assert "effect: desaturate" in out
    assert main(["ctl", "--socket", str(rig.socket), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["ok"] and status["result"]["effect"] == "desaturate"
    assert main(["ctl", "--socket", str(rig.socket), "effect", "sparkles"]) == 1
    assert "refused" in capsys.readouterr().err
    # No daemon: exit 2 and one clear line.
    assert main(["ctl", "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vcam: error: vcam is not running") and "\n" not in err


def test_vcam_ctl_against_a_daemon_that_does_not_answer_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """Something accepts on the socket but never replies (a hung daemon), or hangs up without a reply."""
    import vcam.control.client as client
    monkeypatch.setattr(client, "REPLY_TIMEOUT_S", 0.5)
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    accepted: list = []

    def serve(hang_up: bool) -> None:
        conn, _ = server.accept()
        accepted.append(conn)
        if hang_up:
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, __import__("struct").pack("ii", 1, 0))
            conn.close()  # reset, no reply

    try:
        for hang_up, words in ((False, "did not answer within 0.5 s"), (True, "without answering")):
            th = threading.Thread(target=serve, args=(hang_up,))
            th.start()
            t0 = time.perf_counter()
            assert main(["ctl", "--socket", str(path), "status"]) == 2
            th.join(5)
            err = capsys.readouterr().err.strip()
            assert err.startswith("vcam: error: ") and words in err and "\n" not in err, err
            assert "Traceback" not in err and time.perf_counter() - t0 < 3
    finally:
        for conn in accepted:
            conn.close()
        server.close()
