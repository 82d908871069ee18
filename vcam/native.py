"""Routing of native libraries' own stderr chatter (MediaPipe, TFLite, libjpeg, libpng) into our log.

These libraries write straight to file descriptor 2, around Python's logging. Where that would add lines
to a one-line error, or noise to a user's terminal, the call runs inside `native_stderr_to_log()`.
It swaps fd 2 process-wide, so keep it around short calls.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

log = logging.getLogger("vcam.native")


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Capture what native code writes to fd 2 meanwhile and log it at debug level."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                log.debug("%s", line)
