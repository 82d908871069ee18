"""A fake xdg-desktop-portal for tests: GlobalShortcuts and the host Registry on a private session bus.

It follows the portal's D-Bus contract strictly (Request objects at the predictable path with a broadcast
Response; CreateSession's Response even comes before the method's reply, so a client that subscribes
late misses it; a session binds once; Register must come before any other portal call; Activated and
friends are sent to the session's owner only) and plays the desktop's part: it remembers, per app id,
the trigger each shortcut got (the "user" may have picked another key than the preferred one), and
like GNOME it refuses BindShortcuts for a connection that has no app id, unless told otherwise.

Run:  python fake_portal.py --address ADDR [--state FILE] [--user-trigger ID=TRIGGER ...] [--no-registry]
      [--no-global-shortcuts] [--refuse-register] [--allow-no-app-id] [--bind-without-list] [--bind-delay S]
It prints "ready" once it owns org.freedesktop.portal.Desktop. Tests drive it through the private
interface io.github.vcam.test.FakePortal on /org/freedesktop/portal/desktop: Press(s id) (Activated then
Deactivated), Activate(s), Deactivate(s), RefuseNextBind(u response), ChangeTrigger(s id, s trigger)
(ShortcutsChanged), CloseSessions(), State() -> s (JSON: what was registered, created and bound).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from jeepney import (
    DBusAddress,
    HeaderFields,
    MatchRule,
    Message,
    MessageType,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

NAME = "org.freedesktop.portal.Desktop"
PATH = "/org/freedesktop/portal/desktop"
SHORTCUTS = "org.freedesktop.portal.GlobalShortcuts"
REGISTRY = "org.freedesktop.host.portal.Registry"
CONTROL = "io.github.vcam.test.FakePortal"
TRIGGER = re.compile(r"((CTRL|ALT|SHIFT|NUM|LOGO)\+)*[A-Za-z0-9_]+")  # the shortcuts spec's grammar
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
INTROSPECTION = f"""<node>
 <interface name="{SHORTCUTS}">
  <method name="CreateSession"><arg type="a{{sv}}" name="options" direction="in"/>
   <arg type="o" name="handle" direction="out"/></method>
  <method name="BindShortcuts"><arg type="o" name="session_handle" direction="in"/>
   <arg type="a(sa{{sv}})" name="shortcuts" direction="in"/>
   <arg type="s" name="parent_window" direction="in"/>
   <arg type="a{{sv}}" name="options" direction="in"/>
   <arg type="o" name="request_handle" direction="out"/></method>
  <method name="ListShortcuts"><arg type="o" name="session_handle" direction="in"/>
   <arg type="a{{sv}}" name="options" direction="in"/>
   <arg type="o" name="request_handle" direction="out"/></method>
  <signal name="Activated"><arg type="o"/><arg type="s"/><arg type="t"/><arg type="a{{sv}}"/></signal>
  <signal name="Deactivated"><arg type="o"/><arg type="s"/><arg type="t"/><arg type="a{{sv}}"/></signal>
  <signal name="ShortcutsChanged"><arg type="o"/><arg type="a(sa{{sv}})"/></signal>
  <property name="version" type="u" access="read"/>
 </interface>
 <interface name="{REGISTRY}">
  <method name="Register"><arg type="s" name="app_id" direction="in"/>
   <arg type="a{{sv}}" name="options" direction="in"/></method>
  <property name="version" type="u" access="read"/>
 </interface>
 <interface name="org.freedesktop.DBus.Properties">
  <method name="Get"><arg type="s" direction="in"/><arg type="s" direction="in"/>
   <arg type="v" direction="out"/></method>
  <method name="GetAll"><arg type="s" direction="in"/><arg type="a{{sv}}" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect"><arg type="s" direction="out"/></method>
 </interface>
