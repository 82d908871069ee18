"""`vcam setup` on this machine: the shipped config, the systemd user unit that runs this vcam, and the
desktop file the Wayland portal needs, written (or, dry, only said) under a private home."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VCAM = [sys.executable, "-m", "vcam"]


@pytest.mark.system
def test_setup_dry_run_installs_the_shipped_config(tmp_path):
    r = subprocess.run([*VCAM, "setup", "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "/etc/modprobe.d/vcam.conf" in r.stdout and "/etc/modules-load.d/vcam.conf" in r.stdout
    assert "modprobe v4l2loopback" in r.stdout
    conf = (ROOT / "config" / "v4l2loopback" / "vcam.conf").read_text()
    options = [line for line in conf.splitlines() if line.startswith("options")]
    assert options == ["options v4l2loopback devices=1 video_nr=10 exclusive_caps=1 "
                       'card_label="Virtual Camera"']


@pytest.mark.system
def test_setup_service_writes_a_notify_unit_running_this_vcam(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    env.pop("SUDO_USER", None)
    r = subprocess.run([*VCAM, "setup", "--service", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not (tmp_path / "systemd").exists()  # dry run writes nothing
    r = subprocess.run([*VCAM, "setup", "--service"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    unit = (tmp_path / "systemd" / "user" / "vcam.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "Restart=on-failure" in unit
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    binary = exec_start.split("=", 1)[1].split()[0]
    assert os.access(binary, os.X_OK) and exec_start.endswith(" run")


@pytest.mark.system
def test_setup_dry_run_says_what_would_be_done_not_done(tmp_path):
    r = subprocess.run([*VCAM, "setup", "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "done:" not in r.stdout and "is configured" not in r.stdout, r.stdout
    assert "dry run: nothing was changed" in r.stdout and "would" in r.stdout
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    r = subprocess.run([*VCAM, "setup", "--service", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "dry run: nothing was changed" in r.stdout and "would write" in r.stdout


@pytest.mark.system
def test_setup_service_installs_the_desktop_file_the_portal_needs(tmp_path):
    """GNOME grants global shortcuts only to an app id with an installed .desktop file of that name."""
    from vcam.control.portal import APP_ID
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("SUDO_USER", None)
    desktop = tmp_path / "data" / "applications" / f"{APP_ID}.desktop"
    r = subprocess.run([*VCAM, "setup", "--service", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and f"+ write {desktop}" in r.stdout, r.stdout + r.stderr
    assert not desktop.exists()  # a dry run writes nothing
    r = subprocess.run([*VCAM, "setup", "--service"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    text = desktop.read_text()
    assert "[Desktop Entry]" in text and "Type=Application" in text and "NoDisplay=true" in text
    (exec_line,) = [line for line in text.splitlines() if line.startswith("Exec=")]
    binary = exec_line.split("=", 1)[1].split()[0]
    assert os.access(binary, os.X_OK) and exec_line.endswith(" run")
    unit = (tmp_path / "config" / "systemd" / "user" / "vcam.service").read_text()
    assert binary in unit  # the same vcam as the service's ExecStart

    # Without XDG_DATA_HOME: ~/.local/share/applications.
    env.pop("XDG_DATA_HOME")
    env["HOME"] = str(tmp_path / "home")
    r = subprocess.run([*VCAM, "setup", "--service"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "home" / ".local" / "share" / "applications" / f"{APP_ID}.desktop").read_text() == text


def test_the_desktop_files_exec_quotes_a_path_with_spaces(tmp_path):
    from vcam.commands.setup import desktop_text
    vcam = tmp_path / "my apps" / "50% $HOME" / "vcam"
    vcam.parent.mkdir(parents=True)
    vcam.touch()
    (exec_line,) = [line for line in desktop_text(str(vcam)).splitlines() if line.startswith("Exec=")]
    # The desktop entry spec: quoted, `$` escaped in the quotes, the key file's backslashes doubled, %% for %.
    assert exec_line == f'Exec="{tmp_path}/my apps/50%% \\\\$HOME/vcam" run', exec_line
    (plain,) = [line for line in desktop_text("/usr/bin/true").splitlines() if line.startswith("Exec=")]
    assert plain == "Exec=/usr/bin/true run"
