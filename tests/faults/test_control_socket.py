"""The control socket against other local users and odd clients: a squatted or unsafe socket folder, a
socket bound by another uid, another uid connecting, replies without end, files in the socket's place,
a replaced socket, a flood of connections, and file names that are not UTF-8.

The other user is a real process of uid 65534 (setpriv), so these need root (CI runs as root).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import other_user_prefix, require_path

import vcam.control.runtime as runtime
from vcam.cli import main
from vcam.compositing.look import Look
from vcam.config import load_settings
from vcam.control.actions import Controller
from vcam.control.client import NotAnswering, request, socket_path
from vcam.control.server import ControlServer
from vcam.errors import VcamError
from vcam.live.state import LiveState, LiveStateHolder

NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]


def as_nobody(*cmd: str) -> list[str]:
    return [*other_user_prefix(NOBODY), *cmd]


@pytest.fixture
def shared_tmp():
    """A world-writable sticky folder like /tmp, that another user can reach."""
    path = Path(tempfile.mkdtemp(prefix="vcam-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(tmp_path):
    """A Controller (no pipeline: the actions that matter here touch the live state) and its server."""
    holder = LiveStateHolder(LiveState(look=Look(effect="blur")))
    settings = load_settings(use_user_config=False)
    settings = settings.replace("control", socket=str(tmp_path / "vcam.sock"))
    controller = Controller(None, holder, settings)
    servers: list[ControlServer] = []

    def serve(path: Path | None = None) -> ControlServer:
        s = settings if path is None else settings.replace("control", socket=str(path))
        server = ControlServer(controller, s.control).start()
        servers.append(server)
        return server

    yield controller, holder, serve
    for server in servers:
        server.stop()
    controller.close()


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.system
def test_without_a_runtime_dir_the_socket_is_in_a_private_folder_and_a_squatted_one_is_refused(
        shared_tmp, daemon, monkeypatch, capsys):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(runtime, "FALLBACK_BASE", str(shared_tmp))
    private = shared_tmp / f"vcam-{os.getuid()}"
    default = load_settings(use_user_config=False).control
    assert socket_path(default) == private / "vcam.sock"  # never a bare socket in a world-writable folder
    controller, holder, serve = daemon

    # Another user made the folder first (a sticky /tmp lets anyone create it): refused in one line.
    subprocess.run(as_nobody("mkdir", "-m", "0777", str(private)), check=True)
    with pytest.raises(VcamError, match=f"belongs to uid {NOBODY}"):
        ControlServer(controller, default).start()
    assert main(["ctl", "pause"]) == 2
    assert "belongs to uid" in _one_line(capsys.readouterr().err)
    assert not holder.get().paused
    subprocess.run(as_nobody("rmdir", str(private)), check=True)

    # A symlink, or a folder of ours that others can enter: refused too.
    (shared_tmp / "elsewhere").mkdir(mode=0o700)
    private.symlink_to(shared_tmp / "elsewhere")
    with pytest.raises(VcamError, match="is a symlink"):
        ControlServer(controller, default).start()
    private.unlink()
    private.mkdir()
    private.chmod(0o755)
    with pytest.raises(VcamError, match="open to other users"):
        ControlServer(controller, default).start()
    private.rmdir()

    # Not there: made 0700 and ours, and served.
    server = ControlServer(controller, default).start()
    try:
        st = os.lstat(private)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        assert request(socket_path(default), "pause")["result"]["paused"] is True
    finally:
        server.stop()


SQUATTER = """
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        got = c.recv(4096)
    except OSError:
        got = b""
    print("got", repr(got), flush=True)
    c.sendall(b'{"ok": true, "result": {"paused": true}}\\n')
    c.close()
