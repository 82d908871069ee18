"""Matte stage: the model's soft confidence mask -> an alpha matte at frame size (uint8, 255 = person).

One documented step with user settings ([matte] in config/default.toml):
  1. temporal smoothing (video only): exponential average with the previous mask, at mask resolution;
  2. upsampling to the frame size (bilinear);
  3. soft-edge mapping: a smoothstep from threshold - edge_width/2 to threshold + edge_width/2, as a LUT;
  4. optional feather: a Gaussian blur of the matte edge.
All of it is uint8 OpenCV on buffers kept between frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.config import MatteSettings


def smoothstep_lut(threshold: float, edge_width: float) -> np.ndarray:
    """256-entry table mapping confidence*255 to opacity*255."""
    x = np.arange(256, dtype=np.float64) / 255.0
    if edge_width <= 0:
        y = (x >= threshold).astype(np.float64)
    else:
        lo, hi = threshold - edge_width / 2, threshold + edge_width / 2
        t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        y = t * t * (3.0 - 2.0 * t)
    return np.round(y * 255.0).astype(np.uint8)


class MatteBuilder:
    """Turns per-frame confidence masks into alpha mattes; one per stream (it keeps temporal state)."""

    def __init__(self, settings: MatteSettings, *, video: bool) -> None:
        self.video = video
        self._prev: np.ndarray | None = None
        self._alpha: np.ndarray | None = None
        self.configure(settings)

    def configure(self, settings: MatteSettings) -> None:
        """Take new settings between frames (live tuning) without losing the temporal state."""
        self.settings = settings
        self._lut = smoothstep_lut(settings.threshold, settings.edge_width)

    def reset(self) -> None:
        """Forget the previous frame (a cut in the input, e.g. after a camera reconnect)."""
        self._prev = None

    def build(self, confidence: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Alpha matte of (width, height) `size`. The returned buffer is reused by the next call."""
        s = self.settings
        mask = confidence
        if self.video and s.temporal > 0:
            if self._prev is None or self._prev.shape != mask.shape:
                self._prev = mask.copy()
            else:
                cv2.addWeighted(self._prev, s.temporal, mask, 1.0 - s.temporal, 0.0, dst=self._prev)
            mask = self._prev
        w, h = size
        if self._alpha is None or self._alpha.shape != (h, w):
            self._alpha = np.empty((h, w), np.uint8)
        cv2.resize(mask, (w, h), dst=self._alpha, interpolation=cv2.INTER_LINEAR)
        cv2.LUT(self._alpha, self._lut, dst=self._alpha)
        if s.feather > 0:
            k = 2 * s.feather + 1
            cv2.GaussianBlur(self._alpha, (k, k), 0, dst=self._alpha)
        return self._alpha
