"""The client side of the control socket, light (no OpenCV, no numpy) so that `vcam ctl` answers a key
press at once.

One JSON line goes out and one comes back (docs/control.md); no socket, or no answer, is NotRunning. The
server must be our own uid (SO_PEERCRED) and its reply is bounded, so a socket someone else bound first
can neither fake an answer nor flood us.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from vcam.control.runtime import check_private_dir, fallback_dir, peer_uid, socket_path
from vcam.errors import VcamError

__all__ = ["NotAnswering", "NotRunning", "request", "socket_path"]

REPLY_TIMEOUT_S = 15.0  # longer than any action takes (a reload that reopens the camera and the model)
MAX_REPLY_BYTES = 1 << 20  # a status is about 1 KB
BUSY_RETRY_S = 5.0  # a daemon at its connection cap says "busy": try again for this long


class NotRunning(VcamError):
    """No daemon answers on the control socket."""


class NotAnswering(NotRunning):
    """Something accepts connections on the control socket but does not answer."""


def _connect(s: socket.socket, path: Path) -> None:
    try:
        for attempt in range(50):
            try:
                s.connect(str(path))
                break
            except BlockingIOError:  # the backlog is full for a moment: the daemon is busy accepting
                if attempt == 49:
                    raise
                time.sleep(0.02)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"vcam is not running (no control socket at {path}); start it with `vcam run`") \
            from None
    except OSError as e:
        raise NotRunning(f"{path}: cannot reach vcam: {e.strerror or e}") from None
    uid = peer_uid(s)
    if uid != os.getuid():
        raise VcamError(f"{path}: the control socket is served by uid {uid}, not by you (uid {os.getuid()}): "
                        f"not your vcam, so nothing was sent; remove it, or set $XDG_RUNTIME_DIR or "
                        f"[control] socket")


def _exchange(path: Path, action: str, args: list[str], timeout: float) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        _connect(s, path)
        data = b""
        try:
            try:
                s.sendall((json.dumps({"action": action, "args": args}) + "\n").encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # a busy daemon answers without reading: its reply is still there to read
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_REPLY_BYTES:
                    raise NotAnswering(f"{path}: the reply is over {MAX_REPLY_BYTES >> 20} MB: not vcam's")
        except TimeoutError:
            raise NotAnswering(f"{path}: vcam did not answer within {timeout:g} s (is it hung? "
                               f"`systemctl --user restart vcam`)") from None
        except OSError as e:  # BrokenPipe, ConnectionReset, ...
            raise NotAnswering(f"{path}: vcam closed the connection without answering "
                               f"({e.strerror or type(e).__name__})") from None
    return data


def request(path: Path, action: str, args: list[str] | None = None, timeout: float | None = None) -> dict:
    """Send one request and return the reply; NotRunning if nothing serves `path` or nothing answers,
    VcamError if `path` is not our own daemon's socket."""
    timeout = REPLY_TIMEOUT_S if timeout is None else timeout
    if path.parent == fallback_dir():
        check_private_dir(path.parent, create=False)  # missing: the connect below says "not running"
    deadline = time.monotonic() + BUSY_RETRY_S
    while True:
        data = _exchange(path, action, args or [], timeout)
        if not data:
            raise NotAnswering(f"{path}: vcam closed the connection without answering")
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):
            raise NotAnswering(f"{path}: vcam sent an unreadable reply") from None
        if not isinstance(reply, dict):
            raise NotAnswering(f"{path}: vcam sent an unreadable reply")
        if not (reply.get("busy") is True and time.monotonic() < deadline):
            return reply
        time.sleep(0.05)
