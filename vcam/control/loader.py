"""Background loads run one at a time with a deadline, so that a slow or stuck file (a hung network
mount, a leased file) never blocks the switches after it, the controls or shutdown.

A load that outlives LOAD_DEADLINE_S, or whose caller gave up, is abandoned: its worker thread is left
to finish on its own, its result is discarded (a background it opened is closed), and the next load runs
on a fresh worker. Only a live load commits, under the loader's lock, so an abandoned or superseded one
can never swap its background in later.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from vcam.compositing.backgrounds import BackgroundError

log = logging.getLogger(__name__)

LOAD_DEADLINE_S = 5.0  # an image or video opens in well under a second; a stuck one never does


class LoadAbandoned(BackgroundError):
    """A load that missed its deadline, or whose caller gave up: nothing of it is applied."""


class Superseded(BackgroundError):
    """A load dropped because a later switch (a colour) was applied first."""


class LoadJob:
    """One requested load: `work(job)` runs on a worker (checking `job.live` between files), `commit(result)`
    makes it live; `result(timeout)` waits for the committed result."""

    def __init__(self, loader: Loader, work: Callable[[LoadJob], object], commit: Callable[[object], None],
                 label: str, discard: Callable[[object], None]) -> None:
        self.loader, self.work, self.commit, self.label, self.discard = loader, work, commit, label, discard
        self.future: Future = Future()
        self.state = "queued"  # -> running -> done, or dropped (abandoned, cancelled or superseded)

    @property
    def live(self) -> bool:
        return self.state in ("queued", "running")

    def result(self, timeout: float | None = None):
        return self.future.result(timeout)

    def drop(self, error: BackgroundError) -> bool:
        """The caller gave up: never apply this load. False if it was applied or dropped already."""
        return self.loader.drop(self, error)


class Loader:
    """A queue of LoadJobs served by one worker thread at a time, replaced when a job is abandoned."""

    def __init__(self, name: str = "vcam-bg-loader") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[LoadJob] = collections.deque()
        self._worker: threading.Thread | None = None
        self._running: LoadJob | None = None
        self._closed = False
        self._count = 0

    def submit(self, work: Callable[[LoadJob], object], commit: Callable[[object], None], label: str,
               discard: Callable[[object], None] = lambda _r: None) -> LoadJob:
        job = LoadJob(self, work, commit, label, discard)
        with self._cond:
            if self._closed:
                job.state = "dropped"
                job.future.set_exception(LoadAbandoned(f"{label}: not loaded, vcam is stopping"))
                return job
            self._queue.append(job)
            if self._worker is None:
                self._start_worker()
            self._cond.notify_all()
        return job

    def drop(self, job: LoadJob, error: BackgroundError) -> bool:
        """Abandon `job` (queued or running) so it is never applied, its result being `error`; False if it
        was applied or dropped already (its result says which)."""
        with self._cond:
            if not job.live:
                return False
            self._drop_locked(job)
        job.future.set_exception(error)
        return True

    def supersede(self) -> None:
        """Drop every queued and running load: a switch applied directly (a colour) wins over them."""
        with self._cond:
            jobs = self._drop_all_locked()
        for job in jobs:
            job.future.set_exception(Superseded(f"{job.label}: replaced by a later switch before it loaded"))

    def close(self, reason: str = "vcam is stopping") -> None:
        """Drop everything and return at once: a worker stuck in a load is left behind, never joined."""
        with self._cond:
            self._closed = True
            jobs = self._drop_all_locked()
            self._worker = None
            self._cond.notify_all()
        for job in jobs:
            job.future.set_exception(LoadAbandoned(f"{job.label}: not loaded, {reason}"))

    # -- internals -------------------------------------------------------------------------------------------
    def _drop_all_locked(self) -> list[LoadJob]:
        """Drop every queued and running load that is still live; the dropped ones, to be told why."""
        jobs = [j for j in (*self._queue, self._running) if j is not None and j.live]
        for job in jobs:
            self._drop_locked(job)
        return jobs

    def _drop_locked(self, job: LoadJob) -> None:
        if job.state == "queued":
            self._queue.remove(job)
        elif job.state == "running" and self._running is job:
            self._running = None
            if not self._closed:  # its worker is stuck with it: the rest of the queue goes to a new one
                self._start_worker()
        job.state = "dropped"

    def _start_worker(self) -> None:
        self._count += 1
        worker = threading.Thread(target=self._serve, name=f"{self._name}-{self._count}", daemon=True)
        self._worker = worker
        worker.start()
        self._cond.notify_all()  # the worker it replaces, if idle, sees it is not current and ends

    def _expire(self, job: LoadJob) -> None:
        deadline = LOAD_DEADLINE_S
        if self.drop(job, LoadAbandoned(f"{job.label}: still loading after {deadline:g} s (a slow or stuck "
                                        f"file?); abandoned, nothing changed")):
            log.warning("background %s: still loading after %g s; abandoned (the next load runs on a fresh "
                        "thread)", job.label, deadline)

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while self._worker is me and not self._queue:
                    self._cond.wait()
                if self._worker is not me:
                    return
                job = self._queue.popleft()
                job.state, self._running = "running", job
            timer = threading.Timer(LOAD_DEADLINE_S, self._expire, (job,))
            timer.daemon = True
            timer.start()
            result, error = None, None
            try:
                result = job.work(job)
            except Exception as e:  # noqa: BLE001 - handed to the caller through the future
                error = e
            timer.cancel()
            with self._cond:
                live = job.state == "running"
                if live:
                    self._running = None
                    job.state = "done"
                    if error is None:
                        try:
                            job.commit(result)
                        except Exception as e:  # noqa: BLE001 - handed to the caller
                            error = e
            if not live:
                if result is not None:
                    log.info("background %s: loaded after it was abandoned; discarded", job.label)
                    job.discard(result)
                continue  # the loop ends unless this is still the current worker
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
