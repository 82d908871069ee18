"""The session bus side of the portal hotkeys (jeepney): finding the bus, asking whether the desktop portal
offers GlobalShortcuts, and `PortalLink`, one connection driven by one thread.

jeepney is pure Python with blocking I/O, which fits vcam's one-thread-per-service model: the thread
`select()`s on the bus socket and on a wake-up socket, so stop() and config updates interrupt any wait.
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

PORTAL_NAME = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
SHORTCUTS = "org.freedesktop.portal.GlobalShortcuts"
REQUEST = "org.freedesktop.portal.Request"
SESSION = "org.freedesktop.portal.Session"
REGISTRY = "org.freedesktop.host.portal.Registry"
PROPERTIES = "org.freedesktop.DBus.Properties"
# vcam's app id: the portal and the desktop remember shortcuts by it; it must match the installed
# io.github.vcam.Vcam.desktop (`vcam setup --service` installs it).
APP_ID = "io.github.vcam.Vcam"

CALL_TIMEOUT_S = 5.0  # a method call's reply (the portal answers at once; only Responses wait for the user)

_NO_PORTAL = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
_NO_INTERFACE = ("org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.UnknownInterface",
                 "org.freedesktop.DBus.Error.UnknownProperty", "org.freedesktop.DBus.Error.UnknownMethod",
                 "org.freedesktop.DBus.Error.UnknownObject")
NO_SHORTCUTS = "the desktop portal has no GlobalShortcuts (e.g. Sway/wlroots, or an old portal)"


class Unavailable(Exception):
    """No session bus, no portal, or no GlobalShortcuts in it: state "unavailable", retried with backoff."""


class Retry(Exception):
    """The portal refused, or went away: state "retrying", retried with backoff."""


class PortalGone(Retry):
    """The portal's owner left the bus (a crash, a restart): said once; the retries that find no portal
    yet are part of the same trouble."""


class Stopped(Exception):
    """stop() was called."""


def explain(e: DBusErrorResponse) -> Unavailable | Retry:
    """What a D-Bus error from the portal means for us: not there (wait for it) or refusing (retry)."""
    if e.name in _NO_PORTAL:
        return Unavailable(f"no desktop portal ({PORTAL_NAME}) on the session bus")
    if e.name in _NO_INTERFACE:
        return Unavailable(NO_SHORTCUTS)
    return Retry(f"the portal refused: {e.name}: {e.data[0] if e.data else ''}")


def bus_address(given: str | None = None) -> str:
    """The session bus address: given, else $DBUS_SESSION_BUS_ADDRESS, else systemd's $XDG_RUNTIME_DIR/bus."""
    if given:
        return given
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return os.environ["DBUS_SESSION_BUS_ADDRESS"]
    path = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}", "bus")
    if os.path.exists(path):
        return f"unix:path={path}"
    raise Unavailable("no session bus (DBUS_SESSION_BUS_ADDRESS is unset and there is no "
                      "$XDG_RUNTIME_DIR/bus)")


def connect(given: str | None, timeout: float) -> DBusConnection:
    """A new connection to the session bus, or Unavailable saying why not."""
    address = bus_address(given)
    try:
        return open_dbus_connection(address, auth_timeout=timeout)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise Unavailable(f"cannot reach the session bus {address}: {e}") from None


def portal(interface: str, path: str = PORTAL_PATH) -> DBusAddress:
    return DBusAddress(path, bus_name=PORTAL_NAME, interface=interface)


def probe_portal(address: str | None = None, timeout: float = 2.0) -> tuple[str, str]:
    """("ok", "GlobalShortcuts version N"), ("absent", why: no bus, no portal, no GlobalShortcuts) or
    ("unknown", why: the bus or the portal did not answer in time, so it may still be starting)."""
    try:
        conn = connect(address, timeout)
    except Unavailable as e:
        return "absent", str(e)
    try:
        get = new_method_call(portal(PROPERTIES), "Get", "ss", (SHORTCUTS, "version"))
        body = unwrap_msg(conn.send_and_get_reply(get, timeout=timeout))
        return "ok", f"GlobalShortcuts version {body[0][1]}"
    except DBusErrorResponse as e:
        problem = explain(e)
        return ("absent" if isinstance(problem, Unavailable) else "unknown"), str(problem)
    except TimeoutError:
        return "unknown", f"the desktop portal did not answer within {timeout:g} s"
    except (OSError, ValueError) as e:
        return "unknown", f"the session bus failed: {e}"
    finally:
        conn.close()


def portal_status(address: str | None = None, timeout: float = 2.0) -> tuple[bool, str]:
    """(True, "GlobalShortcuts version N") if the portal offers global shortcuts, else (False, why not);
    for `backend = "auto"` and `vcam doctor`."""
    state, reason = probe_portal(address, timeout)
    return state == "ok", reason


