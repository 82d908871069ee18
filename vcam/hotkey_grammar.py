"""The hotkey strings' grammar, in a leaf module so the config can validate hotkeys without a display.

Importing pynput at all needs an X display (its package imports the X backend), and a service may start
before the session, so nothing here imports pynput: its key names are read from its source instead.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

_key_names: frozenset[str] | None = None


def pynput_key_names() -> frozenset[str]:
    """pynput's portable key names (<ctrl>, <f9>, ...), read from its `Key` enum without executing it."""
    global _key_names
    if _key_names is None:
        spec = importlib.util.find_spec("pynput")
        base = Path(next(iter(spec.submodule_search_locations))) / "keyboard" / "_base.py"  # type: ignore
        tree = ast.parse(base.read_text(encoding="utf-8"))
        key_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Key")
        _key_names = frozenset(t.id for n in key_class.body if isinstance(n, ast.Assign)
                               for t in n.targets if isinstance(t, ast.Name))
    return _key_names


def validate_hotkey(text: str) -> None:
    """Raise ValueError (saying what is wrong) unless `text` is "" or a valid pynput hotkey string.

    With pynput's keyboard already loaded (a display), this is pynput's own `HotKey.parse`; without,
    the same grammar checked against pynput's key names.
    """
    if text == "":
        return
    keyboard = sys.modules.get("pynput.keyboard")
    if keyboard is not None:
        try:
            keyboard.HotKey.parse(text)
        except ValueError as e:
            raise ValueError(f"{text!r}: pynput cannot parse {e}; use e.g. '<ctrl>+<alt>+b'") from None
        return
    hotkey_keys(text)


def hotkey_parts(text: str) -> list[str] | None:
    """A combination split at its '+' separators ("<ctrl>+<alt>+b"): a '+' right after a separator (or
    first) is the key itself, as in pynput; None when nothing follows the last separator."""
    parts, start = [], 0
    for i, c in enumerate(text):
        if c == "+" and i != start:
            parts.append(text[start:i])
            start = i + 1
    if start >= len(text):
        return None
    parts.append(text[start:])
    return parts


def hotkey_keys(text: str) -> list[str]:
    """The keys of a hotkey string, normalised (lower case, no brackets); ValueError saying what is wrong."""
    parts = hotkey_parts(text)
    if parts is None:
        raise ValueError(f"{text!r} ends with '+'; use e.g. '<ctrl>+<alt>+b'")
    seen: list[str] = []
    for part in parts:
        if len(part) == 1:
            token = part.lower()
        elif len(part) > 2 and part[0] == "<" and part[-1] == ">":
            name = part[1:-1].lower()
            if name not in pynput_key_names() and not name.isdigit():
                raise ValueError(f"{text!r}: unknown key {part!r} "
                                 "(names like <ctrl>, <alt>, <shift>, <cmd>, <f9>)")
            token = name
        else:
            raise ValueError(f"{text!r}: {part!r} is neither one character nor a <key name>; "
                             f"use e.g. '<ctrl>+<alt>+b'")
        if token in seen:
            raise ValueError(f"{text!r}: {part!r} appears twice")
        seen.append(token)
    return seen


def combination(text: str) -> frozenset[str]:
    """What a hotkey string means to pynput: a set of keys held together (order and case don't matter),
    so '<alt>+<ctrl>+B' and '<ctrl>+<alt>+b' are the same combination."""
    return frozenset(hotkey_keys(text))
