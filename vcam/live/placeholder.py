"""Still frames sent when there is no live picture: camera unavailable, paused (privacy) or idle.

Rendered once per (kind, size) and cached read-only: while idle the daemon only re-sends a buffer,
which is what keeps on-demand mode cheap.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from vcam.frames import i420

MESSAGES = {
    "unavailable": ("Camera unavailable", "vcam is retrying..."),
    "paused": ("Camera paused", ""),
    "idle": ("Virtual Camera", "starting..."),
}
BACKGROUND_BGR = (48, 40, 36)
TEXT_BGR = (235, 235, 235)


@lru_cache(maxsize=16)
def placeholder(kind: str, size: tuple[int, int]) -> np.ndarray:
    """A dark frame with a centred message; `size` is (width, height). Read-only, shared."""
    w, h = size
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = BACKGROUND_BGR
    title, subtitle = MESSAGES.get(kind, (kind, ""))
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, w / 900)
    thick = max(1, round(scale * 2))
    lines = [(title, scale, thick), (subtitle, scale * 0.6, max(1, thick - 1))]
    y = h // 2
    for text, sc, th in lines:
        if not text:
            continue
        (tw, th_px), _ = cv2.getTextSize(text, font, sc, th)
        cv2.putText(frame, text, ((w - tw) // 2, y), font, sc, TEXT_BGR, th, cv2.LINE_AA)
        y += int(th_px * 2.2)
    frame.flags.writeable = False
    return frame


@lru_cache(maxsize=16)
def placeholder_i420(kind: str, size: tuple[int, int]) -> np.ndarray:
    """placeholder() as I420 (vcam/frames/i420.py), what the live pipeline sends. Read-only, shared."""
    frame = i420.from_bgr(placeholder(kind, size))
    frame.flags.writeable = False
    return frame
