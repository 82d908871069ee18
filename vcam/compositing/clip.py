"""A background clip decoded on its own thread, one shown frame ahead, as I420 at the output size.

Why: decoding and scaling a clip frame takes several ms (more than the rest of compositing at 1080p);
on the compositor's thread that is latency for the frames that show a new clip frame. Here it happens
while the previous frame is shown, and the compositor only copies a ready picture. Each clip frame is
converted once, at the clip's own size, and its planes scaled to the output (a BGR scale at 1080p cost
four times as much); a short loop is decoded from the file once and then from JPEGs of its output
pictures (ClipFrames).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from vcam.frames import i420, turbojpeg
from vcam.native import native_stderr_to_log

log = logging.getLogger(__name__)

BUFFERS = 3  # the frame shown, the next one ready, the one being made
CACHE_BYTES = 32 << 20  # the most a clip's kept JPEGs take (a 2-3 s loop at 1080p: 13-20 MB)
JPEG_QUALITY = 90  # 45 dB or more from the decoded picture (docs/performance.md)


class ClipReader:
    """Frames of a looping clip by number (counted from the start, across loops), as limited-range I420
    at a size; `get()` waits only when the asked frame is not ready yet. One consumer at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._size: tuple[int, int] | None = None
        self._target = -1  # the highest frame number asked or hinted
        self._ready: dict[int, np.ndarray] = {}  # frame number -> its picture at _size, not shown yet
        self._shown: np.ndarray | None = None  # what get() returned last: never written while shown
        self._shown_no = -1
        self._free: list[np.ndarray] = []
        self._closed = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="vcam-clip", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (it releases the clip); get() then returns what it has."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, n: int, size: tuple[int, int], ahead: int = 1) -> np.ndarray | None:
        """Frame `n` at (width, height) `size` (or a later one, if the reader went past it), then frame
        n + `ahead` is made ready; None if the clip could not be decoded."""
        with self._cond:
            if size != self._size:  # a new output size: what is ready is for the old one
                self._size, self._ready, self._free, self._shown, self._shown_no = size, {}, [], None, -1
            self._target = max(self._target, n)
            self._cond.notify_all()
            while self._shown_no < n and not any(k >= n for k in self._ready):
                if self._failed or self._closed:
                    return self._shown
                self._cond.wait(1.0)
            if self._shown_no < n:
                k = min(k for k in self._ready if k >= n)
                picture = self._ready.pop(k)
                for old in [old for old in self._ready if old < k]:
                    self._free.append(self._ready.pop(old))
                if self._shown is not None:
                    self._free.append(self._shown)
                self._shown, self._shown_no = picture, k
            self._target = max(self._target, self._shown_no + max(1, ahead))
            self._cond.notify_all()
            return self._shown

    # -- the thread ---------------------------------------------------------------------------------------
    def _next_job(self, done: int) -> tuple[int, tuple[int, int], np.ndarray] | None:
        """Wait for a frame to make: (its number, at least `done`, the last one decoded; its size; a buffer
        to make it in); None once closed."""
        with self._cond:
            while not self._closed:
                m, size = max(self._target, done), self._size
                if (size is not None and m > self._shown_no and m not in self._ready
                        and len(self._ready) + (self._shown is not None) < BUFFERS):
                    buffer = self._free.pop() if self._free else None
                    if buffer is None or buffer.shape != i420.shape(size):
                        buffer = i420.new(size)
                    return m, size, buffer
                self._cond.wait()
        return None

    def _run(self) -> None:
        frames = ClipFrames(self.path)
        try:
            while True:
                job = self._next_job(frames.done)
                if job is None:
                    return
                n, size, buffer = job
                frames.make(n, size, buffer)
                with self._cond:
                    if size == self._size and n > self._shown_no:
                        self._ready[n] = buffer
                        self._cond.notify_all()
        except Exception as e:  # whatever it was, the clip is done; the caller shows what it had
            log.warning("background video %s: %s; showing its last frame", self.path, e)
            with self._cond:
                self._failed = True
                self._cond.notify_all()
        finally:
            frames.close()


