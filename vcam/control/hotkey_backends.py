"""Which hotkey backend runs ([hotkeys] backend): the desktop portal's GlobalShortcuts (Wayland), pynput on
X11, or none; and switching between them when a config reload changes [hotkeys] backend or enabled.

"auto" picks the portal in a Wayland session whose portal offers GlobalShortcuts, pynput otherwise (it
waits for an X display by itself), and in a Wayland session without them (Sway, ...) logs one line on
how to bind `vcam ctl` to a desktop shortcut instead. Every backend runs actions through one dispatch
function: the daemon passes `controller.run`, like every other control path.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from vcam.config import HotkeySettings
from vcam.control.hotkeys import HotkeyService, bindings
from vcam.control.portal import PortalHotkeys
from vcam.control.portal_bus import probe_portal

log = logging.getLogger(__name__)

NO_BACKEND_HINT = ("bind `vcam ctl ACTION` to desktop shortcuts instead (Sway: `bindsym Ctrl+Alt+e exec "
                   "vcam ctl next-effect`; docs/control.md), or set [hotkeys] backend = \"x11\" for keys in "
                   "XWayland windows only")


def portal_actions(settings: HotkeySettings) -> dict[str, str]:
    """{action: combination}: what the portal backend binds (the inverse of hotkeys.bindings)."""
    return {action: combo for combo, action in bindings(settings).items()}


def choose_backend(settings: HotkeySettings, environ: Mapping[str, str] | None = None,
                   probe: Callable[[], tuple[str, str]] = probe_portal) -> tuple[str, str]:
    """("portal" | "x11" | "off" | "none", why) for these settings in this session."""
    environ = os.environ if environ is None else environ
    if not settings.enabled:
        return "off", "[hotkeys] enabled = false"
    if settings.backend != "auto":
        return settings.backend, f'[hotkeys] backend = "{settings.backend}"'
    if not environ.get("WAYLAND_DISPLAY"):
        return "x11", "auto: not a Wayland session (WAYLAND_DISPLAY unset)"
    state, reason = probe()
    if state == "ok":
        return "portal", f"auto: Wayland session, the desktop portal has {reason}"
    if state == "unknown":  # a portal still starting at login: the backend keeps trying and says so
        return "portal", f"auto: Wayland session; the desktop portal is not answering yet ({reason})"
    return "none", f"auto: Wayland session, but {reason}"


class Hotkeys:
    """The hotkey backend [hotkeys] asks for, kept up to date across config reloads."""

    def __init__(self, settings: HotkeySettings, dispatch: Callable[[str], object], *,
                 environ: Mapping[str, str] | None = None,
                 probe: Callable[[], tuple[str, str]] = probe_portal) -> None:
        self._settings = settings
        self._dispatch = dispatch
        self._environ, self._probe = environ, probe
        self._lock = threading.Lock()
        self._service: HotkeyService | PortalHotkeys | None = None
        self.backend, self.reason = "starting", ""

    def start(self) -> Hotkeys:
        with self._lock:
            settings = self._settings
            self._open(settings, *choose_backend(settings, self._environ, self._probe))
        return self

    def update(self, settings: HotkeySettings) -> None:
        """A config reload: new combinations go to the running backend; a changed `backend` or `enabled`
        that leads to another backend stops this one and starts that one, at once."""
        with self._lock:
            old, self._settings = self._settings, settings
            if (settings.enabled, settings.backend) != (old.enabled, old.backend):
                backend, reason = choose_backend(settings, self._environ, self._probe)
                if backend != self.backend:
                    was = self.backend
                    self._close()
                    self._open(settings, backend, reason)
                    log.info("hotkeys: backend %s -> %s after the config reload", was, backend)
                    return
                self.reason = reason  # the same backend ("auto" found what is now asked for): keep it
            if isinstance(self._service, HotkeyService):
                self._service.update(settings)
            elif isinstance(self._service, PortalHotkeys):
                self._service.update(portal_actions(settings))

    def stop(self) -> None:
        with self._lock:
            self._close()

    def status(self) -> dict:
        """The "hotkeys" line of `vcam ctl status`, which names the backend, and `hotkeys_backend`."""
        service = self._service
        if service is not None:
            result = service.status()
        elif self.backend == "none":
            result = {"hotkeys": f"none: {self.reason}; {NO_BACKEND_HINT}"}
        else:
            result = {"hotkeys": f"{self.backend} ({self.reason})"}
        return {**result, "hotkeys_backend": self.backend}

    def _open(self, settings: HotkeySettings, backend: str, reason: str) -> None:
        self.backend, self.reason = backend, reason
        if self.backend == "portal":
            log.info("hotkeys through the desktop portal (%s)", self.reason)
            self._service = PortalHotkeys(portal_actions(settings), self._dispatch).start()
        elif self.backend == "x11":
            log.info("hotkeys through X11 (%s)", self.reason)
            self._service = HotkeyService(settings, self._dispatch).start()
        elif self.backend == "none":  # the one line a user without global shortcuts gets
            log.warning("no global hotkeys: %s; %s", self.reason, NO_BACKEND_HINT)
        else:
            log.info("hotkeys off (%s)", self.reason)

    def _close(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.stop()

    def __repr__(self) -> str:
        return f"hotkeys({self.backend})"
