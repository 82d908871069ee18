"""What the picture should look like: the effect and what it needs, one immutable value swapped whole.

The live pipeline reads one Look per frame (inside LiveState), so a frame never sees half of a change.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vcam.compositing.backgrounds import Background, load_background, parse_color
from vcam.compositing.effects import takes_background
from vcam.config import ConfigError, MatteSettings, Settings


@dataclass(frozen=True)
class Look:
    """How to composite: the effect and what it needs. Immutable; replace it whole."""

    effect: str = "blur"
    background: Background | None = None
    blur: int = 24
    key_color: tuple[int, int, int] = (0, 255, 0)
    matte: MatteSettings | None = None  # None: keep the engine's current matte settings

    def with_changes(self, **changes) -> Look:
        return dataclasses.replace(self, **changes)


def look_from_settings(settings: Settings, background: Background | None = None) -> Look:
    """The Look the config asks for; loads the background named in [effect] unless one is given."""
    eff = settings.effect
    if background is None and eff.configured_background and takes_background(eff.name):
        background = load_background(eff.configured_background)
    key = parse_color(eff.key_color)
    if key is None:
        raise ConfigError(f"{settings.source_files[-1]}: [effect] key_color is not a colour: "
                          f"{eff.key_color!r}")
    return Look(effect=eff.name, background=background, blur=eff.blur, key_color=key, matte=settings.matte)
