"""The effects by name and what each needs: the one place that says which effects take a background.

A leaf module (no vcam imports, no numpy): the config, the compositors, the control actions and the
commands all read it, so adding an effect is one entry here and one drawing method per compositor.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Effect:
    """What an effect needs from the rest of vcam."""

    name: str
    description: str
    needs_matte: bool = True  # False: the frame passes through, the model is not run
    background: str | None = None  # "picture" (an image or a colour) or "video": a background the user picks
    live: bool = True  # offered by the daemon; False: files only (`vcam apply`)
    needs_small: bool = False  # draws from the frame reduced by blur_factor() (Matte.small): the blur
    draws: str = ""  # what each compositor draws behind the person: its method _draw_<draws>; "": none

    @property
    def takes_background(self) -> bool:
        return self.background is not None


EFFECTS: dict[str, Effect] = {e.name: e for e in (
    Effect("blur", "blur the background", needs_small=True, draws="blur"),
    Effect("replace", "an image or a colour behind you", background="picture", draws="picture"),
    Effect("video", "a looping video behind you", background="video", draws="picture"),
    Effect("desaturate", "the background in grey", draws="desaturated"),
    Effect("transparent", "the background keyed out (a key colour live, alpha in PNG files)", draws="key"),
    Effect("none", "the camera picture as it is", needs_matte=False, draws="none"),
    Effect("mask", "the matte itself, as a grey picture", live=False),
)}

LIVE_EFFECTS: tuple[str, ...] = tuple(name for name, e in EFFECTS.items() if e.live)
FILE_EFFECTS: tuple[str, ...] = tuple(EFFECTS)


def takes_background(name: str) -> bool:
    """True for the effects drawn over a background the user picks (replace, video)."""
    effect = EFFECTS.get(name)
    return effect is not None and effect.takes_background
