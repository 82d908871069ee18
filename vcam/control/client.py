"""The client side of the control socket, light (no OpenCV, no numpy) so that `vcam ctl` answers a key
press at once.

One JSON line goes out and one comes back (docs/control.md); no socket, or no answer, is NotRunning.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from vcam.config import ControlSettings
from vcam.errors import VcamError

SOCKET_NAME = "vcam.sock"
REPLY_TIMEOUT_S = 15.0  # longer than any action takes (a reload that reopens the camera and the model)


def socket_path(settings: ControlSettings) -> Path:
    """[control] socket, else $XDG_RUNTIME_DIR/vcam.sock (falls back to /tmp/vcam-UID.sock)."""
    if settings.socket:
        return Path(settings.socket).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return Path(f"/tmp/vcam-{os.getuid()}.sock")


class NotRunning(VcamError):
    """No daemon answers on the control socket."""


class NotAnswering(NotRunning):
    """Something accepts connections on the control socket but does not answer."""


def request(path: Path, action: str, args: list[str] | None = None, timeout: float | None = None) -> dict:
    """Send one request and return the reply; NotRunning if nothing serves `path` or nothing answers."""
    timeout = REPLY_TIMEOUT_S if timeout is None else timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
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
        data = b""
        try:
            s.sendall((json.dumps({"action": action, "args": args or []}) + "\n").encode())
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, socket.timeout):
            raise NotAnswering(f"{path}: vcam did not answer within {timeout:g} s (is it hung? "
                               f"`systemctl --user restart vcam`)") from None
        except OSError as e:  # BrokenPipe, ConnectionReset, ...
            raise NotAnswering(f"{path}: vcam closed the connection without answering "
                               f"({e.strerror or type(e).__name__})") from None
    if not data:
        raise NotAnswering(f"{path}: vcam closed the connection without answering")
    try:
        reply = json.loads(data)
    except (ValueError, RecursionError):
        raise NotAnswering(f"{path}: vcam sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise NotAnswering(f"{path}: vcam sent an unreadable reply")
    return reply
