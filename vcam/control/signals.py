"""Signals (SIGTERM, SIGINT, SIGHUP) handed to the daemon's main loop instead of acted on in the handler.

A Python signal handler runs between two bytecodes of whatever the main thread is doing. One that takes a
lock can therefore wait for that same thread forever: `Event.set()` from a SIGTERM handler deadlocked when
the signal landed while the main loop's `Event.wait()` held the Event's lock (docs/control.md, Signals), and
`Thread.start()` from a SIGHUP handler can meet the thread registry's lock the same way. So the handler here
only appends the signal's number to a deque, which takes no lock the interrupted code could hold; Python's
own C-level handler wakes the main loop by writing to the inbox's pipe (`signal.set_wakeup_fd`), and
`wait()` on the main thread runs the actions.

Inputs: signals for which listen() installed the handler. Outputs: each listened action, run by wait() on
the calling thread once per signal, in arrival order.
"""
from __future__ import annotations

import collections
import logging
import os
import select
import signal
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class SignalInbox:
    """Queues listened signals from their handler; wait() runs their actions on the main thread."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._arrived: collections.deque[int] = collections.deque()
        self._actions: dict[int, Callable[[], object]] = {}
        self._previous: dict[int, Any] = {}
        # Python's C handler writes each signal here, from whichever thread the kernel picked, so the main
        # thread's select() wakes at once. Like signal.signal(), this works only on the main thread.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def listen(self, signum: int, action: Callable[[], object]) -> None:
        """From now on `signum` runs `action` in the next wait(); forget() puts the old handler back."""
        self._actions[signum] = action
        previous = signal.signal(signum, self._arrive)
        self._previous.setdefault(signum, previous)

    def forget(self, signum: int) -> None:
        """`signum` gets back the handler it had before listen(); one still queued is dropped."""
        if signum in self._previous:
            signal.signal(signum, self._previous.pop(signum))
        self._actions.pop(signum, None)

    def _arrive(self, signum: int, _frame: object) -> None:
        # Nothing here may take a lock: deque.append is one C call. (The pipe was written before this ran.)
        self._arrived.append(signum)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for signals; run the actions of those that came. True if any ran."""
        if not self._arrived:
            select.select([self._read_fd], [], [], timeout)
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
        ran = False
        while self._arrived:
            signum = self._arrived.popleft()
            action = self._actions.get(signum)
            if action is not None:
                ran = True
                try:
                    action()
                except Exception:
                    log.exception("handling %s failed", signal.Signals(signum).name)
        return ran

    def close(self) -> None:
        """Put back every handler listen() replaced and close the pipe."""
        for signum in list(self._previous):
            self.forget(signum)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for fd in (self._read_fd, self._write_fd):
            os.close(fd)
