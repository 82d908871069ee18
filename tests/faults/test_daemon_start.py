"""`vcam run` refused at start: one line, exit 2, nothing left behind."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import require_path

pytestmark = pytest.mark.system  # every test here starts `vcam run`


def test_preview_with_a_display_that_does_not_answer_is_one_line(tmp_path):
    clip = require_path("videos", "outdoor_sitting_640x360.mp4")
    env = dict(os.environ, DISPLAY=":77", XDG_RUNTIME_DIR=str(tmp_path))  # no X server there
    proc = subprocess.run([sys.executable, "-m", "vcam", "run", "--source", str(clip), "--sink", "preview"],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and ":77" in lines[0], proc.stderr  # Qt aborted: 134
    assert not list(tmp_path.glob("**/*.sock"))
