"""The sink names: one list (vcam/live/sink_names.py) that the config validates against and the registry
opens, and the config reads it without loading numpy or OpenCV."""
from __future__ import annotations

import subprocess
import sys

import pytest

from vcam import config
from vcam.live import sinks


def test_the_config_and_the_registry_name_the_same_sinks():
    assert tuple(sinks.SINKS) == config.SINKS
    assert all(sinks.SINKS[name].name == name for name in config.SINKS)


@pytest.mark.system
def test_the_config_loads_without_numpy_or_opencv():
    code = ("import sys, vcam.config; "
            "print(sorted(m for m in ('numpy', 'cv2', 'pyvirtualcam') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
