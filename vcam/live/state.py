"""The live state every control path changes and the pipeline reads once per frame.

A LiveState is immutable; changes build a new one and swap the reference under a lock, so the worker,
which takes `holder.get()` once at the start of each frame, never composites with half of a change.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from vcam.compositing.look import Look


@dataclass(frozen=True)
class LiveState:
    look: Look
    mirror: bool = False
    paused: bool = False  # privacy: camera released, a still placeholder is sent

    def with_changes(self, **changes) -> LiveState:
        return dataclasses.replace(self, **changes)


class LiveStateHolder:
    """Atomic holder of the current LiveState, shared by the stages and every control path.

    Policy: get() never blocks (one reference read) and update() swaps in a whole new state under a lock,
    so concurrent changes never lose each other and no reader sees half of one; listeners run afterwards,
    in the updating thread, outside the lock.
    """

    def __init__(self, state: LiveState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._listeners: list[Callable[[LiveState], None]] = []

    def get(self) -> LiveState:
        return self._state

    def update(self, change: Callable[[LiveState], LiveState]) -> LiveState:
        """Apply `change` to the current state atomically and return the new state."""
        with self._lock:
            new = change(self._state)
            self._state = new
        for listener in list(self._listeners):
            listener(new)
        return new

    def subscribe(self, listener: Callable[[LiveState], None]) -> None:
        """Call `listener(new_state)` after every change (e.g. the pipeline waking from pause)."""
        self._listeners.append(listener)
