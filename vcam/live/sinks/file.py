"""The file sink: an mp4 of what the virtual camera would show, for tests and debugging."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from vcam.config import OutputSettings
from vcam.frames import i420
from vcam.live.sinks.base import OutputError, Sink

log = logging.getLogger(__name__)


class FileSink(Sink):
    """An mp4 written to a temporary file beside the target and renamed on close, so a crash or a
    stop never leaves a half-written file under the final name."""

    name = "file"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        self.path = Path(settings.file).expanduser()
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise OutputError(f"[output] file: directory {directory} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4", dir=directory)
        os.close(fd)
        self._tmp = Path(tmp)
        self._bgr: np.ndarray | None = None
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: cannot write an mp4 file there")

    def send(self, frame: np.ndarray) -> None:
        self._bgr = i420.to_bgr(frame, self._bgr)
        self._writer.write(self._bgr)

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        log.info("wrote %s", self.path)
