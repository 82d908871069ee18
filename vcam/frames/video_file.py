"""A check that a video file just written plays back: FFmpeg's writer fails silently on a full disk."""
from __future__ import annotations

from pathlib import Path

import cv2


def playback_problem(path: Path, frames: int) -> str | None:
    """Why the video just written does not play back with all its frames (a full disk truncates it
    silently inside FFmpeg), or None."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened() or not cap.read()[0]:
            return "the written video does not play back (is the disk full?)"
        written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if written and written < frames:
            return f"only {written} of {frames} frames were written (is the disk full?)"
    finally:
        cap.release()
    return None

