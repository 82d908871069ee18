"""The `vcam` command: one argparse parser whose subcommands live in their own modules, loaded only
when they run, so that a light command such as `vcam ctl` never pays for OpenCV and MediaPipe.

Each command module, vcam.commands.<name>, has `register(subparsers)`, which adds its parser and sets
`func`. User errors (VcamError) become one line on stderr and exit status 2, with no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
import sys
import threading

from vcam import __version__
from vcam.errors import VcamError
from vcam.logs import setup_logging

# The subcommands, in the order `vcam --help` lists them; each is the module vcam.commands.<name>.
COMMANDS = ("apply", "run", "bench", "setup", "doctor", "ctl", "eval")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), like every other vcam error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_word(words: list[str]) -> str | None:
    """The subcommand `words` run, if it is certain from the words before it; None when it is not (help,
    --version, an unknown command or option), and then the parser needs every command to answer."""
    words = iter(words)
    for word in words:
        if word == "--config":
            next(words, None)
        elif word.startswith("--config=") or word == "--verbose" or re.fullmatch(r"-v+", word):
            continue
        elif word.startswith("-"):
            return None
        else:
            return word if word in COMMANDS else None
    return None


def build_parser(words: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `words` (the command line after `vcam`): only the command they run is imported,
    since most commands import OpenCV (~0.2 s); with no words, or an uncertain command, all of them."""
    parser = Parser(
        prog="vcam", description="Linux virtual webcam: blur, replace or remove the background behind you.")
    parser.add_argument("--version", action="version", version=f"vcam {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (default: ~/.config/vcam/config.toml over config/default.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug log output, including what OpenCV and MediaPipe print")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = command_word(words) if words is not None else None
    for name in (command,) if command else COMMANDS:
        importlib.import_module(f"vcam.commands.{name}").register(sub)
    return parser


def quiet_native_logs() -> None:
    """OpenCV and FFmpeg print their own warnings for every bad file; our error line already says it.
    Must run before cv2 is imported (the command modules import it)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def exit_now_if_threads_remain(code: int) -> None:
    """Leave without the interpreter's shutdown while any other thread is still running.

    A daemon stops its threads with short joins and abandons a background still loading. Python makes a
    thread that wants the interpreter back during its shutdown exit by unwinding its stack, and through
    OpenCV's or MediaPipe's C++ frames that ends in std::terminate: SIGABRT and a core dump after a clean
    stop (docs/control.md, Signals). The commands have closed what matters (camera, device, socket, lock)
    by the time they return; the log and the standard streams are flushed here."""
    remaining = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if not remaining:
        return
    logging.getLogger(__name__).debug("exiting with %s still running", ", ".join(remaining))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """The `vcam` command; as the process's entry point (no `argv`), it also decides how the process ends."""
    code = _main(argv)
    if argv is None:
        exit_now_if_threads_remain(code)
    return code


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if argv is None and command_word(words) == "run":
        # A reload request (SIGHUP) while OpenCV and the model load must not kill the daemon (SIGHUP's
        # default): ignored from here, before any import, until the controls install the reload handler.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not any(w in ("-v", "-vv", "--verbose") for w in words):
        quiet_native_logs()
    parser = build_parser(words)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except VcamError as e:
        print(f"vcam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vcam ctl status | head -1`: the reader left, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":  # `python -m vcam.cli` too, not only `python -m vcam`
    sys.exit(main())
