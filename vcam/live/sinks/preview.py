"""The preview sink: an OpenCV window, for looking at the result without a video-call app."""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from vcam.config import OutputSettings
from vcam.frames import i420
from vcam.live.sinks.base import OutputError, Sink


class PreviewSink(Sink):
    """An OpenCV window showing the frames.

    OpenCV's Qt GUI must only be touched from one thread: the window is created, drawn and destroyed
    by the thread that sends (the pipeline's output thread). close() from another thread only marks it
    closed; the window goes away with that thread's next call or with the process.
    """

    name = "preview"
    WINDOW = "vcam preview"

    def __init__(self, settings: OutputSettings, size: tuple[int, int], fps: float) -> None:
        super().__init__(settings, size, fps)
        display = os.environ.get("DISPLAY")
        if not display:  # Qt's highgui aborts the whole process without a display
            raise OutputError('[output] sink = "preview" needs an X display (DISPLAY is not set); '
                              'use sink = "file" or "null" on a headless machine')
        problem = _display_problem(display)
        if problem:
            raise OutputError(f'[output] sink = "preview": cannot open the X display {display} ({problem}); '
                              f'use sink = "file" or "null", or fix DISPLAY')
        self._gui_thread: int | None = None
        self._closed = False
        self._bgr: np.ndarray | None = None

    def send(self, frame: np.ndarray) -> None:
        if self._closed:
            self._destroy()
            return
        if self._gui_thread is None:
            self._gui_thread = threading.get_ident()
            cv2.namedWindow(self.WINDOW, cv2.WINDOW_AUTOSIZE)
        self._bgr = i420.to_bgr(frame, self._bgr)
        cv2.imshow(self.WINDOW, self._bgr)
        cv2.waitKey(1)

    def _destroy(self) -> None:
        if self._gui_thread == threading.get_ident():
            self._gui_thread = None
            try:
                cv2.destroyWindow(self.WINDOW)
                cv2.waitKey(1)
            except cv2.error:
                pass

    def close(self) -> None:
        self._closed = True
        self._destroy()


def _display_problem(display: str) -> str | None:
    """Why the X display cannot be opened, or None: probed with python-xlib (pynput's own X client)
    before Qt sees it, because Qt aborts the process (the socket and camera left behind) instead."""
    try:
        from Xlib.display import Display
        from Xlib.error import DisplayError
    except ImportError:
        return None  # nothing to probe with: let OpenCV try
    try:
        Display(display).close()
    except (DisplayError, OSError) as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None
