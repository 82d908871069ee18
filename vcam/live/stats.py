"""What the pipeline's stages measure and log, in one place that status() and `vcam bench` both read."""
from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np


class StageStats:
    """Recent per-frame timings (ms) of each stage, for status and `vcam bench`."""

    STAGES = ("resize", "segment", "matte", "composite", "send", "latency")

    def __init__(self, n: int = 600) -> None:
        self.ms: dict[str, deque[float]] = {k: deque(maxlen=n) for k in self.STAGES}
        self.sends: deque[float] = deque(maxlen=120)

    def reset(self) -> None:
        for d in self.ms.values():
            d.clear()
        self.sends.clear()

    def percentile(self, stage: str, q: float) -> float | None:
        values = list(self.ms[stage])
        return round(float(np.percentile(values, q)), 2) if values else None

    def send_fps(self, window: float = 2.0) -> float:
        now = time.perf_counter()
        recent = [t for t in list(self.sends) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(1e-6, recent[-1] - recent[0])


class FailureLog:
    """One failure count for all stages, so a bad stream can't flood the journal: each stage logs the first
    five failures, then every hundredth."""

    def __init__(self) -> None:
        self.count = 0

    def exception(self, logger: logging.Logger, what: str) -> None:
        """Log the current exception on `logger` if it is one of those to log."""
        self.count += 1
        if self.count <= 5 or self.count % 100 == 0:
            logger.exception("%s (%d failures so far)", what, self.count)
