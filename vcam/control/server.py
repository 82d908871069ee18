"""The control socket and `vcam ctl`: one JSON line in, one JSON line out, over a Unix socket.

The socket lives in $XDG_RUNTIME_DIR (mode 0600, owner only; never TCP) and is served by its own
threads (one per client, each with a read timeout and a size limit), so a stuck, slow or hostile
client can't stall the others or the frame path, which it only reaches through the named actions.
Request:  {"action": "effect", "args": ["blur"]}      Reply: {"ok": true, "result": {...}}
                                                        or {"ok": false, "error": "..."}
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tomllib

from vcam.compositing.effects import takes_background
from vcam.config import ConfigError, ControlSettings, load_settings, user_config_path
from vcam.errors import VcamError

log = logging.getLogger(__name__)

SOCKET_NAME = "vcam.sock"


def socket_path(settings: ControlSettings) -> Path:
    """[control] socket, else $XDG_RUNTIME_DIR/vcam.sock (falls back to /tmp/vcam-UID.sock)."""
    if settings.socket:
        return Path(settings.socket).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return Path(f"/tmp/vcam-{os.getuid()}.sock")


class _Handler(socketserver.StreamRequestHandler):
    """One client: read one line (bounded, with a timeout), run the action, write one line."""

    server: "_Server"

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
            self.wfile.write((json.dumps(reply, default=str) + "\n").encode())
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
            creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                return {"ok": False, "error": "permission denied"}
        except OSError:
            pass
        limit = self.server.max_request_bytes
        try:
            line = self._read_line(limit)
        except (TimeoutError, socket.timeout):
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


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64  # a burst of shortcut presses must not find the backlog full
    block_on_close = False
    controller: Any
    client_timeout: float
    max_request_bytes: int


class ControlServer:
    """Serves the control socket for a Controller until `stop()`."""

    def __init__(self, controller: Any, settings: ControlSettings) -> None:
        self.controller = controller
        self.path = socket_path(settings)
        self._settings = settings
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "ControlServer":
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            if _alive(path):
                raise VcamError(f"{path}: another vcam is already serving this control socket "
                                f"(stop it, or set [control] socket)")
            path.unlink()  # stale, from a vcam that did not exit cleanly
        old_umask = os.umask(0o177)  # created 0600: no window where others could connect
        try:
            server = _Server(str(path), _Handler, bind_and_activate=True)
        except OSError as e:
            raise VcamError(f"{path}: cannot create the control socket: {e.strerror or e}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
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
            self.path.unlink()
        except FileNotFoundError:
            pass


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


class NotRunning(VcamError):
    """No daemon answers on the control socket."""


REPLY_TIMEOUT_S = 15.0  # longer than any action takes (a reload that reopens the camera and the model)


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


# -- `vcam ctl` -------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    from vcam.control.actions import ACTIONS, ALIASES
    lines = [f"  {(a.name + ' ' + a.args).strip():32s} {a.help}" for a in ACTIONS.values()]
    aliases = ", ".join(f"{k} = {v}" for k, v in ALIASES.items())
    p = subparsers.add_parser(
        "ctl", help="control the running vcam (effect, background, pause, reload, status)",
        description="Send an action to the running vcam over its control socket. Exit status: 0 accepted, "
                    "1 refused, 2 vcam not running or not answering.",
        epilog="actions:\n" + "\n".join(lines) + f"\n\naliases: {aliases}",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("action", metavar="ACTION", help="an action below")
    p.add_argument("args", metavar="ARG", nargs="*", help="its argument, if it takes one")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.add_argument("--socket", metavar="PATH", help="control socket (default: [control] socket)")
    p.set_defaults(func=run)


def _format(result: Any) -> str:
    if isinstance(result, dict):
        return "\n".join(f"{k}: {'' if v is None else v}" for k, v in result.items())
    return "" if result is None else str(result)


def _raw_socket_setting(config: str | None) -> str | None:
    """[control] socket read straight from the config file, for when the file does not validate."""
    path = Path(config) if config else user_config_path()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        value = tomllib.loads(text).get("control", {}).get("socket")
        return value if isinstance(value, str) else None
    except (tomllib.TOMLDecodeError, AttributeError):
        pass
    # Not even valid TOML: look for the line itself, in the [control] table.
    section = None
    for line in text.splitlines():
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$", line)
        if header:
            section = header.group(1)
            continue
        m = re.match(r"""\s*socket\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(#.*)?$""", line)
        if section == "control" and m:
            return m.group(1) if m.group(1) is not None else m.group(2)
    return None


def _ctl_socket(config: str | None) -> Path:
    """The socket from the config; a config with a mistake must not lock the user out of `vcam ctl`
    (above all `vcam ctl reload` after fixing it), so then [control] socket is read from the raw file."""
    try:
        return socket_path(load_settings(config).control)
    except ConfigError as e:
        raw = _raw_socket_setting(config)
        where = "its [control] socket" if raw else "the default control socket"
        print(f"vcam ctl: warning: {e}; trying {where} (the running vcam keeps its config until it is fixed)",
              file=sys.stderr)
        defaults = load_settings(use_user_config=False).control
        if raw:
            defaults = dataclasses.replace(defaults, socket=raw)
        return socket_path(defaults)


def run(args) -> int:
    path = Path(args.socket) if args.socket else _ctl_socket(args.config)
    reply = request(path, args.action, list(args.args))
    if args.json:
        print(json.dumps(reply, indent=2, default=str))
    elif reply.get("ok"):
        text = _format(reply.get("result"))
        if text:
            print(text)
    else:
        print(f"vcam ctl: refused: {reply.get('error', 'no reason given')}", file=sys.stderr)
    return 0 if reply.get("ok") else 1


# -- the daemon's control paths ---------------------------------------------------------------------------------
class _Stopper:
    """Adapts a cleanup function to the daemon's list of things with .stop()."""

    def __init__(self, fn, label: str) -> None:
        self._fn, self._label = fn, label

    def stop(self) -> None:
        self._fn()

    def __repr__(self) -> str:
        return self._label


def start_controls(pipeline: Any, holder: Any, settings: Any, loader=None) -> list:
    """Socket server, hotkeys, config watcher and SIGHUP, all calling one Controller's actions.

    `loader` rebuilds settings on reload (the daemon passes its file + command-line overrides).
    Returns objects with .stop(), to be stopped before the pipeline.
    """
    import signal

    from vcam.control.actions import Controller
    from vcam.control.hotkeys import HotkeyService
    from vcam.control.reload import ConfigWatcher, install_sighup

    controller = Controller(pipeline, holder, settings, loader=loader)
    controls: list = [_Stopper(controller.close, "controller")]
    try:
        look = holder.get().look
        if takes_background(look.effect) and look.background is None and len(controller.library):
            try:  # [effect] background empty: the library's first entry
                controller.run("effect", [look.effect])
            except VcamError as e:
                log.warning("no library background to start with: %s", e)
        server = ControlServer(controller, settings.control).start()
        controls.insert(0, server)
        hotkeys = HotkeyService(settings.hotkeys, lambda action: controller.run(action)).start()
        controls.insert(0, hotkeys)
        controller.status_providers.append(hotkeys.status)
        controller.reload_listeners.append(lambda new: hotkeys.update(new.hotkeys))
        if settings.control.watch_config:
            controls.insert(0, ConfigWatcher(controller).start())
        previous = signal.getsignal(signal.SIGHUP)
        install_sighup(controller)
        controls.append(_Stopper(lambda: signal.signal(signal.SIGHUP, previous), "sighup"))
    except BaseException:
        for c in controls:
            c.stop()
        raise
    log.debug("control paths: %s", controls)
    return controls
