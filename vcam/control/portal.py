"""Global hotkeys through the XDG desktop portal (org.freedesktop.portal.GlobalShortcuts), for Wayland.

Under Wayland no client sees other windows' keys (pynput only sees XWayland windows), so vcam registers
its actions with the portal: the desktop asks the user once (who may pick other keys) and then sends
`Activated` on the session bus. One daemon thread owns the connection, actions run on another; whatever
the portal does (refuse, vanish, restart) costs one log line and a retry with backoff, never the daemon.
"""
from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from jeepney import HeaderFields, Message
from jeepney.wrappers import DBusErrorResponse

from vcam.control.key_actions import KeyActions
from vcam.control.portal_bus import (
    APP_ID,
    SESSION,
    SHORTCUTS,
    PortalGone,
    PortalLink,
    Retry,
    Stopped,
    Unavailable,
    portal_status,
)
from vcam.control.portal_triggers import portal_shortcuts, to_portal_trigger

__all__ = ["PortalHotkeys", "portal_status", "to_portal_trigger", "APP_ID"]

log = logging.getLogger("vcam.control.portal")

RETRY_MIN_S = 1.0  # first retry after a refusal or a lost portal; doubles up to RETRY_MAX_S
RETRY_MAX_S = 30.0
CREATE_TIMEOUT_S = 30.0  # CreateSession's Response: no dialog is involved, so no answer means trouble


class _Declined(Exception):
    """The user cancelled the desktop's dialog: asking again at once would nag, so wait for other actions."""


class _Rebind(Exception):
    """The set of actions changed: that needs a new session, since a session can bind only once."""


