"""Config hot reload, so a config change reaches the stream without restarting it, and a broken
config never replaces a working one.

SIGHUP, `vcam ctl reload` and saving the file (watched with inotify) all end in the `reload` action,
which calls `reload_settings`: look changes are one LiveState swap, camera or output changes go to
`pipeline.reconfigure`, which reopens only that stage.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from inotify_simple import INotify, flags

from vcam.compositing.backgrounds import Background
from vcam.compositing.effects import takes_background
from vcam.compositing.look import Look, look_from_settings
from vcam.config import Settings, user_config_path
from vcam.control.catalog import ActionError
from vcam.control.library import BackgroundLibrary, Switch
from vcam.control.signals import SignalInbox
from vcam.errors import VcamError
from vcam.live.state import LiveState

log = logging.getLogger(__name__)


class Reconfigurable(Protocol):
    """The pipeline, which reopens only the stages whose settings changed."""

    def reconfigure(self, settings: Settings) -> None: ...


class ReloadTarget(Protocol):
    """What a reload changes (an actions.Controller)."""

    settings: Settings
    library: BackgroundLibrary
    reload_listeners: list[Callable[[Settings], None]]
    lock: threading.RLock
    reload_lock: threading.Lock

    @property
    def pipeline(self) -> Reconfigurable: ...

    def load_settings(self) -> Settings: ...

    def frame_size(self) -> tuple[int, int]: ...

    def change(self, fn: Callable[[LiveState], LiveState]) -> LiveState: ...

    def wait(self, job) -> Switch: ...


class ReloadRunner(Protocol):
    """Where SIGHUP and the watcher send their reload (an actions.Controller)."""

    config_path: str | None

    def run(self, name: str) -> object: ...


def _effect_background(controller: ReloadTarget, new: Settings) -> Background | None:
    """The new [effect] background, loaded by the library's loader (so within its deadline), or None."""
    eff = new.effect
    if not (eff.configured_background and takes_background(eff.name)):
        return None
    return controller.wait(controller.library.load(eff.configured_background)).background


def _rejected(e: VcamError, what: str, background: Background | None,
              library: BackgroundLibrary | None) -> ActionError:
    if background is not None:
        background.close()
    if library is not None:
        library.close("the reload was rejected")
    log.error("config reload%s, keeping the running config: %s", what, e)
    return ActionError(f"config rejected, running config kept: {e}")


def reload_settings(controller: ReloadTarget) -> str | None:
    """Load the config again and apply it to `controller`; ActionError if it is rejected.

    Files are read and backgrounds loaded before the controller's lock is taken; the settings are
    committed last, so a reload that fails half-way is tried again in full by the next one. Returns the
    background effect still to be shown from the library (one with no [effect] background), or None."""
    with controller.reload_lock:
        old = controller.settings
        look: Look | None = None
        background: Background | None = None
        library: BackgroundLibrary | None = None
        try:
            new = controller.load_settings()
            if new.effect != old.effect:
                background = _effect_background(controller, new)
                look = look_from_settings(new, background=background)
            if new.backgrounds != old.backgrounds:  # scanned here, outside the lock (a big folder is slow)
                library = BackgroundLibrary(new.backgrounds.paths, controller.frame_size)
        except VcamError as e:
            raise _rejected(e, " rejected", background, library) from None
        with controller.lock:
            try:
                controller.pipeline.reconfigure(new)
            except VcamError as e:
                raise _rejected(e, ": the pipeline refused it", background, library) from None
            if library is not None:
                old_library, controller.library = controller.library, library
                old_library.close("the library was reloaded")  # the background on screen stays open
            _apply_look(controller, old, new, look)
            for listener in list(controller.reload_listeners):
                try:
                    listener(new)
                except Exception:
                    log.exception("config reload: a listener failed (the rest of the config is applied)")
            controller.settings = new
    log.info("config reloaded from %s", new.source_files[-1])
    if look is not None and takes_background(look.effect) and look.background is None:
        return look.effect
    return None


def _apply_look(controller: ReloadTarget, old: Settings, new: Settings, look: Look | None) -> None:
    """The new look, matte and mirror in one LiveState swap; the replaced background is retired."""
    replaced = []

    def apply(state):
        changes = {}
        current = state.look
        if look is not None:
            if takes_background(look.effect) and look.background is None:
                # Its background comes from the library (set_effect, after this): keep what is on screen
                # until then rather than flashing the compositor's white default.
                current = look.with_changes(effect=current.effect, background=current.background)
            else:
                replaced.append(current.background)
                current = look
        if new.matte != old.matte:
            current = current.with_changes(matte=new.matte)
        if current is not state.look:
            changes["look"] = current
        if new.output.mirror != old.output.mirror:
            changes["mirror"] = new.output.mirror
        return state.with_changes(**changes) if changes else state

    controller.change(apply)
    for bg in replaced:
        controller.library.retire(bg)


def reload_logged(controller: ReloadRunner) -> None:
    """Reload from a signal or the watcher: no one to reply to, so the outcome goes to the log only."""
    try:
        controller.run("reload")
    except VcamError:
        pass  # already logged with the reason
    except Exception:
        log.exception("config reload failed")


