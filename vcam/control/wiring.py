"""Where the daemon's control paths are wired, in one short place: the socket server, the hotkeys, the
config watcher and SIGHUP, all calling one Controller's actions."""
from __future__ import annotations

import logging
from collections.abc import Callable

from vcam.compositing.effects import takes_background
from vcam.config import Settings
from vcam.control.actions import Controller, LivePipeline
from vcam.control.hotkey_backends import Hotkeys
from vcam.control.reload import ConfigWatcher, SighupReload
from vcam.control.server import ControlServer
from vcam.control.signals import SignalInbox
from vcam.errors import VcamError
from vcam.live.state import LiveStateHolder

log = logging.getLogger(__name__)


class _Stopper:
    """Adapts a cleanup function to the daemon's list of things with .stop()."""

    def __init__(self, fn: Callable[[], object], label: str) -> None:
        self._fn, self._label = fn, label

    def stop(self) -> None:
        self._fn()

    def __repr__(self) -> str:
        return self._label


def start_controls(pipeline: LivePipeline, holder: LiveStateHolder, settings: Settings, signals: SignalInbox,
                   loader: Callable[[], Settings] | None = None) -> list:
    """Socket server, hotkeys, config watcher and SIGHUP, all calling one Controller's actions.

    `signals` delivers SIGHUP (the daemon's main loop runs it); `loader` rebuilds settings on reload (the
    daemon passes its file + command-line overrides).
    Returns objects with .stop(); the daemon stops them after the pipeline, so the camera is released first.
    """
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
        # [hotkeys] backend: the desktop portal (Wayland), pynput (X11) or none; a reload may switch it.
        hotkeys = Hotkeys(settings.hotkeys, lambda action: controller.run(action)).start()
        controls.insert(0, hotkeys)
        controller.status_providers.append(hotkeys.status)
        controller.reload_listeners.append(lambda new: hotkeys.update(new.hotkeys))
        if settings.control.watch_config:
            controls.insert(0, ConfigWatcher(controller).start())
        controls.append(SighupReload(controller, signals))
    except BaseException:
        for c in controls:
            c.stop()
        raise
    log.debug("control paths: %s", controls)
    return controls
