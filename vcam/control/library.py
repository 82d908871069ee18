"""The background library (images and videos from [backgrounds] paths, in a stable order), loaded so
that switching backgrounds never stalls the frame path.

Opening, decoding and scaling a file takes several frame intervals, so it runs on the loader (one job at
a time, which keeps rapid switches in order, with a deadline: vcam/control/loader.py); a ready
background is swapped into the live state in one step. An undecodable file is skipped with a log line
(a few per switch, then one summary line); a replaced background is closed once no frame in flight can
still use it.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vcam.compositing.backgrounds import (
    Background,
    BackgroundError,
    ColorBackground,
    ImageBackground,
    VideoBackground,
    is_image_path,
    is_video_path,
    load_background,
)
from vcam.control.loader import Loader, LoadJob

log = logging.getLogger(__name__)

RETIRE_DELAY_S = 2.0  # far longer than one frame: the worker has moved on before a replaced video closes
MAX_SKIP_LINES = 3  # undecodable files named one by one in a switch; the rest in one summary line


def _path_problem(path: Path) -> str | None:
    """Why a configured library path cannot be used, in words, or None."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symlink loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist"
        return f"cannot be read ({e.strerror or e})"
    return None


def _folder_files(path: Path) -> list[Path]:
    files = [p for p in path.iterdir() if (is_image_path(p) or is_video_path(p)) and p.is_file()]
    return sorted(files, key=lambda p: (p.name.lower(), p.name))


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def scan(paths: list[str]) -> list[Path]:
    """Image and video files of `paths` (directories: their files sorted by name; files: as given); a path
    that is missing, unreadable or a symlink loop is logged and skipped, never fatal."""
    entries: list[Path] = []
    for spec in paths:
        path = Path(spec).expanduser()
        problem = _path_problem(path)
        if problem is None and path.is_dir():
            try:
                entries.extend(_folder_files(path))
            except OSError as e:
                problem = f"cannot be read ({e.strerror or e})"
        elif problem is None and path.is_file():
            entries.append(path)
        elif problem is None:
            problem = "is not a file or a folder"
        if problem:
            log.warning("background library: %s %s, skipped", path, problem)
    seen: set[Path] = set()
    unique = []
    for p in entries:
        key = _key(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def prewarm(bg: Background, size: tuple[int, int]) -> None:
    """Scale to the frame size now, so the first frame that shows it costs no more than usual.

    (Images cache their scaled copy; a video decodes a frame per output frame anyway.)"""
    if isinstance(bg, (ImageBackground, ColorBackground)):
        bg.frame(size)


def effect_for(background: Background) -> str:
    """The effect name that shows `background`: 'video' for a looping video, else 'replace'."""
    return "video" if isinstance(background, VideoBackground) else "replace"


@dataclass(frozen=True)
class Switch:
    """The outcome of a background request: the background now live, or None for the blur fallback."""

    background: Background | None
    index: int | None  # 0-based position in the library, None for a path/colour outside it
    skipped: tuple[str, ...] = ()  # files that could not be decoded on the way


def _discard(switch: object) -> None:
    if isinstance(switch, Switch) and switch.background is not None:
        switch.background.close()


class BackgroundLibrary:
    """The configured backgrounds, a current position, and the loader that switches them."""

    def __init__(self, paths: list[str], frame_size: Callable[[], tuple[int, int]]) -> None:
        self.paths = list(paths)
        self.entries = scan(self.paths)
        self.position: int | None = None
        self._frame_size = frame_size
        self._bad: set[Path] = set()
        # Normal priority on purpose: a niced loader thread that is preempted while holding the GIL
        # stalls the frame path behind it (priority inversion; measured in docs/control.md).
        self._loader = Loader()
        self._retired: list[tuple[float, Background]] = []
        self._lock = threading.Lock()
        log.info("background library: %d file(s) from %d path(s)", len(self.entries), len(self.paths))

    def __len__(self) -> int:
        return len(self.entries)

    # -- requests (any thread); the returned job's result() is the Switch once it is live --------------------
    def step(self, delta: int, apply: Callable[[Switch], None]) -> LoadJob:
        """Move `delta` entries along the library (wrapping), skipping undecodable files."""
        return self._submit(lambda job: self._step(job, delta), apply, "library entry")

    def select(self, target: str, apply: Callable[[Switch], None]) -> LoadJob:
        """Show entry N (1-based, as `vcam ctl background 3`), an entry's file name, a path or a colour."""
        return self._submit(lambda job: self._select(job, target), apply, target.strip())

    def for_effect(self, configured: str, apply: Callable[[Switch], None]) -> LoadJob:
        """What a background effect shows when nothing is loaded: `configured` ([effect] background), else
        the library's current entry, else white; one job, so the caller waits once."""
        def work(job: LoadJob) -> Switch:
            if configured:
                try:
                    return self._select(job, configured)
                except BackgroundError as e:
                    log.warning("[effect] background not usable (%s); using the library or white", e)
            if self.entries:
                return self._step(job, 0 if self.position is not None else 1)
            return Switch(ColorBackground((255, 255, 255), "white"), None)
        return self._submit(work, apply, configured or "library entry")

    def load(self, spec: str) -> LoadJob:
        """Load `spec` (a path or a colour) and apply nothing: the background it returns is the caller's."""
        return self._loader.submit(lambda job: Switch(self._open(job, spec), None), lambda _switch: None,
                                   spec, _discard)

    def supersede(self) -> None:
        """A switch applied directly (a colour) wins over every load still pending."""
        self._loader.supersede()

    def retire(self, background: Background | None) -> None:
        """Close `background` a little later, when no frame in flight can still use it."""
        if background is not None:
            with self._lock:
                self._retired.append((time.monotonic() + RETIRE_DELAY_S, background))
            timer = threading.Timer(RETIRE_DELAY_S + 0.05, self._close_retired)
            timer.daemon = True
            timer.start()

    def close(self, reason: str = "vcam is stopping") -> None:
        """Stop loading and close what is retired; returns at once, even with a load stuck in a file."""
        self._loader.close(reason)
        with self._lock:
            retired, self._retired = self._retired, []
        for _, bg in retired:
            bg.close()

    # -- loader thread ---------------------------------------------------------------------------------------
    def _submit(self, work: Callable[[LoadJob], Switch], apply: Callable[[Switch], None],
                label: str) -> LoadJob:
        def commit(switch: Switch) -> None:
            n = len(self.entries)
            if switch.background is None:
                log.warning("background library: no usable background (%d configured); falling back to blur",
                            n)
            else:
                if switch.index is not None:
                    self.position = switch.index
                    log.info("background %d/%d: %s", switch.index + 1, n, self.entries[switch.index])
                else:
                    log.info("background: %s", switch.background.label)
            apply(switch)
        return self._loader.submit(work, commit, label, _discard)

    def _open(self, job: LoadJob, spec: str | Path) -> Background:
        """The background `spec` (a path or a colour) names, loaded and prewarmed at the output size."""
        job.label = str(spec)  # what a deadline message names
        bg = load_background(str(spec))  # raises BackgroundError naming it
        prewarm(bg, self._frame_size())
        return bg

    def _step(self, job: LoadJob, delta: int) -> Switch:
        self._close_retired()
        n = len(self.entries)
        if n == 0:
            return Switch(None, None)
        position = self.position
        start = -1 if position is None and delta > 0 else (position if position is not None else 0)
        step = 1 if delta >= 0 else -1
        index = (start + delta) % n
        skipped: list[str] = []
        found: Switch | None = None
        for _ in range(n):
            if not job.live:  # abandoned: its result is discarded anyway
                break
            path = self.entries[index]
            if path not in self._bad:
                try:
                    found = Switch(self._open(job, path), index)
                    break
                except Exception as e:  # undecodable (BackgroundError) or worse: skip it, never crash
                    self._bad.add(path)
                    skipped.append(path.name)
                    if len(skipped) <= MAX_SKIP_LINES:
                        why = str(e) if isinstance(e, BackgroundError) else f"{path}: {type(e).__name__}: {e}"
                        log.warning("background library: skipping %s", why)
            index = (index + step) % n
        if len(skipped) > MAX_SKIP_LINES:
            log.warning("background library: skipped %d more undecodable files (%d in all)",
                        len(skipped) - MAX_SKIP_LINES, len(skipped))
        return replace(found or Switch(None, None), skipped=tuple(skipped))

    def _entry_named(self, name: str) -> int | None:
        """The library entry whose file name is `name` (as `vcam ctl background beach.jpg` gives it)."""
        if os.sep in name:
            return None
        return next((i for i, p in enumerate(self.entries) if p.name == name), None)

    def _select(self, job: LoadJob, target: str) -> Switch:
        self._close_retired()
        target = target.strip()
        index = int(target) - 1 if target.isdecimal() else self._entry_named(target)
        if target.isdecimal() and not 0 <= index < len(self.entries):
            raise BackgroundError(f"background {int(target)}: the library has {len(self.entries)} entries "
                                  f"(numbered from 1)")
        if index is not None:
            path = self.entries[index]
            try:
                return Switch(self._open(job, path), index)
            except BackgroundError:
                self._bad.add(path)
                log.warning("background library: %s cannot be decoded", path)
                raise
        bg = self._open(job, target)  # a path or a colour
        if isinstance(bg, ColorBackground):
            return Switch(bg, None)
        resolved = _key(Path(target).expanduser())
        return Switch(bg, next((i for i, p in enumerate(self.entries) if _key(p) == resolved), None))

    def _close_retired(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [bg for t, bg in self._retired if t <= now]
            self._retired = [(t, bg) for t, bg in self._retired if t > now]
        for bg in due:
            bg.close()
