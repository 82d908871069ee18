"""Output files written so that a failure never leaves a broken file under the final name.

Each write goes to a unique temporary file in the target's folder (a rename within one filesystem is
atomic, and two runs never share a name), is flushed to disk and checked, and only then renamed over the
target. The temporary name carries the writer's pid, so the next run removes what a killed one left.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from vcam.errors import VcamError

PARTIAL = ".vcam-partial"
_STALE = re.compile(rf"^\..*{re.escape(PARTIAL)}-(\d+)(\.[^.]*)?$")


class OutputWriteError(VcamError):
    """The output could not be written; the target, if it existed, is unchanged."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: Path) -> None:
    """Delete temporary files of ours that a killed writer left in `folder` (their pid is gone)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _STALE.match(entry.name)
            if m and entry.is_file(follow_symlinks=False) and entry.stat().st_uid == os.getuid() \
                    and not _alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _fsync(path: Path | str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(target: Path, check: Callable[[Path], str | None] | None = None) -> Iterator[Path]:
    """A fresh temporary path beside `target` (same extension), renamed to `target` once the block has
    written it, it is on disk, and `check(path)` (if given) found nothing wrong; otherwise removed.

    Errors are OutputWriteError in one line naming `target`; `check` returns a problem or None."""
    folder = target.parent if str(target.parent) else Path(".")
    remove_stale_partials(folder)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.stem}.",
                                    suffix=f"{PARTIAL}-{os.getpid()}{target.suffix}")
        os.close(fd)
    except OSError as e:
        raise OutputWriteError(f"{target}: cannot write here: {e.strerror}") from None
    tmp = Path(name)
    try:
        yield tmp
        problem = check(tmp) if check is not None else None
        if problem is None and os.path.getsize(tmp) == 0:
            problem = "nothing was written (is the disk full?)"
        if problem:
            raise OutputWriteError(f"{target}: {problem}; the output was not written")
        _fsync(tmp)
        os.replace(tmp, target)
        with contextlib.suppress(OSError):
            _fsync(folder, directory=True)
    except OSError as e:
        raise OutputWriteError(f"{target}: cannot write: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    """All of `data` into `path`, or OSError (ENOSPC, EFBIG, EROFS ...): never a silently short file."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