class PortalLink:
    """One connection to the session bus, used by one thread: method calls whose replies are awaited while
    signals wait in a backlog, portal requests whose Response is awaited, and only the portal's own signals
    passed on. `wake` (readable) interrupts any wait; `stop` set makes every wait raise Stopped."""

    def __init__(self, address: str | None, wake: socket.socket, stop: threading.Event,
                 on_signal: Callable[[Message], None]) -> None:
        self.conn = connect(address, CALL_TIMEOUT_S)
        self._wake, self._stop, self._on_signal = wake, stop, on_signal
        self._backlog: deque[Message] = deque()
        self._responses: dict[str, tuple[int, dict]] = {}
        self.owner = ""  # the portal's unique name: signals from anyone else are ignored
        self.sender = self.conn.unique_name[1:].replace(".", "_")  # as it appears in request/session paths

    def close(self) -> None:
        self.conn.close()  # the portal closes this connection's sessions with it

    def subscribe(self) -> None:
        """Before any call, so no Response can be missed: the portal's owner changing, GlobalShortcuts
        signals, and every predictable request and session path of this connection."""
        owner_rule = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                               member="NameOwnerChanged", path="/org/freedesktop/DBus")
        owner_rule.add_arg_condition(0, PORTAL_NAME)
        requests, sessions = f"{PORTAL_PATH}/request/{self.sender}", f"{PORTAL_PATH}/session/{self.sender}"
        for rule in (owner_rule,
                     MatchRule(type="signal", interface=SHORTCUTS, path=PORTAL_PATH),
                     MatchRule(type="signal", interface=REQUEST, path_namespace=requests),
                     MatchRule(type="signal", interface=SESSION, path_namespace=sessions)):
            self.call(message_bus.AddMatch(rule))

    def register(self, app_id: str) -> str:
        """The app id first (the Registry must precede any portal call), then the portal's owner and
        GlobalShortcuts' version. Returns a note for a refused app id ("" if fine or no Registry)."""
        note = ""
        try:
            self.call(new_method_call(portal(REGISTRY), "Register", "sa{sv}", (app_id, {})))
        except DBusErrorResponse as e:
            if e.name in _NO_PORTAL:
                raise explain(e) from None
            if e.name not in _NO_INTERFACE:  # an older portal has no Registry; that is fine
                # Said with the refusal it likely causes, not once per retry here.
                note = (f"; the portal refused app id {app_id} ({e.data[0] if e.data else e.name}): "
                        f"is {app_id}.desktop installed? (`vcam setup --service` installs it)")
        try:
            self.owner = self.call(message_bus.GetNameOwner(PORTAL_NAME))[0]
            self.call(new_method_call(portal(PROPERTIES), "Get", "ss", (SHORTCUTS, "version")))
        except DBusErrorResponse as e:
            raise explain(e) from None
        return note

    def request(self, method: str, signature: str, args: tuple, token: str, timeout: float | None,
                check: Callable[[], None], options: dict | None = None) -> tuple[int, dict]:
        """Calls a portal method that answers with a Request, and waits for the Request's Response
        (handling other signals meanwhile; `check` runs before each wait and may raise)."""
        # Predictable since portal 0.9, so subscribe() covered it before the call.
        path = f"{PORTAL_PATH}/request/{self.sender}/{token}"
        body = (*args, {**(options or {}), "handle_token": ("s", token)})
        handle = self.call(new_method_call(portal(SHORTCUTS), method, signature, body))[0]
        if handle != path:  # an old portal: follow the handle it gave
            self.call(message_bus.AddMatch(MatchRule(type="signal", interface=REQUEST, path=handle)))
            path = handle
        deadline = None if timeout is None else time.monotonic() + timeout
        while path not in self._responses:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Retry(f"no answer to {method} within {timeout:g} s")
            self.pump(check, remaining)
        return self._responses.pop(path)

    def pump(self, check: Callable[[], None], timeout: float | None = None) -> None:
        """Runs `check`, then waits up to `timeout` for one message and handles it."""
        check()
        msg = self._backlog.popleft() if self._backlog else self._recv(timeout)
        if msg is not None:
            self._dispatch(msg)

    def call(self, msg: Message, timeout: float = CALL_TIMEOUT_S) -> tuple:
        """A method call whose reply is awaited here; signals that arrive meanwhile wait in the backlog."""
        serial = next(self.conn.outgoing_serial)
        self.conn.send(msg, serial=serial)
        deadline = time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise Stopped
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                member = msg.header.fields.get(HeaderFields.member)
                raise TimeoutError(f"no reply to {member} within {timeout:g} s")
            reply = self._recv(remaining)
            if reply is None:
                continue
            if reply.header.fields.get(HeaderFields.reply_serial) == serial:
                return unwrap_msg(reply)
            if reply.header.message_type == MessageType.signal:
                self._backlog.append(reply)

    def _recv(self, timeout: float | None) -> Message | None:
        """The next message, or None when timeout passes or the wake-up socket is written to."""
        try:
            return self.conn.receive(timeout=0)  # a message already buffered, or data already waiting
        except TimeoutError:
            pass
        ready = select.select([self.conn.sock, self._wake], [], [], timeout)[0]
        if self._wake in ready:
            self._wake.recv(512)
            return None
        if not ready:
            return None
        try:
            return self.conn.receive(timeout=0)
        except TimeoutError:  # only part of a message so far
            return None

    def _dispatch(self, msg: Message) -> None:
        """A Response is kept for request(); the portal leaving raises Retry; the portal's other signals go
        to on_signal; anything else (another client pretending to be the portal, say) is dropped."""
        if msg.header.message_type != MessageType.signal:
            return
        fields = msg.header.fields
        sender = fields.get(HeaderFields.sender)
        if sender == "org.freedesktop.DBus":
            # Only the owner we talk to leaving counts (our own Register may just have started the portal).
            member = fields.get(HeaderFields.member)
            name, old, new = msg.body if member == "NameOwnerChanged" else ("", "", "")
            if name == PORTAL_NAME and self.owner == old != "":
                raise PortalGone("the desktop portal restarted" if new else "the desktop portal went away")
            return
        if not self.owner or sender != self.owner:  # only the portal speaks for the portal
            return
        if (fields.get(HeaderFields.interface), fields.get(HeaderFields.member)) == (REQUEST, "Response"):
            code, results = msg.body
            self._responses[fields.get(HeaderFields.path)] = (int(code), results)
        else:
            self._on_signal(msg)
