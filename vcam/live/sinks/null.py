"""The null sink: frames go nowhere, so `vcam bench` measures the pipeline without a device."""
from __future__ import annotations

import numpy as np

from vcam.live.sinks.base import Sink


class NullSink(Sink):
    """Discards frames (benchmarks: the virtual camera, too, takes them without converting)."""

    name = "null"

    def send(self, frame: np.ndarray) -> None:
        pass
