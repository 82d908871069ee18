"""Where the real test footage lives: $VCAM_TESTDATA, default ../shared/testdata beside the project.

The one helper tests, `vcam bench` and `vcam eval` use; the data is never copied into the repository.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path:
    env = os.environ.get("VCAM_TESTDATA")
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "testdata").resolve()


def testdata_path(*parts: str) -> Path:
    return testdata_dir().joinpath(*parts)
