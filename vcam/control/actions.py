"""The actions every control path runs (hotkeys, `vcam ctl`, SIGHUP, config watching), so that each
change is made one way and reaches the next frame whole.

Each action turns the current LiveState into a new one inside `LiveStateHolder.update`, so the worker,
which reads the state once per frame, sees either all of a change or none of it. One lock serialises the
actions' changes, so two clients pressing at once can't interleave half-changes; but no lock is held
while a background loads (the loader swaps it in, the action waits for it afterwards, and a switch whose
caller gave up is dropped, never applied later), and pause/resume touch only the LiveState, so the
privacy pause takes effect at once whatever else is pending.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol

from vcam.compositing.backgrounds import Background, ColorBackground, parse_color
from vcam.compositing.effects import LIVE_EFFECTS, takes_background
from vcam.config import Settings, load_settings
from vcam.control.catalog import (
    BLUR_STEP,
    EDGE_STEP,
    EFFECT_CYCLE,
    IMMEDIATE_ACTIONS,
    ActionError,
    find_action,
)
from vcam.control.library import BackgroundLibrary, Switch, effect_for
from vcam.control.loader import LoadAbandoned, LoadJob, Superseded
from vcam.control.reload import reload_settings
from vcam.errors import VcamError
from vcam.live.state import LiveState, LiveStateHolder

log = logging.getLogger(__name__)

# How long an action waits for its background: a load's deadline (loader.LOAD_DEADLINE_S) plus one queued
# before it, and less than the 15 s `vcam ctl` waits for a reply.
LOAD_TIMEOUT_S = 10.0


class LivePipeline(Protocol):
    """What the control paths use of the running pipeline."""

    def status(self) -> dict: ...

    def reconfigure(self, settings: Settings) -> None: ...


@dataclasses.dataclass(frozen=True)
class Pending:
    """A switch handed to the loader, waited for once the lock is released; `then` makes the reply."""

    job: LoadJob
    then: Callable[[Switch], dict]


class Controller:
    """What the actions act on: the running pipeline, the live state, the library and the settings."""

    def __init__(self, pipeline: LivePipeline, holder: LiveStateHolder, settings: Settings,
                 loader: Callable[[], Settings] | None = None) -> None:
        self.pipeline = pipeline
        self.holder = holder
        self.settings = settings
        # The file a reload re-reads (and the watcher watches): the one the settings came from, if any.
        self.config_path: str | None = settings.source_files[-1] if len(settings.source_files) > 1 else None
        # How to build settings again: the daemon passes "the file + its command-line overrides", so a
        # reload never undoes `vcam run --source ...`.
        self.load_settings = loader or self._load_file
        self.library = BackgroundLibrary(settings.backgrounds.paths, self.frame_size)
        self.reload_listeners: list[Callable[[Settings], None]] = []
        self.status_providers: list[Callable[[], dict]] = []
        self.lock = threading.RLock()
        self.reload_lock = threading.Lock()  # one reload at a time (reload_settings)
        self._closed = False

    def _load_file(self) -> Settings:
        return load_settings(self.config_path)

    def frame_size(self) -> tuple[int, int]:
        """The size frames are composited at, to scale a new background to before it goes live."""
        try:
            w, h = self.pipeline.status()["size"]
            if w and h:
                return int(w), int(h)
        except Exception:
            pass
        return self.settings.camera.width, self.settings.camera.height

    def run(self, name: str, args: list[str] | tuple[str, ...] = ()) -> dict:
        """Run action `name`; ActionError if it is unknown, misused or refused."""
        spec = find_action(name)
        args = list(args)
        spec.check_args(args)
        handler = HANDLERS[spec.name]
        try:
            if spec.name in IMMEDIATE_ACTIONS:
                return handler(self, *args)
            if self._closed:
                raise ActionError("vcam is stopping")
            if spec.name == "reload":  # takes the lock itself, only around its commit
                return self.finish(handler(self))
            with self.lock:
                outcome = handler(self, *args)
            return self.finish(outcome)
        except ActionError:
            raise
        except VcamError as e:
            raise ActionError(str(e)) from None

    def finish(self, outcome: dict | Pending) -> dict:
        """The reply of an action: at once, or once its background is live (waited for without a lock)."""
        if not isinstance(outcome, Pending):
            return outcome
        try:
            switch = self.wait(outcome.job)
        except Superseded:
            result = _live_summary(self)
            result["note"] = "replaced by a later switch before it loaded"
            return result
        return outcome.then(switch)

    def close(self) -> None:
        """Refuse further actions and drop pending loads; returns at once (never waits on a load)."""
        self._closed = True
        self.library.close()

    # -- helpers used by the actions ------------------------------------------------------------------------
    def change(self, fn: Callable[[LiveState], LiveState]) -> LiveState:
        return self.holder.update(fn)

    def show_switch(self, switch: Switch, effect: str | None = None) -> None:
        """Make a loaded background live (on the loader thread), or fall back to blur if there is none."""
        old: list[Background | None] = []

        def swap(state: LiveState) -> LiveState:
            old.append(state.look.background)
            if switch.background is None:
                return state.with_changes(look=state.look.with_changes(effect="blur"))
            return state.with_changes(look=state.look.with_changes(
                effect=effect or effect_for(switch.background), background=switch.background))

        self.change(swap)
        if switch.background is not None and old[0] is not switch.background:
            self.library.retire(old[0])

    def show_now(self, background: Background) -> None:
        """Show a background that needs no loading (a colour) at once, over any load still pending."""
        self.library.supersede()
        self.show_switch(Switch(background, None))

    def wait(self, job: LoadJob) -> Switch:
        """The switch `job` made live; ActionError if it failed or took too long (then it is dropped)."""
        try:
            return job.result(LOAD_TIMEOUT_S)
        except FutureTimeout:
            if job.drop(LoadAbandoned(f"{job.label}: the request gave up waiting")):
                raise ActionError(f"background {job.label} still loading after {LOAD_TIMEOUT_S:g} s; "
                                  f"dropped, nothing changed") from None
            return job.result(1.0)  # applied (or abandoned) just as we gave up: that outcome


def _library_index(controller: Controller, bg: Background | None) -> int | None:
    """1-based library position of the background on screen; None for a colour or a file outside it."""
    position = controller.library.position
    if bg is None or position is None or position >= len(controller.library.entries):
        return None
    path = getattr(bg, "path", None)
    on_screen = path is not None and path.resolve() == controller.library.entries[position].resolve()
    return position + 1 if on_screen else None


def _live_summary(controller: Controller) -> dict:
    state = controller.holder.get()
    look = state.look
    matte = look.matte or controller.settings.matte
    bg = look.background
    return {
        "effect": look.effect,
        "background": bg.label if bg is not None else "",
        "background_index": _library_index(controller, bg),
        "library_size": len(controller.library),
        "blur": look.blur,
        "edge_width": round(matte.edge_width, 3),
        "threshold": round(matte.threshold, 3),
        "mirror": state.mirror,
        "paused": state.paused,
    }


# -- effects -------------------------------------------------------------------------------------------------
def _set_effect(controller: Controller, name: str) -> dict | Pending:
    name = name.strip().lower()
    if name not in LIVE_EFFECTS:
        raise ActionError(f"effect {name!r} is not one of {', '.join(LIVE_EFFECTS)}")
    look = controller.holder.get().look
    if takes_background(name):
        if look.background is None:
            # A background effect with nothing loaded: the config's [effect] background, else the library's
            # current entry, else white. Loaded by the library's loader, never on the frame path.
            configured = controller.settings.effect.configured_background
            color = parse_color(configured) if configured else None
            if color is None and (configured or len(controller.library)):
                return Pending(controller.library.for_effect(configured, controller.show_switch),
                               lambda switch: _shown_or_refused(controller, switch))
            controller.show_now(ColorBackground(color or (255, 255, 255), configured if color else "white"))
            return _live_summary(controller)
        name = effect_for(look.background)
    controller.change(lambda s: s.with_changes(look=s.look.with_changes(effect=name)))
    return _live_summary(controller)


def _shown_or_refused(controller: Controller, switch: Switch) -> dict:
    if switch.background is None:
        raise ActionError("no background in the library can be decoded; staying on blur")
    return _live_summary(controller)


def _cycle_effect(controller: Controller, delta: int) -> dict | Pending:
    current = controller.holder.get().look.effect
    current = "replace" if current == "video" else current
    i = EFFECT_CYCLE.index(current) if current in EFFECT_CYCLE else 0
    return _set_effect(controller, EFFECT_CYCLE[(i + delta) % len(EFFECT_CYCLE)])


def next_effect(controller: Controller) -> dict | Pending:
    return _cycle_effect(controller, +1)


def previous_effect(controller: Controller) -> dict | Pending:
    return _cycle_effect(controller, -1)


def effect(controller: Controller, name: str) -> dict | Pending:
    return _set_effect(controller, name)


# -- backgrounds ---------------------------------------------------------------------------------------------
def _step_background(controller: Controller, delta: int) -> Pending:
    def reply(switch: Switch) -> dict:
        result = _live_summary(controller)
        if switch.skipped:
            result["skipped"] = list(switch.skipped)
        if switch.background is None:
            result["note"] = "no usable background in the library: blur"
        return result
    return Pending(controller.library.step(delta, controller.show_switch), reply)


def next_background(controller: Controller) -> Pending:
    return _step_background(controller, +1)


def previous_background(controller: Controller) -> Pending:
    return _step_background(controller, -1)


def background(controller: Controller, target: str) -> dict | Pending:
    # a number is always a library entry: "123456" would also read as hex ('#123456' is that colour)
    color = None if target.strip().isdecimal() else parse_color(target)
    if color is not None:  # nothing to load: shown at once, never queued behind a slow file
        controller.show_now(ColorBackground(color, target.strip()))
        return _live_summary(controller)
    job = controller.library.select(target, controller.show_switch)
    return Pending(job, lambda _switch: _live_summary(controller))


# -- blur and edge -------------------------------------------------------------------------------------------
def _blur_by(controller: Controller, factor: float) -> dict:
    def change(s: LiveState) -> LiveState:
        blur = s.look.blur
        new = max(blur + 1, round(blur * factor)) if factor > 1 else min(blur - 1, round(blur * factor))
        return s.with_changes(look=s.look.with_changes(blur=int(min(200, max(1, new)))))
    controller.change(change)
    return _live_summary(controller)


def blur_stronger(controller: Controller) -> dict:
    return _blur_by(controller, BLUR_STEP)


def blur_weaker(controller: Controller) -> dict:
    return _blur_by(controller, 1 / BLUR_STEP)


def _edge_by(controller: Controller, delta: float) -> dict:
    def change(s: LiveState) -> LiveState:
        matte = s.look.matte or controller.settings.matte
        width = round(min(1.0, max(0.0, matte.edge_width + delta)), 3)
        return s.with_changes(look=s.look.with_changes(matte=dataclasses.replace(matte, edge_width=width)))
    controller.change(change)
    return _live_summary(controller)


def edge_softer(controller: Controller) -> dict:
    return _edge_by(controller, +EDGE_STEP)


def edge_harder(controller: Controller) -> dict:
    return _edge_by(controller, -EDGE_STEP)


# -- mirror and privacy --------------------------------------------------------------------------------------
def mirror(controller: Controller, mode: str = "toggle") -> dict:
    mode = mode.strip().lower()
    if mode not in ("on", "off", "toggle"):
        raise ActionError(f"mirror {mode!r}: use on, off or toggle")
    controller.change(lambda s: s.with_changes(mirror=(not s.mirror) if mode == "toggle" else mode == "on"))
    return _live_summary(controller)


def toggle_mirror(controller: Controller) -> dict:
    return mirror(controller, "toggle")


def _set_paused(controller: Controller, paused: bool | None) -> dict:
    """Pause (True), resume (False) or toggle (None) in one LiveState swap, without the controller's lock."""
    state = controller.change(lambda s: s.with_changes(paused=(not s.paused) if paused is None else paused))
    log.info("paused: sending the placeholder, camera released" if state.paused else "resumed")
    return _live_summary(controller)