class SighupReload:
    """SIGHUP reloads the config, on a thread of its own: a reload can wait seconds for a background, and
    the main loop that receives the signal (SignalInbox) must go on feeding systemd's watchdog. stop()
    gives SIGHUP back its old handler."""

    def __init__(self, controller: ReloadRunner, signals: SignalInbox) -> None:
        self._signals = signals
        signals.listen(signal.SIGHUP, lambda: threading.Thread(
            target=reload_logged, args=(controller,), name="vcam-sighup-reload", daemon=True).start())

    def stop(self) -> None:
        self._signals.forget(signal.SIGHUP)

    def __repr__(self) -> str:
        return "sighup"


class ConfigWatcher:
    """Reload when the config file is saved (inotify on its folder: editors save by rename).

    If the folder does not exist yet (no ~/.config/vcam when vcam starts), the nearest existing parent
    is watched instead, and the watch moves down as the folders appear, so a config created later is
    applied like a saved one."""

    DEBOUNCE_MS = 300
    # MODIFY too: a file written in several writes is reloaded once it has been quiet for DEBOUNCE_MS, not
    # half-written at its CREATE
    FILE_MASK = flags.CLOSE_WRITE | flags.MOVED_TO | flags.CREATE | flags.MODIFY
    DIR_MASK = flags.CREATE | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF

    def __init__(self, controller: ReloadRunner) -> None:
        self.controller = controller
        path = Path(controller.config_path) if controller.config_path else user_config_path()
        self.path = path.expanduser().absolute()
        self._stop = threading.Event()
        self._inotify = INotify()
        # stop() writes here: the thread waits on both, so it wakes at once (no polling while idle)
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._wd: int | None = None
        self.watched: Path | None = None  # the folder watched now: the config's, or a parent still waiting
        try:
            self._watch_nearest()
            self._watching = True
        except OSError as e:
            log.info("config watch: cannot watch %s (%s); use SIGHUP or `vcam ctl reload`", self.path.parent,
                     e.strerror or e)
            self._watching = False

    def _watch_nearest(self) -> bool:
        """Watch the config's folder, or its nearest existing parent; True if it is the config's folder."""
        target = self.path.parent
        folder = target
        while not folder.is_dir() and folder.parent != folder:
            folder = folder.parent
        if folder == self.watched and self._wd is not None:
            return folder == target
        if self._wd is not None:
            try:
                self._inotify.rm_watch(self._wd)
            except OSError:
                pass  # already gone with its folder
            self._wd = None
        mask = self.FILE_MASK if folder == target else self.DIR_MASK
        self._wd = self._inotify.add_watch(str(folder), mask | flags.DELETE_SELF | flags.MOVE_SELF)
        self.watched = folder
        if folder != target:
            log.info("config watch: %s does not exist yet; watching %s for it", target, folder)
        return folder == target

    def start(self) -> ConfigWatcher:
        if self._watching:
            self._thread = threading.Thread(target=self._run, name="vcam-config-watch", daemon=True)
            self._thread.start()
        return self

    def _read(self, timeout_ms: int | None) -> list:
        """inotify events within `timeout_ms` (None: until some come), or [] when stop() wakes us."""
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        if not poller.poll(timeout_ms) or self._stop.is_set():
            return []
        return self._inotify.read(timeout=0)

    def _run(self) -> None:
        name = self.path.name
        while not self._stop.is_set():
            try:
                events = self._read(None)
            except OSError:
                break  # closed by stop()
            if not events:
                continue
            if self.watched != self.path.parent or any(e.mask & (flags.IGNORED | flags.DELETE_SELF
                                                                  | flags.MOVE_SELF) for e in events):
                # A folder on the way appeared (or ours went away): move the watch. Folders created in a
                # burst (mkdir -p) may already be there, and the config with them.
                before = self.watched
                try:
                    arrived = self._watch_nearest()
                except OSError as e:
                    log.warning("config watch: cannot watch %s (%s); use SIGHUP or `vcam ctl reload`",
                                self.path.parent, e.strerror or e)
                    break
                if not (arrived and before != self.watched and self.path.exists()):
                    if not any(e.name == name for e in events) or self.watched != self.path.parent:
                        continue
            elif not any(e.name == name for e in events):
                continue
            # Let a burst of writes (save = truncate + write + rename) settle, then reload once: DEBOUNCE_MS
            # after the last event on the config file (other files changing in its folder don't count).
            quiet_until = time.monotonic() + self.DEBOUNCE_MS / 1e3
            while not self._stop.is_set():
                remaining = quiet_until - time.monotonic()
                if remaining <= 0:
                    break
                if any(e.name == name for e in self._read(max(1, int(remaining * 1e3)))):
                    quiet_until = time.monotonic() + self.DEBOUNCE_MS / 1e3
            if not self._stop.is_set() and self.path.exists():
                log.info("config file %s changed: reloading", self.path)
                reload_logged(self.controller)

    def stop(self) -> None:
        if self._stop.is_set():  # stopped before: its fds are closed (and their numbers may be reused)
            return
        self._stop.set()
        os.write(self._wake_w, b"\0")
        if self._thread is not None:
            self._thread.join(timeout=2)
        for close in (self._inotify.close, lambda: os.close(self._wake_r), lambda: os.close(self._wake_w)):
            try:
                close()
            except OSError:
                pass
