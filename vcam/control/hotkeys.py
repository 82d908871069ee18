"""Global hotkeys (pynput, X11) that run the named actions and outlive a display that is missing or goes away.

pynput connects to X when `pynput.keyboard` is imported, so without a display hotkeys are off with one
log line while a supervisor thread retries. Actions run on their own thread, so a slow switch never holds
up the X event stream. Only the configured combinations are ever logged; no other keystroke is recorded.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from vcam.config import HOTKEY_OPTIONS, HotkeySettings
from vcam.control.key_actions import KeyActions

log = logging.getLogger(__name__)

RETRY_S = 5.0  # how often to look for a display while hotkeys are waiting for one


def bindings(settings: HotkeySettings) -> dict[str, str]:
    """{pynput combination: action name}; a config key next_background binds action next-background.
    Empty with `enabled = false` or `backend = "off"`."""
    if not settings.enabled or settings.backend == "off":
        return {}
    result = {}
    for f in dataclasses.fields(settings):
        combo = getattr(settings, f.name)
        if f.name not in HOTKEY_OPTIONS and combo:
            result[combo] = f.name.replace("_", "-")
    return result


def find_display() -> str | None:
    """$DISPLAY, else the one the session exported to the systemd user manager (service started early)."""
    display = os.environ.get("DISPLAY")
    if display:
        return display
    systemctl = shutil.which("systemctl")
    if not systemctl:
        return None
    try:
        out = subprocess.run([systemctl, "--user", "show-environment"], capture_output=True, text=True,
                             timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if env.get("DISPLAY"):
        os.environ["DISPLAY"] = env["DISPLAY"]
        if env.get("XAUTHORITY") and not os.environ.get("XAUTHORITY"):
            os.environ["XAUTHORITY"] = env["XAUTHORITY"]
        return env["DISPLAY"]
    return None


class HotkeyService:
    """Keeps a pynput GlobalHotKeys listener alive for the configured combinations."""

    def __init__(self, settings: HotkeySettings, dispatch: Callable[[str], object]) -> None:
        self._dispatch = dispatch
        self._bindings = bindings(settings)
        self._changed = True
        self._listener = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._runner = KeyActions(dispatch, log, "hotkey action")
        self._thread: threading.Thread | None = None
        self.state = "starting"
        self.fired = 0

    # -- public ----------------------------------------------------------------------------------------------
    def start(self) -> HotkeyService:
        self._thread = threading.Thread(target=self._supervise, name="vcam-hotkeys", daemon=True)
        self._thread.start()
        return self

    def update(self, settings: HotkeySettings) -> None:
        """New combinations (config reload): the listener is rebuilt."""
        new = bindings(settings)
        with self._lock:
            if new != self._bindings:
                self._bindings, self._changed = new, True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._stop_listener()
        self._runner.stop()

    def status(self) -> dict:
        return {"hotkeys": self.state}

    def wait_active(self, timeout: float) -> bool:
        """True once the listener is receiving keys (for tests and `vcam run` start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state.startswith("active"):
                return True
            self._stop.wait(0.05)
        return False

    # -- supervisor thread -----------------------------------------------------------------------------------
    def _set_state(self, state: str, level: int = logging.INFO) -> None:
        if state != self.state:  # one line per change, not one per retry
            self.state = state
            log.log(level, "hotkeys %s", state)

    def _fire(self, combo: str, action: str) -> None:
        # Runs on pynput's thread: hand off at once so the X event stream never waits for an action.
        self.fired += 1
        log.info("hotkey %s: %s", combo, action)
        self._runner.submit(action)

    def _stop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and listener.is_alive() and listener.ready:
            try:
                listener.stop()
            except Exception:  # the X server may already be gone
                log.debug("hotkey listener stop failed", exc_info=True)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                changed, self._changed = self._changed, False
                combos = dict(self._bindings)
            if changed:
                self._stop_listener()
            if self._listener is not None and not self._listener.is_alive():
                error = self._listener.error
                self._listener = None
                self._set_state(f"lost the X display ({error}); recreating the listener", logging.WARNING)
            if self._listener is None:
                if not combos:
                    self._set_state("off (none configured or [hotkeys] enabled = false)")
                    self._wait(None)
                    continue
                if not self._create(combos):
                    self._wait(RETRY_S)
                    continue
            self._wait(0.5)
        self._stop_listener()

    def _wait(self, timeout: float | None) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def _create(self, combos: dict[str, str]) -> bool:
        display = find_display()
        hint = "on Wayland, bind `vcam ctl ACTION` to desktop shortcuts (docs/control.md)"
        if not display:
            self._set_state(f"disabled: no X display (DISPLAY unset); retrying every {RETRY_S:g} s; {hint}",
                            logging.WARNING)
            return False
        try:
            keyboard = importlib.import_module("pynput.keyboard")
        except Exception as e:  # pynput's X backend connects at import: no server, no auth, ...
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            inner = re.search(r"failed to acquire X connection: (.*?)['\"], ", reason)
            reason = inner.group(1) if inner else reason
            self._set_state(f"disabled: cannot open X display {display} ({reason}); retrying every "
                            f"{RETRY_S:g} s; {hint}", logging.WARNING)
            return False
        try:
            listener = _listener_class(keyboard)(
                {combo: (lambda c=combo, a=action: self._fire(c, a)) for combo, action in combos.items()})
        except ValueError as e:  # validated at config load; only a key the X keymap lacks gets here
            self._set_state(f"disabled: invalid hotkey {e}", logging.ERROR)
            return False
        listener.start()
        deadline = time.monotonic() + 5.0
        while not listener.ready and listener.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not listener.ready:
            # Never call stop() on a listener that did not get ready: pynput's stop() waits for ready.
            self._set_state(f"disabled: cannot open X display {display} ({listener.error or 'no answer'}); "
                            f"retrying every {RETRY_S:g} s; {hint}", logging.WARNING)
            return False
        self._listener = listener
        self._set_state(f"active on {display}: " + ", ".join(f"{c} {a}" for c, a in combos.items()))
        return True


_listener_classes: dict = {}


def _listener_class(keyboard):
    """GlobalHotKeys whose thread ends quietly (keeping the error) when the X connection fails or drops;
    the supervisor sees the dead thread and recreates it, instead of a traceback on stderr."""
    cls = _listener_classes.get(keyboard)
    if cls is None:
        class Listener(keyboard.GlobalHotKeys):
            error: str = ""

            @property
            def ready(self) -> bool:
                return bool(getattr(self, "_ready", False))

            def run(self) -> None:
                try:
                    super().run()
                except Exception as e:  # Xlib: connection refused / closed by server
                    self.error = str(e).splitlines()[0] if str(e) else type(e).__name__

        cls = _listener_classes[keyboard] = Listener
    return cls
