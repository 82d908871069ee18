"""Actions a key press asks for, run off the thread that saw the press, with the privacy pause never
queued behind a slow one (a background switch waits up to its load deadline; a pause must not)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vcam.control.catalog import IMMEDIATE_ACTIONS
from vcam.errors import VcamError


class KeyActions:
    """Two single-worker queues: one for pause/resume/status, one for everything else; each keeps order."""

    def __init__(self, dispatch: Callable[[str], Any], log: logging.Logger, what: str) -> None:
        self._dispatch, self._log, self._what = dispatch, log, what
        self._immediate = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcam-key-privacy")
        self._others = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcam-key-action")

    def submit(self, action: str) -> None:
        """Queue `action` and return at once; nothing after stop() runs."""
        queue = self._immediate if action in IMMEDIATE_ACTIONS else self._others
        try:
            queue.submit(self._run, action)
        except RuntimeError:  # stopping
            pass

    def stop(self) -> None:
        for queue in (self._immediate, self._others):
            queue.shutdown(wait=False, cancel_futures=True)

    def _run(self, action: str) -> None:
        try:
            self._dispatch(action)
        except Exception as e:  # a failing action is logged; the keys keep working
            self._log.warning("%s %s failed: %s", self._what, action, e,
                              exc_info=not isinstance(e, VcamError))
