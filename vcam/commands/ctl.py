"""`vcam ctl`: send one action to the running vcam, light enough (no OpenCV, no numpy) to bind to a key.

Exit status: 0 accepted, 1 refused, 2 not running or not answering (a VcamError, as everywhere in vcam).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

from vcam.config import ConfigError, load_settings, read_config_bytes, tomllib, user_config_path
from vcam.control.catalog import ACTIONS, ALIASES
from vcam.control.client import request, socket_path


def register(subparsers) -> None:
    lines = [f"  {a.usage:32s} {a.help}" for a in ACTIONS.values()]
    aliases = ", ".join(f"{k} = {v}" for k, v in ALIASES.items())
    p = subparsers.add_parser(
        "ctl", help="control the running vcam (effect, background, pause, reload, status)",
        description="Send an action to the running vcam over its control socket. Exit status: 0 accepted, "
                    "1 refused, 2 vcam not running or not answering.",
        epilog="actions:\n" + "\n".join(lines) + f"\n\naliases: {aliases}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", metavar="ACTION", help="an action below")
    p.add_argument("args", metavar="ARG", nargs="*", help="its argument, if it takes one")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.add_argument("--socket", metavar="PATH", help="control socket (default: [control] socket)")
    p.set_defaults(func=run)


def _format_result(result: object) -> str:
    if isinstance(result, dict):
        return "\n".join(f"{k}: {'' if v is None else v}" for k, v in result.items())
    return "" if result is None else str(result)


def _raw_socket_setting(config: str | None) -> str | None:
    """[control] socket read straight from the config file, for when the file does not validate."""
    path = Path(config) if config else user_config_path()
    try:
        text = read_config_bytes(path).decode("utf-8", errors="replace")
    except ConfigError:
        return None
    try:
        value = tomllib.loads(text).get("control", {}).get("socket")
        return value if isinstance(value, str) else None
    except (tomllib.TOMLDecodeError, AttributeError, RecursionError):
        pass
    # Not even valid TOML: look for the line itself, in the [control] table.
    section = None
    for line in text.splitlines():
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$", line)
        if header:
            section = header.group(1)
            continue
        m = re.match(r"""\s*socket\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(#.*)?$""", line)
        if section == "control" and m:
            return m.group(1) if m.group(1) is not None else m.group(2)
    return None


def _socket_from_config(config: str | None) -> Path:
    """The socket from the config; a config with a mistake must not lock the user out of `vcam ctl`
    (above all `vcam ctl reload` after fixing it), so then [control] socket is read from the raw file."""
    try:
        return socket_path(load_settings(config).control)
    except ConfigError as e:
        raw = _raw_socket_setting(config)
        where = "its [control] socket" if raw else "the default control socket"
        print(f"vcam ctl: warning: {e}; trying {where} (the running vcam keeps its config until it is fixed)",
              file=sys.stderr)
        defaults = load_settings(use_user_config=False).control
        if raw:
            defaults = dataclasses.replace(defaults, socket=raw)
        return socket_path(defaults)


def _absolute_background(arg: str) -> str:
    """A background file named relative to the caller's folder, made absolute (the daemon runs elsewhere);
    an entry number, a colour or a library file name that is not a file here goes as it is."""
    if arg.strip().isdecimal():
        return arg
    path = os.path.expanduser(arg)
    if os.path.isabs(path):
        return path
    if os.sep in path or (os.path.splitext(path)[1] and os.path.lexists(path)):  # colours have no dot
        return os.path.abspath(path)
    return arg


def _print(text: str, file=None) -> None:
    """Print whatever the reply holds (an older daemon may send a file name that is not UTF-8)."""
    stream = file or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding, "replace"), file=stream)


def run(args: argparse.Namespace) -> int:
    path = Path(args.socket) if args.socket else _socket_from_config(args.config)
    words = list(args.args)
    if ALIASES.get(args.action, args.action) == "background" and len(words) == 1:
        words = [_absolute_background(words[0])]
    reply = request(path, args.action, words)
    if args.json:
        _print(json.dumps(reply, indent=2, default=str))
    elif reply.get("ok"):
        text = _format_result(reply.get("result"))
        if text:
            _print(text)
    else:
        _print(f"vcam ctl: refused: {reply.get('error', 'no reason given')}", file=sys.stderr)
    return 0 if reply.get("ok") else 1