</node>"""


class Failure(Exception):
    """A D-Bus error reply: (error name, message)."""


def human(trigger: str) -> str:
    """What a desktop shows for a trigger: "CTRL+ALT+e" -> "Ctrl+Alt+E"."""
    names = {"CTRL": "Ctrl", "ALT": "Alt", "SHIFT": "Shift", "NUM": "Num", "LOGO": "Super"}
    *mods, key = trigger.split("+")
    return "+".join([names[m] for m in mods] + [key.upper() if len(key) == 1 else key])


class FakePortal:
    """The portal's state and its answers to method calls."""

    def __init__(self, conn: DBusConnection, args: argparse.Namespace) -> None:
        self.conn, self.args = conn, args
        self.state_file = Path(args.state) if args.state else None
        self.state: dict = {"registered": [], "create_session": [], "bind": [], "list": [], "errors": [],
                            "remembered": {}}
        if self.state_file and self.state_file.exists():  # the desktop's memory outlives the portal
            self.state.update(json.loads(self.state_file.read_text()))
        self.app_ids: dict[str, str] = {}  # unique name -> registered app id
        self.called: set[str] = set()  # unique names that made a portal call
        self.sessions: dict[str, dict] = {}  # session path -> {"owner", "app_id", "bound", "shortcuts"}
        self.refuse: list[int] = []
        self.later: list[tuple[float, Message]] = []  # Responses held back (a dialog open for a while)

    def save(self) -> None:
        if self.state_file:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=1))
            tmp.replace(self.state_file)

    def signal(self, path: str, interface: str, member: str, signature: str, body: tuple,
               destination: str | None = None) -> None:
        msg = new_signal(DBusAddress(path, interface=interface), member, signature, body)
        if destination:
            msg.header.fields[HeaderFields.destination] = destination
        self.conn.send(msg)

    def response(self, path: str, code: int, results: dict) -> Message:
        return new_signal(DBusAddress(path, interface="org.freedesktop.portal.Request"), "Response", "ua{sv}",
                          (code, results))  # broadcast: only a client that subscribed gets it

    # -- dispatch --------------------------------------------------------------------------------------------
    def handle(self, msg: Message) -> None:
        f = msg.header.fields
        sender, path = f.get(HeaderFields.sender), f.get(HeaderFields.path)
        member = f.get(HeaderFields.member)
        iface = f.get(HeaderFields.interface)
        try:
            method = getattr(self, f"m_{member}", None)
            if method is None or (iface is not None and iface not in self.interfaces(path)):
                raise Failure("org.freedesktop.DBus.Error.UnknownMethod",
                              f"No such method {member!r} in interface {iface!r} at {path}")
            try:
                reply = method(msg, sender, path, *msg.body)
            except (TypeError, ValueError, KeyError, AttributeError) as e:  # wrong arguments
                raise Failure(INVALID_ARGS, f"{member}: {type(e).__name__}: {e}") from None
        except Failure as e:
            if e.args[0] == INVALID_ARGS:  # a client that breaks the contract: the tests look here
                self.state["errors"].append(e.args[1])
                self.save()
            self.conn.send(new_error(msg, e.args[0], "s", (e.args[1],)))
            return
        if reply is not None:
            sig, body, after = reply
            self.conn.send(new_method_return(msg, sig, body))
            for signal in after:
                self.conn.send(signal)

    def interfaces(self, path: str) -> set[str]:
        base = {"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties"}
        if path == PATH:
            base |= {CONTROL} | ({SHORTCUTS} if not self.args.no_global_shortcuts else set()) \
                | ({REGISTRY} if not self.args.no_registry else set())
        elif path in self.sessions:
            base.add("org.freedesktop.portal.Session")
        elif path.startswith(f"{PATH}/request/"):
            base.add("org.freedesktop.portal.Request")
        return base

    def portal_call(self, sender: str) -> None:
        if self.args.no_global_shortcuts:
            raise Failure("org.freedesktop.DBus.Error.UnknownMethod", "No such interface")
        self.called.add(sender)

    # -- standard interfaces ---------------------------------------------------------------------------------
    def m_Introspect(self, msg, sender, path):
        return "s", (INTROSPECTION if path == PATH else "<node/>",), []

    def props(self, interface: str) -> dict:
        if interface == SHORTCUTS and not self.args.no_global_shortcuts:
            return {"version": ("u", 2)}
        if interface == REGISTRY and not self.args.no_registry:
            return {"version": ("u", 1)}
        raise Failure(INVALID_ARGS, f"No such interface {interface!r}")

    def m_Get(self, msg, sender, path, interface, name):
        props = self.props(interface)
        if name not in props:
            raise Failure(INVALID_ARGS, f"No such property {name!r}")
        return "v", (props[name],), []

    def m_GetAll(self, msg, sender, path, interface):
        return "a{sv}", (self.props(interface),), []

    # -- org.freedesktop.host.portal.Registry ----------------------------------------------------------------
    def m_Register(self, msg, sender, path, app_id, options):
        if self.args.no_registry:
            raise Failure("org.freedesktop.DBus.Error.UnknownMethod", "No such interface")
        if self.args.refuse_register:  # what the real one says without the app's .desktop file
            raise Failure("org.freedesktop.portal.Error.Failed",
                          f"Could not register app ID: App info not found for '{app_id}'")
        if sender in self.called or sender in self.app_ids:
            self.state["errors"].append(f"Register({app_id}) after a portal call or twice by {sender}")
            self.save()
            raise Failure("org.freedesktop.portal.Error.Failed",
                          "Connection already associated with an app id")
        self.app_ids[sender] = app_id
        self.state["registered"].append(app_id)
        self.save()
        return "", (), []

    # -- org.freedesktop.portal.GlobalShortcuts --------------------------------------------------------------
    def request_path(self, sender: str, options: dict, kind: str) -> str:
        for key, (sig, _) in options.items():
            if sig != "s":
                raise Failure(INVALID_ARGS, f"option {key!r} must be a string, not {sig!r}")
        token = options.get("handle_token", ("s", f"fake{time.monotonic_ns()}"))[1]
        if not re.fullmatch(r"[A-Za-z0-9_]+", token):
            raise Failure(INVALID_ARGS, f"invalid {kind} token {token!r}")
        return f"{PATH}/{kind}/{sender[1:].replace('.', '_')}/{token}"

    def own_session(self, sender: str, session: str) -> dict:
        s = self.sessions.get(session)
        if s is None or s["owner"] != sender:
            raise Failure("org.freedesktop.DBus.Error.AccessDenied", "Invalid session")
        return s

    def m_CreateSession(self, msg, sender, path, options):
        self.portal_call(sender)
        request = self.request_path(sender, options, "request")
        token = options.get("session_handle_token", ("s", f"fake{time.monotonic_ns()}"))[1]
        session = self.request_path(sender, {"handle_token": ("s", token)}, "session")
        if session in self.sessions:
            raise Failure("org.freedesktop.portal.Error.Failed", "Session already exists")
        self.sessions[session] = {"owner": sender, "app_id": self.app_ids.get(sender, ""), "bound": False,
                                  "shortcuts": {}}
        self.state["create_session"].append({k: v[1] for k, v in options.items()})
        self.save()
        # The Response before the method's reply: legal, and only a client that subscribed first sees it.
        self.conn.send(self.response(request, 0, {"session_handle": ("s", session)}))
        return "o", (request,), []

    def m_BindShortcuts(self, msg, sender, path, session, shortcuts, parent_window, options):
        self.portal_call(sender)
        request = self.request_path(sender, options, "request")
        s = self.own_session(sender, session)
        if s["bound"]:
            raise Failure("org.freedesktop.portal.Error.Failed",
                          "An application can only bind shortcuts once")
        entry = {"sender": sender, "app_id": s["app_id"], "session": session, "shortcuts": {}}
        for sid, opts in shortcuts:
            if not sid or "description" not in opts or not isinstance(opts["description"][1], str):
                raise Failure(INVALID_ARGS, f"shortcut {sid!r}: needs an id and a string description")
            trigger = opts.get("preferred_trigger", ("s", None))
            if trigger[0] != "s" or (trigger[1] is not None and not TRIGGER.fullmatch(trigger[1])):
                raise Failure(INVALID_ARGS,
                              f"shortcut {sid!r}: preferred_trigger {trigger[1]!r} is not a trigger")
            entry["shortcuts"][sid] = {"description": opts["description"][1], "preferred_trigger": trigger[1]}
        self.state["bind"].append(entry)
        s["bound"] = True
        if self.refuse:
            code, results = self.refuse.pop(0), {}
        elif not s["app_id"] and not self.args.allow_no_app_id:
            code, results = 2, {}  # GNOME: no app id, no shortcuts
        else:
            remembered = self.state["remembered"].setdefault(s["app_id"], {})
            # Known ones keep the user's choice, new ones get asked.
            for sid, opts in entry["shortcuts"].items():
                if sid not in remembered:
                    remembered[sid] = self.args.user_trigger.get(sid) or opts["preferred_trigger"] or "none"
                s["shortcuts"][sid] = {"description": opts["description"], "trigger": remembered[sid]}
            code = 0
            results = {} if self.args.bind_without_list else {"shortcuts": ("a(sa{sv})", self.listing(s))}
        self.save()
        response = self.response(request, code, results)
        if self.args.bind_delay:  # the dialog stays open a while
            self.later.append((time.monotonic() + self.args.bind_delay, response))
            return "o", (request,), []
        return "o", (request,), [response]

    def listing(self, s: dict) -> list:
        return [(sid, {"description": ("s", v["description"]),
                       "trigger_description": ("s", human(v["trigger"]))})
                for sid, v in s["shortcuts"].items()]

    def m_ListShortcuts(self, msg, sender, path, session, options):
        self.portal_call(sender)
        request = self.request_path(sender, options, "request")
        s = self.own_session(sender, session)
        self.state["list"].append(session)
        return "o", (request,), [self.response(request, 0, {"shortcuts": ("a(sa{sv})", self.listing(s))})]

    def m_Close(self, msg, sender, path):  # Session.Close and Request.Close
        if path in self.sessions:
            self.own_session(sender, path)
            del self.sessions[path]
        return "", (), []

    # -- the test's controls ---------------------------------------------------------------------------------
    def emit(self, member: str, sid: str) -> None:
        for path, s in self.sessions.items():
            if sid in s["shortcuts"]:
                when = time.monotonic_ns() // 1000000
                self.signal(PATH, SHORTCUTS, member, "osta{sv}", (path, sid, when, {}),
                            destination=s["owner"])

    def m_Activate(self, msg, sender, path, sid):
        self.emit("Activated", sid)
        return "", (), []

    def m_Deactivate(self, msg, sender, path, sid):
        self.emit("Deactivated", sid)
        return "", (), []

    def m_Press(self, msg, sender, path, sid):
        self.emit("Activated", sid)
        self.emit("Deactivated", sid)
        return "", (), []

    def m_RefuseNextBind(self, msg, sender, path, code):
        self.refuse.append(code)
        return "", (), []

    def m_ChangeTrigger(self, msg, sender, path, sid, trigger):
        for s in self.sessions.values():
            if sid in s["shortcuts"]:
                remembered = self.state["remembered"].setdefault(s["app_id"], {})
                s["shortcuts"][sid]["trigger"] = remembered[sid] = trigger
                self.save()
                self.signal(PATH, SHORTCUTS, "ShortcutsChanged", "oa(sa{sv})",
                            (next(p for p, v in self.sessions.items() if v is s), self.listing(s)),
                            s["owner"])
        return "", (), []

    def m_CloseSessions(self, msg, sender, path):
        for spath, s in list(self.sessions.items()):
            self.signal(spath, "org.freedesktop.portal.Session", "Closed", "a{sv}", ({},), s["owner"])
            del self.sessions[spath]
        return "", (), []

    def m_State(self, msg, sender, path):
        live = {p: {"owner": s["owner"], "app_id": s["app_id"], "bound": s["bound"]}
                for p, s in self.sessions.items()}
        return "s", (json.dumps({**self.state, "sessions": live}),), []

    def gone(self, name: str) -> None:
        """A client left the bus: its sessions close, and so does its registration."""
        self.app_ids.pop(name, None)
        self.called.discard(name)
        for path in [p for p, s in self.sessions.items() if s["owner"] == name]:
            del self.sessions[path]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="the bus address (dbus-daemon --print-address)")
    p.add_argument("--state", help="JSON file: what happened, and the triggers the 'desktop' remembers")
    p.add_argument("--user-trigger", action="append", default=[], metavar="ID=TRIGGER",
                   help="the trigger the 'user' picks in the dialog for ID instead of the preferred one")
    p.add_argument("--no-registry", action="store_true", help="a portal older than the host Registry")
    p.add_argument("--no-global-shortcuts", action="store_true",
                   help="a portal without GlobalShortcuts (Sway)")
    p.add_argument("--refuse-register", action="store_true", help="Register fails (no .desktop file)")
    p.add_argument("--allow-no-app-id", action="store_true", help="bind for clients without an app id (KDE)")
    p.add_argument("--bind-without-list", action="store_true", help="Bind's Response has no shortcuts list")
    p.add_argument("--bind-delay", type=float, default=0.0, help="seconds the 'dialog' stays open")
    args = p.parse_args(argv)
    args.user_trigger = dict(item.split("=", 1) for item in args.user_trigger)
    conn = open_dbus_connection(args.address)
    portal = FakePortal(conn, args)
    rule = MatchRule(type="signal", sender="org.freedesktop.DBus", member="NameOwnerChanged")
    conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4), timeout=5)  # 4: do not queue
    if reply.body != (1,):
        print(f"cannot own {NAME}: {reply.body}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    while True:
        timeout = min((t for t, _ in portal.later), default=None)
        try:
            msg = conn.receive(timeout=None if timeout is None else max(0.0, timeout - time.monotonic()))
        except TimeoutError:
            msg = None
        except (ConnectionError, OSError):
            return 0  # the bus went away
        now = time.monotonic()
        for item in [x for x in portal.later if x[0] <= now]:
            portal.later.remove(item)
            conn.send(item[1])
        if msg is None:
            continue
        if msg.header.message_type == MessageType.method_call:
            portal.handle(msg)
        elif msg.header.fields.get(HeaderFields.member) == "NameOwnerChanged" and not msg.body[2]:
            portal.gone(msg.body[0])


if __name__ == "__main__":
    sys.exit(main())