def pause(controller: Controller) -> dict:
    return _set_paused(controller, True)


def resume(controller: Controller) -> dict:
    return _set_paused(controller, False)


def toggle_pause(controller: Controller) -> dict:
    return _set_paused(controller, None)


# -- config and status ---------------------------------------------------------------------------------------
def reload(controller: Controller) -> dict | Pending:
    effect_name = reload_settings(controller)
    if effect_name is None:
        return _live_summary(controller)
    with controller.lock:  # the new [effect] shows the library's entry, or white
        return _set_effect(controller, effect_name)


def status(controller: Controller) -> dict:
    result: dict = {}
    try:
        result.update(controller.pipeline.status())
    except Exception:  # status must answer even if the pipeline is in trouble
        log.exception("pipeline status failed")
        result["pipeline"] = "status unavailable"
    for provider in controller.status_providers:
        try:
            result.update(provider())
        except Exception:
            log.exception("status provider failed")
    result.update(_live_summary(controller))  # the live state is the authority on what the next frame shows
    return result


# What each action of the catalog runs (tests/test_server.py checks the two name the same actions).
HANDLERS: dict[str, Callable[..., dict | Pending]] = {
    "next-effect": next_effect,
    "previous-effect": previous_effect,
    "effect": effect,
    "next-background": next_background,
    "previous-background": previous_background,
    "background": background,
    "blur-stronger": blur_stronger,
    "blur-weaker": blur_weaker,
    "edge-softer": edge_softer,
    "edge-harder": edge_harder,
    "mirror": mirror,
    "toggle-mirror": toggle_mirror,
    "pause": pause,
    "resume": resume,
    "toggle-pause": toggle_pause,
    "reload": reload,
    "status": status,
}
