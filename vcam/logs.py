"""How a vcam process logs, in one place: the `vcam` command and the worker processes `vcam bench`
spawns log alike (a leaf module, so commands need not import the cli that loads them)."""
from __future__ import annotations

import logging
import sys


def setup_logging(verbosity: int) -> None:
    """INFO by default (what the daemon is doing, for the journal); -v adds debug detail."""
    logging.basicConfig(level=logging.DEBUG if verbosity else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