class ClipFrames:
    """Clip frame n (n never going back) at a size, into a buffer: decoded from the file the first time
    round, every frame of it kept as a JPEG of the output picture (while the clip fits CACHE_BYTES), and
    from then on decoded from those, straight to planes, which costs half as much as the clip's own codec
    and its two colour conversions (docs/performance.md).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cap: cv2.VideoCapture | None = self._open()
        self.done = -1  # the number of the last frame made (counted across loops)
        self._pos = -1  # its position in the file (set by _open)
        self._count: int | None = None  # frames in the file, known after the first loop
        self._bgr: np.ndarray | None = None  # the last frame decoded from the file
        self._converted: np.ndarray | None = None
        self._jpegs: dict[int, bytes] | None = {} if turbojpeg.library() is not None else None
        self._jpeg_size: tuple[int, int] | None = None  # the size the JPEGs are of
        self._jpeg_bytes = 0
        self._decoder: turbojpeg.YuvDecoder | None = None

    def _open(self) -> cv2.VideoCapture:
        """The file, at its start; decoded on one thread (ours: FFmpeg's own would only add overhead)."""
        with native_stderr_to_log():
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # shown the way players show it
        self._pos = -1
        return cap

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._decoder is not None:
            self._decoder.close()

    @property
    def _cached(self) -> bool:
        """Every frame of the file is a JPEG of the current size."""
        return self._jpegs is not None and self._count is not None and len(self._jpegs) == self._count

    def make(self, n: int, size: tuple[int, int], buffer: np.ndarray) -> None:
        """Frame `n` (at least `done`) as limited-range I420 of (width, height) `size` into `buffer`."""
        if self._jpegs is not None and self._jpeg_size != size:  # kept for another size: start again
            self._jpegs, self._jpeg_size, self._jpeg_bytes = {}, size, 0
        if n > self.done and self._cached:
            self._pos = (self._pos + n - self.done) % self._count
            self.done, self._bgr = n, None
            self._from_jpeg(self._jpegs[self._pos], buffer)
            return
        if n <= self.done and self._bgr is not None:  # the last frame again, at a new size
            self._convert(size, buffer)
            return
        n = max(n, self.done + 1)
        while self.done < n:
            self._advance()
            keep = self._jpegs is not None and self._pos not in self._jpegs
            if self.done == n or keep:  # the frames in between are only decoded to be kept
                ok, self._bgr = self._cap.retrieve(self._bgr)
                if not ok:
                    raise OSError("cannot decode a frame")
                picture = self._convert(size, buffer)
                if keep:
                    self._keep(picture)
        if self._cached:  # the file is no longer needed
            self._cap.release()
            self._cap = None

    def _advance(self) -> None:
        """Move to the next frame of the file (from the start again at its end), without decoding it."""
        if self._cap is None:  # only the JPEGs were left, for another size: read the file again
            self._cap = self._open()
        if not self._cap.grab():
            self._count = self._pos + 1
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pos = -1
            if not self._cap.grab():
                raise OSError("cannot decode the clip")
        self._pos += 1
        self.done += 1

    def _convert(self, size: tuple[int, int], buffer: np.ndarray) -> np.ndarray:
        """The last decoded frame as I420 of `size`, into `buffer`: converted at its own size, then its
        planes scaled."""
        bgr = self._bgr
        if i420.even((bgr.shape[1], bgr.shape[0])) == size:
            return i420.from_bgr(bgr, buffer)
        self._converted = i420.from_bgr(bgr, self._converted)
        return i420.resize(self._converted, size, dst=buffer)

    def _keep(self, picture: np.ndarray) -> None:
        """Keep `picture`, the file's frame at _pos, as a JPEG; give up keeping when the clip is too long."""
        y, u, v = i420.planes(picture)
        data = simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=JPEG_QUALITY, fastdct=True)
        self._jpeg_bytes += len(data)
        if self._jpeg_bytes > CACHE_BYTES:
            log.debug("background video %s: too long to keep decoded; decoding it all along", self.path)
            self._jpegs = None
            return
        self._jpegs[self._pos] = data

    def _from_jpeg(self, data: bytes, buffer: np.ndarray) -> None:
        if self._decoder is None:
            self._decoder = turbojpeg.YuvDecoder()
        y, u, v = i420.planes(buffer)
        if not self._decoder.decode(np.frombuffer(data, np.uint8), y, u, v):
            raise OSError("cannot decode a kept frame")
