"""The `vcam` command: one argparse parser whose subcommands live in their own modules.

Each command module has `register(subparsers)`, which adds its parser and sets `func`. User errors
(VcamError) become one line on stderr and exit status 2; nothing prints a traceback for them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from vcam import __version__
from vcam.errors import VcamError

# Subcommand modules, in the order `vcam --help` lists them.
COMMAND_MODULES = [
    "vcam.commands.apply",
    "vcam.commands.run",
    "vcam.commands.bench",
    "vcam.commands.setup",
    "vcam.control.server",
    "vcam.commands.eval",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), like every other vcam error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vcam", description="Linux virtual webcam: blur, replace or remove the background behind you.")
    parser.add_argument("--version", action="version", version=f"vcam {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (default: ~/.config/vcam/config.toml over config/default.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug log output, including what OpenCV and MediaPipe print")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    """INFO by default (what the daemon is doing, for the journal); -v adds debug detail."""
    logging.basicConfig(level=logging.DEBUG if verbosity else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def quiet_native_logs() -> None:
    """OpenCV and FFmpeg print their own warnings for every bad file; our error line already says it.
    Must run before cv2 is imported (the command modules import it)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if not any(w in ("-v", "-vv", "--verbose") for w in words):
        quiet_native_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except VcamError as e:
        print(f"vcam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
