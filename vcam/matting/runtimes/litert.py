"""The "litert" runtime: the selfie .tflite run by ai-edge-litert (XNNPACK), without MediaPipe.

Why: it skips MediaPipe's graph machinery (packet copies, a float mask at input size) around the same
model. To give the same mask as the MediaPipe runtime it samples the input the way MediaPipe's CPU
ImageToTensorCalculator does, a corner-aligned bilinear map (pixel edge 0 -> 0, edge w -> model width;
not cv2.resize's centre alignment) to the model input, scaled to 0..1 floats; the model's output is
resized back to the mask size bilinearly, as MediaPipe's TensorsToSegmentation does (after, not before,
its conversion to 0..255, which is cheaper and moves the mask by under a level). The map starts from
the shared reduction of the frame by the largest whole factor that stays above the mask size, where
MediaPipe first resizes to the mask size: one resize less, the same mask (docs/performance.md).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from vcam.frames.reduce import Reducer
from vcam.matting.models import ModelError, check_signature, mask_size_for, unusable_model
from vcam.matting.runtimes.base import SegmenterBase
from vcam.native import native_stderr_to_log


def _threads() -> int:
    """Half the cores (1..4): the capture, compositing and output threads need the rest; on 2 cores
    one thread was faster than two (docs/matte.md)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class LiteRTSegmenter(SegmenterBase):
    """Same interface and output as MediaPipeSegmenter; the model keeps no state, so no timestamps."""

    runtime = "litert"

    def __init__(self, model: str = "general", model_path: str = "", *, video: bool = False) -> None:
        super().__init__(model, model_path, video)
        path = self.path
        try:
            # Imported here: ai-edge-litert is heavy and optional (runtime = "mediapipe" runs without it).
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError("[segmentation] runtime = \"litert\" needs the ai-edge-litert package "
                             "(pip install ai-edge-litert==2.3.0), or use runtime = \"mediapipe\"") from None
        try:
            with native_stderr_to_log():  # "Created TensorFlow Lite XNNPACK delegate" and the like
                self._interp = Interpreter(model_path=str(path), num_threads=_threads())
                self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise unusable_model(path, e) from None
        inp = self._interp.get_input_details()
        out = self._interp.get_output_details()
        self._model_h, self._model_w = check_signature(inp, out, path)
        self._in_index, self._out_index = inp[0]["index"], out[0]["index"]
        self._in8 = np.empty((self._model_h, self._model_w, 3), np.uint8)
        self._bgr8 = np.empty_like(self._in8)
        self._inf = np.empty((1, self._model_h, self._model_w, 3), np.float32)
        self._out8 = np.empty((self._model_h, self._model_w), np.uint8)
        self._size: tuple[int, int] | None = None

    def close(self) -> None:
        self._interp = None

    def _geometry(self, w: int, h: int) -> tuple[int, int, int]:
        """(mask w, mask h, reduction factor) for a w x h frame; makes the buffers and the warp.

        Factor 1 (a frame under twice the mask size): the frame is first resized to the mask size, as
        MediaPipe does, so small pictures are sampled exactly as there."""
        if self._size != (w, h):
            self._size = (w, h)
            mw, mh = mask_size_for(w, h, self.model)
            f = max(1, min(w // mw, h // mh))
            self._geo = (mw, mh, f)
            self._mask = np.empty((mh, mw), np.uint8)
            self._small = np.empty((mh, mw, 3), np.uint8)
            # corner-aligned: the source's edges go to the model input's edges; Reducer.by(f) spreads
            # the whole frame over w // f x h // f pixels
            sw, sh = (w // f, h // f) if f > 1 else (mw, mh)
            self._warp = np.array([[self._model_w / sw, 0, 0], [0, self._model_h / sh, 0]], np.float32)
        return self._geo

    def segment(self, frame: np.ndarray, timestamp_ms: int | None = None,
                reduced: Reducer | None = None) -> np.ndarray:
        """Person confidence 0..255 (uint8) at the working mask size for this frame's aspect."""
        reduced = self._reduced(frame, reduced)
        h, w = reduced.hw
        mw, mh, f = self._geometry(w, h)
        # an I420 frame: warped as its small Y, Cr, Cb picture and turned into RGB at the model's size
        planar = reduced.planar and f > 1 and f & (f - 1) == 0
        if planar:
            source = reduced.ycc(f)
        else:
            source = reduced.by(f) if f > 1 else reduced.resize((mw, mh), self._small)
        cv2.warpAffine(source, self._warp, (self._model_w, self._model_h), dst=self._bgr8,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if planar:
            cv2.cvtColor(self._bgr8, cv2.COLOR_YCrCb2RGB, dst=self._in8)
        else:
            cv2.cvtColor(self._bgr8, cv2.COLOR_BGR2RGB, dst=self._in8)
        np.multiply(self._in8, np.float32(1.0 / 255.0), out=self._inf[0])
        self._interp.set_tensor(self._in_index, self._inf)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out_index)[0]
        # to 0..255 at the model's size (256x256), then resized as uint8: cheaper than a float resize to
        # the mask size and the conversion there, and the mask moves by under a level (docs/performance.md)
        cv2.convertScaleAbs(out[:, :, -1], dst=self._out8, alpha=255.0)
        cv2.resize(self._out8, (mw, mh), dst=self._mask, interpolation=cv2.INTER_LINEAR)
        return self._mask
