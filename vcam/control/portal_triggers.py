"""vcam's hotkey combinations as the desktop portal's shortcut triggers, and what the desktop shows for each
action: the portal takes the XDG shortcuts spec's triggers (upper-case modifiers and an xkbcommon keysym
name, "CTRL+ALT+e"), not pynput's "<ctrl>+<alt>+e"."""
from __future__ import annotations

from vcam.hotkey_grammar import hotkey_parts

DESCRIPTIONS = {
    "next-effect": "Next effect", "previous-effect": "Previous effect",
    "next-background": "Next background", "previous-background": "Previous background",
    "toggle-pause": "Privacy pause on/off (camera released)", "toggle-mirror": "Mirror on/off",
    "blur-stronger": "Blur stronger", "blur-weaker": "Blur weaker",
    "edge-softer": "Softer edge around the person", "edge-harder": "Harder edge around the person",
}

_MODIFIERS = {name + side: mod
              for name, mod in (("ctrl", "CTRL"), ("alt", "ALT"), ("shift", "SHIFT"), ("cmd", "LOGO"))
              for side in ("", "_l", "_r")} | {"super": "LOGO", "logo": "LOGO"}
_MODIFIER_ORDER = ("CTRL", "ALT", "SHIFT", "NUM", "LOGO")
_NAMED_KEYS = {  # pynput Key names -> XKB_KEY_* names without the prefix
    "backspace": "BackSpace", "caps_lock": "Caps_Lock", "delete": "Delete", "down": "Down", "end": "End",
    "enter": "Return", "esc": "Escape", "home": "Home", "left": "Left", "page_down": "Page_Down",
    "page_up": "Page_Up", "right": "Right", "space": "space", "tab": "Tab", "up": "Up", "insert": "Insert",
    "menu": "Menu", "num_lock": "Num_Lock", "pause": "Pause", "print_screen": "Print",
    "scroll_lock": "Scroll_Lock", "media_play_pause": "XF86AudioPlay", "media_volume_mute": "XF86AudioMute",
    "media_volume_down": "XF86AudioLowerVolume", "media_volume_up": "XF86AudioRaiseVolume",
    "media_previous": "XF86AudioPrev", "media_next": "XF86AudioNext",
    **{f"f{n}": f"F{n}" for n in range(1, 25)}}
# The spec limits triggers to the keyboard's base layer: shifted symbols ("!", "+") get none (the user picks).
_CHAR_KEYS = {" ": "space", "]": "bracketright", "[": "bracketleft", "-": "minus", "=": "equal",
              ";": "semicolon", "'": "apostrophe", ",": "comma", ".": "period", "/": "slash",
              "\\": "backslash", "`": "grave"}


def to_portal_trigger(combo: str) -> str:
    """vcam's combination ("<ctrl>+<alt>+e", also "ctrl+alt+e") as the spec's trigger ("CTRL+ALT+e"), because
    the portal takes xkbcommon keysym names and upper-case modifiers; ValueError if it has no such form."""
    parts = hotkey_parts(combo)
    if parts is None:
        raise ValueError(f"{combo!r}: no key after the last '+'")
    modifiers: set[str] = set()
    keys: list[str] = []
    for part in parts:
        name = part[1:-1] if len(part) > 2 and part[0] == "<" and part[-1] == ">" else part
        lower = name.lower()
        if len(name) > 1 and lower in _MODIFIERS:
            modifiers.add(_MODIFIERS[lower])
        elif len(name) > 1 and lower in _NAMED_KEYS:
            keys.append(_NAMED_KEYS[lower])
        elif len(name) == 1 and (name.isascii() and name.isalnum()):
            keys.append(name.lower())
        elif len(name) == 1 and name in _CHAR_KEYS:
            keys.append(_CHAR_KEYS[name])
        else:
            raise ValueError(f"{combo!r}: {part!r} has no keysym name for the portal")
    if len(keys) != 1:
        raise ValueError(f"{combo!r}: a portal trigger is modifiers plus exactly one key")
    return "+".join([m for m in _MODIFIER_ORDER if m in modifiers] + keys)


def describe(action: str) -> str:
    """The text the desktop shows for an action in its shortcuts dialog and settings."""
    return DESCRIPTIONS.get(action) or action.replace("-", " ").capitalize()


def portal_shortcuts(actions: dict[str, str]) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    """BindShortcuts' a(sa{sv}) for {action: combination}: id = action, a description, and the combination
    as preferred_trigger; and {action: why it has no preferred trigger} (optional: the user picks one)."""
    shortcuts, unconverted = [], {}
    for action, combo in sorted(actions.items()):
        options = {"description": ("s", describe(action))}
        try:
            options["preferred_trigger"] = ("s", to_portal_trigger(combo))
        except ValueError as e:
            unconverted[action] = str(e)
        shortcuts.append((action, options))
    return shortcuts, unconverted
