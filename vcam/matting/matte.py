"""Matte stage: the model's soft confidence mask -> an alpha matte at frame size (uint8, 255 = person).

The model sees a ~256 px picture, so its mask is blurry and blocky at frame size and flickers from
frame to frame. The steps below, each measured by `vcam eval` (see docs/matte.md), fix that:
  1. edge-aware upsampling (refine = "guided"): the mask is brought to a reduced "guide" size
     (refine_size px on the short side) and run through a guided filter (vcam/guided.py) whose
     guide is the grey frame at that size, so the mask edge snaps to the real edges of hair and shoulders;
  2. temporal smoothing (video only): an exponential average with the previous matte whose weight
     `temporal` drops to 0 where the frame changed by `motion` grey levels or more (the change map is
     box-blurred against noise, then dilated so the whole neighbourhood of a moving edge counts as
     moving), so still edges stop flickering and moving edges follow at once (no smear, no lag);
  3. upsampling to the frame size (bilinear) and the soft-edge mapping: a smoothstep from
     threshold - edge_width/2 to threshold + edge_width/2, as a LUT (compositing may take the LUT over
     and apply it on the person's edge only: build(defer_lut=True));
  4. optional feather: a Gaussian blur of the matte edge.
Everything at frame size is uint8 OpenCV on buffers kept between frames; the float work happens at the
guide size only (427x240 for 720p and 1080p alike): about 1.55 ms a 720p frame when it runs right after
the model as it does live (docs/matte.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from vcam.config import MatteSettings
from vcam.matting.guided import GuidedFilter
from vcam.frames.reduce import Reducer

# Grey-level changes below this are camera noise, not motion: the temporal weight stays at full there.
MOTION_NOISE = 3
# The motion map is dilated by this: a moving edge's neighbours must follow it too, or they trail it.
_K5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


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


def motion_weight_lut(temporal: float, motion: int) -> np.ndarray:
    """256-entry table: grey-level change of a pixel -> weight of the previous matte there (float32,
    so cv2.LUT turns the uint8 change map straight into a float weight map).

    Full `temporal` up to camera noise, falling linearly to 0 at `motion` levels (0 = no motion gating).
    """
    d = np.arange(256, dtype=np.float64)
    if motion <= 0:
        w = np.full(256, temporal)
    else:
        lo = min(MOTION_NOISE, motion - 1)
        w = temporal * np.clip((motion - d) / (motion - lo), 0.0, 1.0)
    return w.astype(np.float32)


def guide_size(frame_w: int, frame_h: int, refine_size: int) -> tuple[int, int]:
    """(width, height) of the guide: the frame's aspect with `refine_size` px on the short side, never larger."""
    scale = min(1.0, refine_size / min(frame_w, frame_h))
    return max(8, round(frame_w * scale)), max(8, round(frame_h * scale))


