"""Backgrounds and inputs that are not pictures vcam should read: devices, FIFOs, decompression bombs."""
from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam.compositing.backgrounds import BackgroundError, ImageBackground, load_background


def png_bomb(path: Path, side: int = 20000) -> None:
    """A real PNG of side x side black pixels: about 1.2 MB on disk, 1.2 GB once decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * side)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    png_bomb(path)
    return path


def test_devices_and_fifos_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # nobody writes: reading it would block the loader for good
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")  # reading it would never end
    for spec in ("/dev/zero", str(link), str(fifo), str(tmp_path / "pipe.jpg")):
        t0 = time.monotonic()
        with pytest.raises(BackgroundError, match="not a regular file"):
            load_background(spec)
        assert time.monotonic() - t0 < 5


def test_a_decompression_bomb_is_refused_from_its_header(bomb):
    with pytest.raises(BackgroundError, match="20000x20000 is too large"):
        load_background(str(bomb))


@pytest.mark.system
def test_vcam_apply_refuses_a_bomb_in_one_line_without_decoding_it(tmp_path, bomb, portraits):
    def limit():  # what decoding the bomb would need is far above this
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    for args in ([bomb, tmp_path / "o.png"], [portraits[0][0], tmp_path / "o.jpg", "--effect", "replace",
                                              "--background", bomb]):
        proc = subprocess.run([sys.executable, "-m", "vcam", "apply", *map(str, args)], capture_output=True,
                              text=True, timeout=120, preexec_fn=limit)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "too large" in lines[0], proc.stderr
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.jpg").exists()


def test_a_large_background_photo_keeps_only_a_4k_copy(tmp_path):
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), np.full((4000, 6000, 3), 90, np.uint8))
    bg = ImageBackground(big)
    assert max(bg.image.shape[:2]) == 3840 and bg.image.shape[:2] == (2560, 3840)
    assert bg.frame((1280, 720)).shape == (720, 1280, 3)
