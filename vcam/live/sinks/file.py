"""The file sink: an mp4 of what the virtual camera would show, for tests and debugging."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import cv2
import numpy as np

from vcam.atomic_write import OutputWriteError, atomic_output
from vcam.config import OutputSettings
from vcam.frames import i420
from vcam.frames.video_file import playback_problem
from vcam.live.sinks.base import OutputError, Sink

log = logging.getLogger(__name__)


class FileSink(Sink):
    """An mp4 written to a unique temporary file beside the target and renamed on close once it plays
    back, so a crash, a stop or a full disk never leaves a broken file under the final name."""

    name = "file"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        self.path = Path(settings.file).expanduser()
        directory = self.path.parent if str(self.path.parent) else Path(".")
        if not directory.is_dir():
            raise OutputError(f"[output] file: directory {directory} does not exist")
        self._frames = 0
        self._output = contextlib.ExitStack()
        try:
            self._tmp = self._output.enter_context(
                atomic_output(self.path, check=lambda p: playback_problem(p, self._frames)))
        except OutputWriteError as e:
            raise OutputError(f"[output] file: {e}") from None
        self._bgr: np.ndarray | None = None
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            self._writer = None
            self._output.__exit__(OutputError, None, None)  # removes the temporary file
            raise OutputError(f"{self.path}: cannot write an mp4 file there")

    def send(self, frame: np.ndarray) -> None:
        self._bgr = i420.to_bgr(frame, self._bgr)
        self._writer.write(self._bgr)
        self._frames += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        try:
            self._output.close()
        except OutputWriteError as e:
            log.error("%s", e)
            return
        log.info("wrote %s", self.path)
