"""The one-slot handoff between two pipeline threads, so a live picture always shows the newest frame."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Frame(Generic[T]):
    """An item in a slot: the pixels (or a stage's item), when the camera captured them (perf_counter s) and
    the source run they came from (a new number each time a camera is opened, so a stage sees a cut)."""

    image: T
    t_capture: float
    run: int = 0


class OneSlot(Generic[T]):
    """A one-item mailbox between a producer thread and a consumer thread.

    Policy: put() replaces an item still waiting (counted in `dropped`), so a slow consumer drops items
    instead of adding latency; take() waits at most its timeout and returns at once after a wake().
    Buffers: an item belongs to the slot from put() until take(), then to the consumer, which gives it
    back to the producer's side with take(give_back=...) or recycle(); put() returns a buffer the producer
    may overwrite (the dropped item's or a given-back one), so no stage allocates per frame.
    """

    SPARES = 2  # given-back buffers kept for the producer; more are left to the garbage collector

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Frame[T] | None = None
        self._spare: list[T] = []
        self._woken = False  # a wake() no take() has seen yet (it may come before the consumer waits)
        self.dropped = 0

    def put(self, image: T, t_capture: float, run: int = 0) -> T | None:
        """Publish `image` (ownership passes to the slot); returns a buffer to fill next, or None."""
        with self._cond:
            recycled = None
            if self._item is not None:
                self.dropped += 1
                recycled = self._item.image
            elif self._spare:
                recycled = self._spare.pop()
            self._item = Frame(image, t_capture, run)
            self._cond.notify_all()
        return recycled

    def take(self, timeout: float, give_back: T | None = None) -> Frame[T] | None:
        """The newest item not yet taken, waiting up to `timeout` s; `give_back` goes to the producer."""
        with self._cond:
            if give_back is not None and len(self._spare) < self.SPARES:
                self._spare.append(give_back)
            if self._item is None and not self._woken:
                self._cond.wait(timeout)
            self._woken = False
            item, self._item = self._item, None
            if item is not None:
                self._cond.notify_all()  # a producer may wait for the slot to empty
            return item

    def wait_empty(self, timeout: float) -> bool:
        """Wait until the consumer took the pending item (or `timeout`); True if the slot is empty."""
        with self._cond:
            if self._item is not None:
                self._cond.wait(timeout)
            return self._item is None

    def recycle(self, image: T) -> None:
        """Give a buffer the consumer no longer needs back to the producer."""
        with self._cond:
            if len(self._spare) < self.SPARES:
                self._spare.append(image)

    def clear(self) -> None:
        """Drop the waiting item, if any (not counted as dropped: nobody was to see it)."""
        with self._cond:
            self._item = None

    def wake(self) -> None:
        """Make the consumer's current or next take() return now (with None if nothing is waiting), so
        a stop or a state change is seen even if it comes just before the consumer starts to wait."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()
