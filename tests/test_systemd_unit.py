"""The systemd user unit: hardened as far as a user service can be, with what the hotkey backends need."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "vcam.service"


def _settings() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in UNIT.read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_unit_passes_what_the_hotkey_backends_need_and_restricts_the_rest():
    s = _settings()
    passed = set(s["PassEnvironment"].split())
    assert {"DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"} <= passed
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_NETLINK"}  # no network at all
    for key in ("NoNewPrivileges", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
                "RestrictNamespaces"):
        assert s[key] == "yes", key
    assert s["UMask"] == "0077" and s["SystemCallArchitectures"] == "native"
    assert s["MemoryMax"] and s["TasksMax"]


@pytest.mark.system
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_exposure_is_at_most_medium(tmp_path):
    # 9.6 UNSAFE without hardening; what is left needs a mount namespace or capabilities a user service lacks
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    os.chmod(tmp_path, 0o700)
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--user", str(UNIT)],
                         capture_output=True, text=True, env=env, timeout=60).stdout
    level = float(re.search(r"Overall exposure level for vcam.service: ([\d.]+)", out).group(1))
    assert level <= 6.5, out[-2000:]
