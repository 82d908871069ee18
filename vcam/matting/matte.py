"""Matte stage: the model's soft confidence mask -> an alpha matte at frame size (uint8, 255 = person).

The model sees a ~256 px picture, so its mask is blurry and blocky at frame size and flickers from
frame to frame. The steps below, each measured by `vcam eval` (docs/matte.md), fix that:
  1. edge-aware upsampling (refine = "guided"): the mask is brought to a reduced "guide" size
     (refine_size px on the short side) and run through a guided filter (matting/guided.py) whose
     guide is the frame at that size, in colour (guide = "colour", matting/guided.py's ColourGuidedFilter:
     it follows edges between colours of one grey) or grey (guide = "grey", cheaper), so the mask edge
     snaps to the real edges of hair and shoulders.
     Where the model is sure of the person (confidence >= `confident`) the filtered mask keeps at least
     the model's value: a grey guide's local a*I + b cannot hold a person both lighter and darker than
     the wall, and unbounded it cut into them. A still in file mode with quality = "best" takes the
     colour picture as its guide instead (build(colour=True), from matting/quality.py);
  2. temporal smoothing (video only): an exponential average with the previous matte whose weight
     `temporal` drops to 0 where the frame changed by `motion` grey levels or more (the change map is
     box-blurred against noise, then dilated so the whole neighbourhood of a moving edge counts as
     moving), so still edges stop flickering and moving edges follow at once (no smear, no lag);
  3. upsampling to the frame size (bilinear) and the soft-edge mapping: a smoothstep from
     threshold - edge_width/2 to threshold + edge_width/2, as a LUT, which compositing applies on the
     person's edge only (build_matte(): the Matte carries the LUT still to apply);
  4. optional feather: a Gaussian blur of the matte edge.
Everything at frame size is uint8 OpenCV on buffers kept between frames; the float work happens at the
guide size only (427x240 for 720p and 1080p alike).

The stage's product is a `Matte` (below): what the compositors take, and what travels between the live
pipeline's threads.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vcam.config import MatteSettings
from vcam.frames.reduce import Reducer
from vcam.matting.guided import ColourGuidedFilter, GuidedFilter

# Grey-level changes below this are camera noise, not motion: the temporal weight stays at full there.
MOTION_NOISE = 3
# The motion map is dilated by this: a moving edge's neighbours must follow it too, or they trail it.
_K5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


@dataclass(eq=False)
class Matte:
    """One frame's matte, as the matte stage hands it to compositing.

    `alpha`: uint8, (height, width) of the frame, 0 = background, 255 = person. It is final only once
    `lut` is applied: `lut` is the soft-edge mapping (256 uint8 entries, read-only) still to apply, or
    None when alpha is final already. The compositors apply it on the person's edge only, since
    everywhere else the matte is all background or all person; `final()` applies it everywhere (files,
    eval, masks).

    `mask`: the small mask alpha was upsampled from bilinearly (uint8, the guide's size, or the model's
    with refine = "none"), or None; a bilinear pixel lies between the pixels it is made from, so
    compositing reads the person's extent from it instead of from the whole alpha. Matting sets it
    whenever it leaves a `lut`.

    `small`: the frame reduced by compositing.blur.blur_factor() (a box average), for the blur effect,
    or None: BGR for a BGR frame, Y/Cr/Cb (full range, cv2's YCrCb order) for an I420 frame.

    A Matte owns its buffers (`lut` is shared, but never changed in place), so it can travel to another
    thread while the next frame's is made, and be refilled (Matting.run(into=...)).
    """

    alpha: np.ndarray
    lut: np.ndarray | None = None
    mask: np.ndarray | None = None
    small: np.ndarray | None = None

    @classmethod
    def blank(cls, size: tuple[int, int]) -> Matte:
        """A Matte with an (uninitialised) alpha buffer for a (width, height) frame."""
        return cls(np.empty(size[::-1], np.uint8))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frame it belongs to."""
        return self.alpha.shape[1], self.alpha.shape[0]

    def fit(self, size: tuple[int, int]) -> None:
        """Make the alpha buffer (width, height) `size`, keeping it if it is already."""
        if self.alpha.shape != size[::-1]:
            self.alpha = np.empty(size[::-1], np.uint8)

    def final(self, dst: np.ndarray | None = None) -> np.ndarray:
        """Alpha with the LUT applied, into `dst` (a new array if None); alpha itself when there is no
        LUT and no `dst`."""
        if self.lut is not None:
            return cv2.LUT(self.alpha, self.lut, dst=dst)
        if dst is None:
            return self.alpha
        np.copyto(dst, self.alpha)
        return dst

    def keep_mask(self, mask: np.ndarray | None) -> None:
        """`mask` copied into our own buffer (None: no mask)."""
        self.mask = None if mask is None else _kept(self.mask, mask)

    def keep_small(self, small: np.ndarray | None) -> None:
        """`small` copied into our own buffer (None: no small picture)."""
        self.small = None if small is None else _kept(self.small, small)


def _kept(buffer: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    """A copy of `image` in `buffer` (a new buffer if it has another shape)."""
    if buffer is None or buffer.shape != image.shape:
        buffer = np.empty_like(image)
    np.copyto(buffer, image)
    return buffer


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
    """(width, height) of the guide: the frame's aspect with `refine_size` px on the short side, never
    larger."""
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
        self._guided_colour = ColourGuidedFilter()
        self._sure_low: np.ndarray | None = None  # the bound at the model mask's reduced size
        self.configure(settings)

    def configure(self, settings: MatteSettings) -> None:
        """Take new settings between frames (live tuning) without losing the temporal state."""
        self.settings = settings
        # replaced, never changed in place: Mattes already handed out keep the one they were made with
        self.lut = smoothstep_lut(settings.threshold, settings.edge_width)
        self.lut.flags.writeable = False
        self._wlut = motion_weight_lut(settings.temporal, settings.motion)
        # the model is sure of the person at or above this confidence*255 (None: confident = 1, no bound)
        self._sure = round(settings.confident * 255) - 0.5 if settings.confident < 1.0 else None

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
        self._limit = np.empty((gh, gw), np.float32)  # the bound at guide size
        self._colour = np.empty((gh, gw, 3), np.uint8)  # the colour guide (guide = "colour")
        self._have_prev = False

    def _ensure_alpha(self, w: int, h: int) -> np.ndarray:
        if self._alpha is None or self._alpha.shape != (h, w):
            self._alpha = np.empty((h, w), np.uint8)
        return self._alpha

    # -- the stage ----------------------------------------------------------------------------------------
    def build(self, confidence: np.ndarray, size: tuple[int, int], frame: np.ndarray | None = None,
              reduced: Reducer | None = None, dst: np.ndarray | None = None, *,
              colour: bool = False) -> np.ndarray:
        """The final alpha matte of (width, height) `size`, into `dst` if given, else into a buffer reused
        by the next call.

        With `frame` (`size`; BGR or I420) and refine = "guided", the edge follows the frame's own edges;
        without it (or refine = "none") the mask is upsampled bilinearly. `reduced`: the frame's shared
        Reducer, already set to `frame`, if the caller has one. `colour`: a BGR still's colour picture is
        the guide (quality = "best"; ignored for video and I420).
        """
        w, h = size
        alpha = self._ensure_alpha(w, h) if dst is None else dst
        self._upsample(confidence, alpha, frame, reduced, colour)
        return self._soft_edge(alpha)

    def build_matte(self, confidence: np.ndarray, frame: np.ndarray, reduced: Reducer | None,
                    into: Matte, *, colour: bool = False) -> Matte:
        """build() into `into` (its alpha already the frame's size), leaving the soft-edge LUT to
        compositing, which applies it on the person's edge only: `into.lut` and `into.mask` are set.
        With a feather, which must follow the LUT, the alpha is made final instead (lut and mask None).
        """
        mask = self._upsample(confidence, into.alpha, frame, reduced, colour)
        if self.settings.feather > 0:
            self._soft_edge(into.alpha)
            into.lut = None
            into.keep_mask(None)
        else:
            into.lut = self.lut
            into.keep_mask(mask)
        return into

    def _upsample(self, confidence: np.ndarray, alpha: np.ndarray, frame: np.ndarray | None,
                  reduced: Reducer | None, colour: bool = False) -> np.ndarray:
        """The refined (or plain) small mask, upsampled bilinearly into `alpha`; returns the small mask
        (a buffer of ours, or `confidence` itself)."""
        if frame is not None and self.settings.refine == "guided":
            if colour and not self.video and frame.ndim == 3:
                mask = self._refined_colour(confidence, frame)
            else:
                if reduced is None:
                    reduced = self._reducer
                    reduced.set(frame)
                mask = self._refined(confidence, reduced)
        else:
            mask = self._plain(confidence)
        cv2.resize(mask, alpha.shape[::-1], dst=alpha, interpolation=cv2.INTER_LINEAR)
        return mask

    def _soft_edge(self, alpha: np.ndarray) -> np.ndarray:
        """The soft-edge LUT applied to `alpha` in place, then the feather if any."""
        cv2.LUT(alpha, self.lut, dst=alpha)
        feather = self.settings.feather
        if feather > 0:
            k = 2 * feather + 1
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
            cv2.addWeighted(self._prev_plain, s.temporal, confidence, 1.0 - s.temporal, 0.0,
                            dst=self._prev_plain)
        return self._prev_plain

    def _refined(self, confidence: np.ndarray, reduced: Reducer) -> np.ndarray:
        """Guided filter at guide size, then motion-gated temporal average; returns uint8 at guide size."""
        s = self.settings
        fh, fw = reduced.hw
        gw, gh = guide_size(fw, fh, s.refine_size)
        self._ensure_guide(gw, gh)
        eps = (s.refine_eps * 255.0) ** 2  # in squared grey levels (the filter keeps it at 1 or more)
        if s.guide == "colour":
            self._colour_guide(reduced)
            self._guided_colour.apply(self._colour, confidence, s.refine_radius, eps, dst=self._soft)
            low_src = self._guided_colour.low_src
        else:
            reduced.gray((gw, gh), self._gray)
            self._guided.apply(self._gray, confidence, s.refine_radius, eps, dst=self._soft)
            low_src = self._guided.low_src
        bounded = self._bound(low_src, self._soft)  # before the average: less flicker
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
        if not bounded:  # (bounded, it is >= 0 already, and so is its temporal average)
            src = cv2.max(src, 0.0, dst=self._tmp)  # the filter can undershoot a little; the conversion
        cv2.convertScaleAbs(src, dst=self._mask8)     # takes |x| and saturates at 255
        return self._mask8

    def _colour_guide(self, reduced: Reducer) -> None:
        """The frame in colour (BGR) at guide size into self._colour, and in grey into self._gray (for
        the motion map)."""
        gh, gw = self._gray.shape
        reduced.colour((gw, gh), self._colour)
        cv2.cvtColor(self._colour, cv2.COLOR_BGR2GRAY, dst=self._gray)

    def _bound(self, confidence: np.ndarray, soft: np.ndarray) -> bool:
        """Hold the refined mask `soft` (float32, guide size) in place at least at the model's confidence
        where that is >= `confident`, and at 0 everywhere, so the filter only moves edges the model is
        unsure of; `confidence` is float32 0..255 at the guide's size or below. False when confident = 1.

        The bound is made at that smaller size and brought up by nearest neighbour: it only says where the
        model is sure, deep inside the person, not where the edge is (docs/matte.md)."""
        if self._sure is None:
            return False
        if self._sure_low is None or self._sure_low.shape != confidence.shape:
            self._sure_low = np.empty(confidence.shape, np.float32)
        cv2.threshold(confidence, self._sure, 0, cv2.THRESH_TOZERO, dst=self._sure_low)  # sure, else 0
        cv2.resize(self._sure_low, soft.shape[::-1], dst=self._limit, interpolation=cv2.INTER_NEAREST)
        cv2.max(soft, self._limit, dst=soft)
        return True

    def _refined_colour(self, confidence: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """build(colour=True), BGR stills only: OpenCV's guided filter with the colour picture as its guide,
        bounded like the grey one, since colour holds a person both lighter and darker than the wall."""
        s = self.settings
        h, w = frame.shape[:2]
        gw, gh = guide_size(w, h, s.refine_size)
        self._ensure_guide(gw, gh)
        guide = cv2.resize(frame, (gw, gh), interpolation=cv2.INTER_AREA)
        src = cv2.resize(confidence, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32)
        eps = max((s.refine_eps * 255.0) ** 2, 1.0)
        soft = cv2.ximgproc.guidedFilter(guide, src, s.refine_radius, eps, dDepth=cv2.CV_32F)
        if not self._bound(src, soft):
            cv2.max(soft, 0.0, dst=soft)
        cv2.convertScaleAbs(soft, dst=self._mask8)
        return self._mask8
