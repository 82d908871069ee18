"""The actions by name, with their arguments and help: the vocabulary `vcam ctl` shares with the daemon,
kept free of OpenCV and numpy so that `vcam ctl` stays fast enough for a key press."""
from __future__ import annotations

from dataclasses import dataclass

from vcam.compositing.effects import LIVE_EFFECTS
from vcam.errors import VcamError

# next/previous effect walk this ring; "replace" stands for "show the background" (image, colour or video).
EFFECT_CYCLE = ("blur", "replace", "desaturate", "transparent", "none")
BLUR_STEP = 1.5  # blur stronger/weaker multiplies/divides the radius: even steps to the eye
EDGE_STEP = 0.1  # matte edge_width per softer/harder step (confidence units)
# Touch only the LiveState (or only read it): never behind the controller's lock nor queued behind a slow
# switch, so the privacy pause takes effect at once whatever else is pending.
IMMEDIATE_ACTIONS = frozenset({"status", "pause", "resume", "toggle-pause"})


class ActionError(VcamError):
    """The daemon refused an action (unknown name, bad argument, undecodable background, invalid config)."""


@dataclass(frozen=True)
class ActionSpec:
    """An action's name, how it is called and what it does."""

    name: str
    args: str  # usage of the arguments, "" for none
    help: str
    min_args: int = 0
    max_args: int = 0

    @property
    def usage(self) -> str:
        return f"{self.name} {self.args}".strip()

    def check_args(self, args: list[str]) -> None:
        """ActionError unless `args` fit this action."""
        if not self.min_args <= len(args) <= self.max_args or not all(isinstance(a, str) for a in args):
            raise ActionError(f"{self.name}: wrong arguments {args!r} (usage: {self.usage})")


ACTIONS: dict[str, ActionSpec] = {a.name: a for a in [
    ActionSpec("next-effect", "", "next effect: " + " > ".join(EFFECT_CYCLE)),
    ActionSpec("previous-effect", "", "previous effect"),
    ActionSpec("effect", "NAME", "set the effect: " + ", ".join(LIVE_EFFECTS), 1, 1),
    ActionSpec("next-background", "", "next background of the library"),
    ActionSpec("previous-background", "", "previous background of the library"),
    ActionSpec("background", "N|PATH|COLOUR", "show library entry N (from 1), a file or a colour", 1, 1),
    ActionSpec("blur-stronger", "", f"blur radius x{BLUR_STEP}"),
    ActionSpec("blur-weaker", "", f"blur radius /{BLUR_STEP}"),
    ActionSpec("edge-softer", "", f"widen the matte's soft edge by {EDGE_STEP}"),
    ActionSpec("edge-harder", "", f"narrow the matte's soft edge by {EDGE_STEP}"),
    ActionSpec("mirror", "[on|off|toggle]", "mirror the picture", 0, 1),
    ActionSpec("toggle-mirror", "", "mirror on/off"),
    ActionSpec("pause", "", "privacy: send a still placeholder, release the camera"),
    ActionSpec("resume", "", "back to the camera"),
    ActionSpec("toggle-pause", "", "pause or resume"),
    ActionSpec("reload", "", "re-read the config file (as SIGHUP does)"),
    ActionSpec("status", "", "effect, background, fps, latency, camera and on-demand state"),
]}

ALIASES = {"next-bg": "next-background", "prev-bg": "previous-background",
           "previous-bg": "previous-background", "prev-effect": "previous-effect", "bg": "background"}


def find_action(name: str) -> ActionSpec:
    """The action called `name` (or one of its aliases); ActionError if there is none."""
    spec = ACTIONS.get(ALIASES.get(name, name))
    if spec is None:
        raise ActionError(f"unknown action {name!r} (known: {', '.join(ACTIONS)})")
    return spec