class PortalHotkeys:
    """Keeps the configured actions registered with the portal's GlobalShortcuts and runs them on Activated.

    state: "starting", "registering", "waiting" (the desktop's dialog is open), "active", "retrying",
    "unavailable", "declined" (the user cancelled the dialog), "off" (no bindings) or "stopped".
    """

    def __init__(self, bindings: dict[str, str], dispatch: Callable[[str], Any], *,
                 app_id: str = APP_ID, token: str = "vcam", bus_address: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", token):
            raise ValueError(f"token {token!r}: must be a D-Bus object path element ([A-Za-z0-9_])")
        self._bindings = dict(bindings)  # action -> combination text
        self._dispatch = dispatch
        self.app_id, self.token, self._bus_address = app_id, token, bus_address
        self._lock = threading.Lock()
        self._changed = False
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()  # a closed socket can't alias a reused fd
        self._wake_w.setblocking(False)
        self._runner = KeyActions(dispatch, log, "portal shortcut")
        self._thread: threading.Thread | None = None
        self._session = ""
        self._actions: dict[str, str] = {}  # what the current session bound: action -> combination
        self._declined: set[str] | None = None
        self._unconverted: dict[str, str] = {}  # combinations already said to have no portal trigger
        self.state, self.reason, self.fired = "starting", "", 0
        self._trouble: tuple[str, str] | None = None  # the last failure logged
        self._gone = False  # the portal went away (said once): finding no portal until it is back is no news
        self.shortcuts: dict[str, str] = {}  # action -> the trigger the desktop reports (the user's choice)

    # -- public -------------------------------------------------------------------------------------------
    def start(self) -> PortalHotkeys:
        self._thread = threading.Thread(target=self._run, name="vcam-portal-hotkeys", daemon=True)
        self._thread.start()
        return self

    def update(self, bindings: dict[str, str]) -> None:
        """New bindings (config reload); the desktop is asked again only if the set of actions changed.
        The same bindings change nothing (and do not wake the thread mid-backoff)."""
        with self._lock:
            if bindings == self._bindings:
                return
            self._bindings, self._changed = dict(bindings), True
        self._poke()

    def stop(self) -> None:
        """Ends the thread within a wake-up (the connection's sessions close with it)."""
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=0.45)
        self._runner.stop()

    def status(self) -> dict:
        line = f"portal {self.state}" + (f": {self.reason}" if self.reason else "")
        return {"hotkeys": line, "hotkeys_state": self.state, "hotkeys_shortcuts": dict(self.shortcuts)}

    def wait_active(self, timeout: float) -> bool:
        """True once the desktop has bound the shortcuts (for tests and start-up)."""
        deadline = time.monotonic() + timeout
        while self.state != "active" and time.monotonic() < deadline:
            self._stop.wait(0.02)
        return self.state == "active"

    # -- the thread -------------------------------------------------------------------------------------
    def _poke(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (already woken) or closed (thread gone)
            pass

    def _set_state(self, state: str, reason: str = "", level: int = logging.INFO, *,
                   quiet: bool = False) -> None:
        """One log line per change; while retrying, the steps of each attempt and the same trouble again are
        debug only, so a portal that keeps refusing costs one line, not three every 30 s."""
        transient = state in ("registering", "waiting")
        if (state, reason) != (self.state, self.reason):
            quiet = quiet or ((self._trouble is not None) if transient else (state, reason) == self._trouble)
            log.log(logging.DEBUG if quiet else level, "portal hotkeys %s%s", state,
                    f": {reason}" if reason else "")
        self.state, self.reason = state, reason
        if not transient:
            self._trouble = (state, reason) if level >= logging.WARNING else None

    def _run(self) -> None:
        delay = RETRY_MIN_S
        try:
            while not self._stop.is_set():
                with self._lock:
                    actions, self._changed = dict(self._bindings), False
                if not actions:
                    self._set_state("off", "no hotkeys configured")
                    self._sleep(None)
                    continue
                if self._declined == set(actions):
                    self._sleep(None)
                    continue
                self._declined = None
                try:
                    self._serve(actions)
                except Stopped:
                    break
                except _Rebind:
                    delay = RETRY_MIN_S
                    continue
                except _Declined as e:
                    self._declined = set(actions)
                    self._set_state("declined", str(e), logging.WARNING)
                    continue
                except Unavailable as e:
                    self._set_state("unavailable", f"{e}; retrying", logging.WARNING, quiet=self._gone)
                except Retry as e:
                    self._gone = self._gone or isinstance(e, PortalGone)
                    self._set_state("retrying", str(e), logging.WARNING)
                except (OSError, DBusErrorResponse, TimeoutError, ValueError) as e:  # the bus broke mid-way
                    self._set_state("retrying", f"session bus: {e}", logging.WARNING)
                except Exception as e:  # a bug here must not take the daemon down
                    reason = f"{type(e).__name__}: {e}"
                    if ("retrying", reason) != self._trouble:  # the traceback once, not every 30 s
                        log.exception("portal hotkeys failed")
                    self._set_state("retrying", reason, logging.WARNING)
                if self.state == "retrying" and self.shortcuts:  # was active: the portal restarted
                    delay = RETRY_MIN_S
                self.shortcuts = {}
                self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        finally:
            self.state = "stopped"
            self._wake_r.close()
            self._wake_w.close()

    def _sleep(self, timeout: float | None) -> None:
        """Waits for timeout, stop() or update()."""
        if not self._stop.is_set() and not self._changed:
            if select.select([self._wake_r], [], [], timeout)[0]:
                self._wake_r.recv(512)

    def _serve(self, actions: dict[str, str]) -> None:
        """One connection: register, create a session, bind, then handle signals until something ends it."""
        link = PortalLink(self._bus_address, self._wake_r, self._stop, self._on_signal)
        self._session = ""
        self._actions, self.shortcuts = dict(actions), {}
        try:
            link.subscribe()
            self._set_state("registering", "")
            app_note = link.register(self.app_id)
            code, results = link.request("CreateSession", "a{sv}", (), f"{self.token}_create",
                                         CREATE_TIMEOUT_S, self._check_flags,
                                         {"session_handle_token": ("s", self.token)})
            if code != 0:
                raise Retry(f"the portal refused to create a session (response {code})")
            self._session = str(results.get("session_handle", ("s", ""))[1])
            self._set_state("waiting", "confirm vcam's shortcuts in the desktop's dialog")
            code, results = link.request("BindShortcuts", "oa(sa{sv})sa{sv}",
                                         (self._session, self._shortcuts(actions), ""), f"{self.token}_bind",
                                         None, self._check_flags)
            if code == 1:
                raise _Declined("the shortcuts dialog was cancelled; vcam asks again when it restarts or the "
                                "[hotkeys] actions change")
            if code != 0:
                raise Retry(f"the desktop refused the shortcuts (response {code}){app_note}")
            if "shortcuts" not in results:  # some backends answer without the list: ask for it
                code, results = link.request("ListShortcuts", "oa{sv}", (self._session,),
                                             f"{self.token}_list", CREATE_TIMEOUT_S, self._check_flags)
            self._take_shortcuts(results.get("shortcuts", ("a(sa{sv})", []))[1])
            missing = sorted(set(actions) - set(self.shortcuts))  # the user may untick some in the dialog
            self._gone = False
            self._set_state("active", ", ".join(f"{a} {t}" for a, t in sorted(self.shortcuts.items()))
                            + (f" (not bound by the desktop: {', '.join(missing)})" if missing else ""))
            while True:
                link.pump(self._check_flags)
        finally:
            link.close()

    def _shortcuts(self, actions: dict[str, str]) -> list:
        """BindShortcuts' list; a combination without a trigger is said once, not at every retry."""
        shortcuts, unconverted = portal_shortcuts(actions)
        for action, why in unconverted.items():
            if self._unconverted.get(action) != why:
                log.warning("%s: no preferred key for the portal (%s); pick one in the desktop's dialog",
                            action, why)
        self._unconverted = unconverted
        return shortcuts

    def _check_flags(self) -> None:
        if self._stop.is_set():
            raise Stopped
        if self._changed:
            with self._lock:
                self._changed, actions = False, dict(self._bindings)
            if set(actions) != set(self._actions):
                raise _Rebind
            if actions != self._actions:
                self._actions = actions
                log.info("portal hotkeys: changed keys apply only to actions the desktop has not seen yet; "
                         "change them in the desktop's keyboard shortcut settings")

    def _on_signal(self, msg: Message) -> None:
        """One of the portal's signals: a shortcut pressed, shortcuts changed, or the session closed."""
        fields = msg.header.fields
        interface, member = fields.get(HeaderFields.interface), fields.get(HeaderFields.member)
        if (interface, member) == (SESSION, "Closed"):
            if fields.get(HeaderFields.path) == self._session:
                raise Retry("the desktop closed vcam's shortcuts session")
        elif interface == SHORTCUTS and msg.body and msg.body[0] == self._session and self._session:
            if member == "Activated" and msg.body[1] in self._actions:
                action = msg.body[1]
                self.fired += 1
                log.info("portal shortcut %s", action)
                self._runner.submit(action)
            elif member == "ShortcutsChanged":
                self._take_shortcuts(msg.body[1])
                log.info("the desktop changed vcam's shortcuts: %s",
                         ", ".join(f"{a} {t}" for a, t in sorted(self.shortcuts.items())))
            # Deactivated (the keys released): nothing to do, the action ran on Activated.

    def _take_shortcuts(self, shortcuts: list) -> None:
        self.shortcuts = {sid: str(opts.get("trigger_description", ("s", ""))[1]) for sid, opts in shortcuts
                          if sid in self._actions}