"""


@pytest.mark.system
def test_a_socket_bound_by_another_user_gets_no_request_and_its_answer_is_not_believed(shared_tmp):
    path = shared_tmp / "vcam.sock"
    squatter = subprocess.Popen(as_nobody(sys.executable, "-c", SQUATTER, str(path)), stdout=subprocess.PIPE,
                                text=True)
    try:
        assert squatter.stdout.readline().strip() == "ready"
        assert os.stat(path).st_uid == NOBODY
        with pytest.raises(VcamError, match=f"served by uid {NOBODY}"):
            request(path, "pause")
    finally:
        squatter.kill()
        out = squatter.communicate()[0]
    assert "pause" not in out  # nothing was sent to it


@pytest.mark.system
def test_another_user_connecting_is_refused_and_nothing_is_applied(shared_tmp, daemon):
    """The server's SO_PEERCRED check on its own: the socket is opened to everyone for this test."""
    controller, holder, serve = daemon
    path = shared_tmp / "open.sock"
    serve(path)
    path.chmod(0o666)  # as if the folder or mode were wrong: the uid check must still hold
    # the server may refuse (and close) before the request is sent: a send into the closed socket is fine,
    # the refusal is still there to read
    script = ("import json, socket, sys, contextlib\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "with contextlib.suppress(BrokenPipeError, ConnectionResetError):\n"
              "    s.sendall(b'{\"action\": \"pause\"}\\n')\n"
              "print(s.recv(4096).decode())")
    out = subprocess.run(as_nobody(sys.executable, "-c", script, str(path)), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply == {"ok": False, "error": "permission denied"}
    assert not holder.get().paused
    assert request(path, "status")["ok"]  # our own uid is served


def test_a_reply_without_end_is_cut_off(tmp_path):
    path = tmp_path / "flood.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    sent = []

    def flood() -> None:
        conn, _ = server.accept()
        try:
            conn.recv(4096)
            chunk = b"x" * 65536
            for _ in range(1024):  # 64 MB, no newline
                conn.sendall(chunk)
                sent.append(len(chunk))
        except OSError:
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    t0 = time.monotonic()
    with pytest.raises(NotAnswering, match="over 1 MB"):
        request(path, "status", timeout=5)
    assert time.monotonic() - t0 < 3
    thread.join(5)
    server.close()
    assert sum(sent) < 8 << 20  # the client stopped reading long before the end


def test_a_file_or_symlink_in_the_sockets_place_is_refused_and_left_alone(tmp_path, daemon):
    controller, holder, serve = daemon
    regular = tmp_path / "notes.sock"
    regular.write_text("my notes")
    with pytest.raises(VcamError, match="is not a socket"):
        serve(regular)
    assert regular.read_text() == "my notes"
    link = tmp_path / "link.sock"
    link.symlink_to(regular)
    with pytest.raises(VcamError, match="is not a socket"):
        serve(link)
    assert link.is_symlink() and regular.read_text() == "my notes"


def test_stopping_leaves_a_socket_that_replaced_ours(tmp_path, daemon):
    controller, holder, serve = daemon
    path = tmp_path / "vcam.sock"
    first = serve(path)
    path.unlink()  # someone removed it; a second vcam (or anything) bound the path again
    second = serve(path)
    first.stop()
    assert path.exists() and request(path, "status")["ok"]  # the second one's socket is still there
    second.stop()
    assert not path.exists()


def test_connections_are_capped_and_extra_ones_get_a_busy_line(tmp_path, daemon):
    import vcam.control.server as server_module
    cap = server_module.MAX_CLIENTS
    controller, holder, serve = daemon
    path = tmp_path / "vcam.sock"
    serve(path)
    threads_before = threading.active_count()
    idle = []
    for _ in range(cap + 40):  # clients that connect and say nothing hold a slot until client_timeout
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        idle.append(s)
    try:
        time.sleep(0.3)
        assert threading.active_count() - threads_before <= cap + 2
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            reply = json.loads(s.makefile().readline())
        assert reply["ok"] is False and reply.get("busy") is True and "busy" in reply["error"]
        # `vcam ctl` waits its turn: answered once the idle ones are cut off (client_timeout).
        assert request(path, "status")["ok"]
        # Many at once, all answered (retrying while the server is full).
        results = []
        workers = [threading.Thread(target=lambda: results.append(request(path, "status")["ok"]))
                   for _ in range(200)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert results.count(True) == 200
    finally:
        for s in idle:
            s.close()


@pytest.mark.system
def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path, daemon):
    """Under a strict UTF-8 locale, `vcam ctl` printed a traceback for such a name and every later status."""
    controller, holder, serve = daemon
    image = require_path("backgrounds", "images", "mate_nature_Aqua.jpg")
    folder = tmp_path / "lib"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9-\xff.jpg")
    shutil.copy(image, folder / name)
    path = tmp_path / "vcam.sock"
    serve(path)
    env = dict(os.environ, PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8", PYTHONPATH=str(ROOT))

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vcam", "ctl", "--socket", str(path), *args], env=env,
                              capture_output=True, timeout=60)

    shown = ctl("background", str(folder / name))
    assert shown.returncode == 0, shown.stderr.decode()
    assert b"caf\\xe9-\\xff.jpg" in shown.stdout and b"Traceback" not in shown.stderr
    for args in (["status"], ["status", "--json"]):
        status = ctl(*args)
        assert status.returncode == 0 and b"\\xff" in status.stdout, status.stderr.decode()
    json.loads(ctl("status", "--json").stdout)  # valid JSON


@pytest.mark.system
def test_a_relative_background_path_is_the_callers(tmp_path, daemon):
    """`vcam ctl background beach.jpg` names a file in the caller's folder, not the daemon's."""
    controller, holder, serve = daemon
    path = tmp_path / "vcam.sock"
    serve(path)
    caller = tmp_path / "caller"
    caller.mkdir()
    shutil.copy(require_path("backgrounds", "images", "mate_nature_Aqua.jpg"), caller / "beach.jpg")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ctl = [sys.executable, "-m", "vcam", "ctl", "--socket", str(path), "background"]
    out = subprocess.run([*ctl, "beach.jpg"], cwd=caller, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert holder.get().look.background.label == str(caller / "beach.jpg")
    # Colours and entry numbers are not paths, even where a file has that name.
    (caller / "white").write_text("not a picture")
    out = subprocess.run([*ctl, "white"], cwd=caller, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and holder.get().look.background.label == "white", out.stderr
