"""The daemon's control socket, served so that no client, however slow, stuck or hostile, can stall
the others or the frame path, which it only reaches through the named actions.

The socket lives in $XDG_RUNTIME_DIR or a checked private folder (mode 0600, owner only; never TCP;
the peer's uid is checked too). Each client gets its own thread, with a read timeout and a size limit,
up to MAX_CLIENTS at once; beyond that a client gets a one-line "busy" reply (`vcam ctl` retries).
Request:  {"action": "effect", "args": ["blur"]}      Reply: {"ok": true, "result": {...}}
                                                        or {"ok": false, "error": "..."}
"""
from __future__ import annotations

import collections
import json
import logging
import os
import socket
import socketserver
import stat
import threading
import time
from pathlib import Path
from typing import Protocol

from vcam.config import ControlSettings
from vcam.control.runtime import peer_uid, prepare_socket_dir, socket_path
from vcam.errors import VcamError

log = logging.getLogger(__name__)

MAX_CLIENTS = 32  # handler threads at once; a request takes milliseconds, so only stuck clients fill them
BUSY_REPLY = (json.dumps({"ok": False, "busy": True,
                          "error": f"busy: {MAX_CLIENTS} requests in progress; try again"}) + "\n").encode()


def printable(value: object) -> object:
    """`value` with every string valid Unicode: a file name that is not UTF-8 (kept by Python as lone
    surrogates) shows as \\xff escapes, so a reply always encodes and any terminal can print it."""
    if isinstance(value, str):
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


class ActionRunner(Protocol):
    """What the socket serves (an actions.Controller): run a named action, VcamError if refused."""

    def run(self, name: str, args: list[str]) -> dict: ...


class _ClientHandler(socketserver.StreamRequestHandler):
    """One client: read one line (bounded, with a timeout), run the action, write one line."""

    server: _SocketServer

    def setup(self) -> None:
        self.timeout = self.server.client_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def handle(self) -> None:
        try:
            reply = self._reply()
        except Exception as e:  # whatever a request does, it gets a reply and the daemon goes on
            log.exception("control request failed")
            reply = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        try:
            self.wfile.write((json.dumps(printable(reply), default=str) + "\n").encode())
        except OSError:
            pass  # the client left; nothing to tell

    def _read_line(self, limit: int) -> bytes | None:
        """One request line; None if longer than `limit`. The timeout is for the whole request, so a
        client trickling a byte at a time can't hold a thread for long either."""
        deadline = time.monotonic() + self.server.client_timeout
        data = b""
        while b"\n" not in data:
            if len(data) > limit:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.request.settimeout(remaining)
            chunk = self.request.recv(4096)
            if not chunk:  # the client closed its side: what it sent is the request
                break
            data += chunk
        line = data.split(b"\n", 1)[0]
        return None if len(line) > limit else line

    def _reply(self) -> dict:
        try:
            uid = peer_uid(self.request)
        except OSError:
            uid = -1  # unknown peer: refused like a stranger
        if uid != os.getuid():
            return {"ok": False, "error": "permission denied"}
        limit = self.server.max_request_bytes
        try:
            line = self._read_line(limit)
        except TimeoutError:
            return {"ok": False, "error": f"no complete request within {self.server.client_timeout} s"}
        except OSError as e:
            return {"ok": False, "error": f"read failed: {e}"}
        if line is None:
            return {"ok": False, "error": f"request too large (limit {limit} bytes)"}
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: e.g. 3 KB of "["
            return {"ok": False, "error": "malformed request: expected one JSON object per line, "
                                          "like {\"action\": \"status\", \"args\": []}"}
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            return {"ok": False, "error": "malformed request: needs a string \"action\""}
        args = request.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return {"ok": False, "error": "malformed request: \"args\" must be a list of strings"}
        try:
            return {"ok": True, "result": self.server.controller.run(request["action"], args)}
        except VcamError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug must not take the daemon down; log it and tell the client
            log.exception("control action %s failed", request["action"])
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64  # a burst of shortcut presses must not find the backlog full
    block_on_close = False
    controller: ActionRunner
    client_timeout: float
    max_request_bytes: int

    def server_activate(self) -> None:
        super().server_activate()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.refused: collections.deque = collections.deque()  # (close after, socket): busy replies

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """One line, "busy", without a thread. What the client sent is read first and the socket closed a
        second later, so that closing never resets the connection before the client has read the line."""
        try:
            request.setblocking(False)
            try:
                request.recv(65536)
            except OSError:
                pass
            request.send(BUSY_REPLY)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.refused.append((time.monotonic() + 1.0, request))
        self.service_actions()

    def service_actions(self) -> None:
        """Close the refused sockets whose client has had its second (and any over 256 at once)."""
        now = time.monotonic()
        while self.refused and (self.refused[0][0] <= now or len(self.refused) > 256):
            self.refused.popleft()[1].close()

    def server_close(self) -> None:
        super().server_close()
        while getattr(self, "refused", None):
            self.refused.popleft()[1].close()


class ControlServer:
    """Serves the control socket for a Controller until `stop()`."""

    def __init__(self, controller: ActionRunner, settings: ControlSettings) -> None:
        self.controller = controller
        self.path = socket_path(settings)
        self._settings = settings
        self._server: _SocketServer | None = None
        self._thread: threading.Thread | None = None
        self._bound: tuple[int, int] | None = None

    def start(self) -> ControlServer:
        path = self.path
        prepare_socket_dir(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise VcamError(f"{path} exists and is not a socket (a file or a symlink); vcam leaves it "
                                f"alone: move it away, or set [control] socket")
            peer = _serving_uid(path)
            if peer is not None:
                whose = "another vcam is" if peer == os.getuid() else f"uid {peer} (not you) is"
                raise VcamError(f"{path}: {whose} already serving this control socket "
                                f"(stop it, or set [control] socket)")
            path.unlink()  # stale, from a vcam that did not exit cleanly
        old_umask = os.umask(0o177)  # created 0600: no window where others could connect
        try:
            server = _SocketServer(str(path), _ClientHandler, bind_and_activate=True)
        except OSError as e:
            raise VcamError(f"{path}: cannot create the control socket: {e.strerror or e}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        bound = os.stat(path)
        self._bound = (bound.st_dev, bound.st_ino)
        server.controller = self.controller
        server.client_timeout = self._settings.client_timeout
        server.max_request_bytes = self._settings.max_request_bytes
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="vcam-control", daemon=True)
        self._thread.start()
        log.info("control socket %s (`vcam ctl status`)", path)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._bound:  # only ours: never another vcam's that replaced it
            self.path.unlink()
        else:
            log.info("control socket %s is no longer ours; left in place", self.path)


def _serving_uid(path: Path) -> int | None:
    """The uid of whoever accepts connections on `path`, or None for a stale socket file."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return peer_uid(s)
        except OSError:
            return None