class MatteBuilder:
    """Turns per-frame confidence masks into alpha mattes; one per stream (it keeps temporal state)."""

    def __init__(self, settings: MatteSettings, *, video: bool) -> None:
        self.video = video
        self._alpha: np.ndarray | None = None
        self._gsize: tuple[int, int] | None = None
        self._have_prev = False
        self._prev_plain: np.ndarray | None = None
        self._reducer = Reducer()  # used when the caller brings no shared one
        self._guided = GuidedFilter()
        self.deferred = False  # the last build() left the soft-edge LUT to the compositor
        self.source: np.ndarray | None = None  # ... and this is what it upsampled (see build())
        self.configure(settings)

    def configure(self, settings: MatteSettings) -> None:
        """Take new settings between frames (live tuning) without losing the temporal state."""
        self.settings = settings
        self.lut = smoothstep_lut(settings.threshold, settings.edge_width)  # replaced, never changed in place
        self._wlut = motion_weight_lut(settings.temporal, settings.motion)

    def reset(self) -> None:
        """Forget the previous frame (a cut in the input, e.g. after a camera reconnect)."""
        self._have_prev = False
        self._prev_plain = None

    # -- buffers ------------------------------------------------------------------------------------------
    def _ensure_guide(self, gw: int, gh: int) -> None:
        if self._gsize == (gw, gh):
            return
        self._gsize = (gw, gh)
        self._gray = np.empty((gh, gw), np.uint8)
        self._prev_gray = np.empty((gh, gw), np.uint8)
        self._diff = np.empty((gh, gw), np.uint8)
        self._soft = np.empty((gh, gw), np.float32)   # this frame's refined mask
        self._prev = np.empty((gh, gw), np.float32)   # the temporally smoothed mask
        self._weight = np.empty((gh, gw), np.float32)
        self._tmp = np.empty((gh, gw), np.float32)
        self._mask8 = np.empty((gh, gw), np.uint8)
        self._have_prev = False

    def _ensure_alpha(self, w: int, h: int) -> np.ndarray:
        if self._alpha is None or self._alpha.shape != (h, w):
            self._alpha = np.empty((h, w), np.uint8)
        return self._alpha

    # -- the stage ----------------------------------------------------------------------------------------
    def build(self, confidence: np.ndarray, size: tuple[int, int], frame: np.ndarray | None = None,
              reduced: Reducer | None = None, dst: np.ndarray | None = None,
              defer_lut: bool = False) -> np.ndarray:
        """Alpha matte of (width, height) `size`, into `dst` if given, else into a buffer reused by the
        next call.

        With `frame` (BGR, `size`) and refine = "guided", the edge follows the frame's own edges; without
        it (or refine = "none") the mask is upsampled bilinearly. `reduced`: the frame's shared Reducer,
        already set to `frame`, if the caller has one.

        `defer_lut`: leave the soft-edge mapping to the compositor, which applies `self.lut` only on the
        person's edge (Compositor.blend); a full-frame LUT costs 0.3 ms at 720p, 0.6 ms at 1080p. The
        mapping is not deferred when a feather follows it: then `deferred` is False and the matte is final.
        When deferred, `self.source` is the small mask the matte was upsampled from (a buffer reused by
        the next call), from which the compositor finds the person's extent.
        """
        s = self.settings
        w, h = size
        alpha = self._ensure_alpha(w, h) if dst is None else dst
        if frame is not None and s.refine == "guided":
            if reduced is None:
                reduced = self._reducer
                reduced.set(frame)
            mask = self._refined(confidence, reduced)
        else:
            mask = self._plain(confidence)
        cv2.resize(mask, (w, h), dst=alpha, interpolation=cv2.INTER_LINEAR)
        self.deferred = defer_lut and s.feather <= 0
        if self.deferred:
            self.source = mask
            return alpha
        cv2.LUT(alpha, self.lut, dst=alpha)
        if s.feather > 0:
            k = 2 * s.feather + 1
            cv2.GaussianBlur(alpha, (k, k), 0, dst=alpha)
        return alpha

    def _plain(self, confidence: np.ndarray) -> np.ndarray:
        """No guide: temporal average at mask resolution, with a fixed weight (no frame to see motion)."""
        s = self.settings
        if not (self.video and s.temporal > 0):
            return confidence
        if self._prev_plain is None or self._prev_plain.shape != confidence.shape:
            self._prev_plain = confidence.copy()
        else:
            cv2.addWeighted(self._prev_plain, s.temporal, confidence, 1.0 - s.temporal, 0.0, dst=self._prev_plain)
        return self._prev_plain

    def _refined(self, confidence: np.ndarray, reduced: Reducer) -> np.ndarray:
        """Guided filter at guide size, then motion-gated temporal average; returns uint8 at guide size."""
        s = self.settings
        fh, fw = reduced.hw
        gw, gh = guide_size(fw, fh, s.refine_size)
        self._ensure_guide(gw, gh)
        reduced.gray((gw, gh), self._gray)
        eps = (s.refine_eps * 255.0) ** 2  # in squared grey levels (the filter keeps it at 1 or more)
        self._guided.apply(self._gray, confidence, s.refine_radius, eps, dst=self._soft)
        if self.video and s.temporal > 0:
            if not self._have_prev:
                self._prev[...] = self._soft
            else:
                # weight of the past where the picture did not change; 0 where it moved
                cv2.absdiff(self._gray, self._prev_gray, dst=self._diff)
                cv2.blur(self._diff, (3, 3), dst=self._diff)
                cv2.dilate(self._diff, _K5, dst=self._diff)
                cv2.LUT(self._diff, self._wlut, dst=self._weight)
                # prev = soft + (prev - soft) * weight
                cv2.subtract(self._prev, self._soft, dst=self._tmp)
                cv2.multiply(self._tmp, self._weight, dst=self._tmp)
                cv2.add(self._soft, self._tmp, dst=self._prev)
            self._prev_gray[...] = self._gray
            self._have_prev = True
            src = self._prev
        else:
            self._have_prev = False
            src = self._soft
        cv2.max(src, 0.0, dst=self._tmp)  # the filter can undershoot a little; the conversion saturates at 255
        cv2.convertScaleAbs(self._tmp, dst=self._mask8)
        return self._mask8
