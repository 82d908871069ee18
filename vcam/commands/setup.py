"""`vcam setup`: install the v4l2loopback configuration (or the user service), so the virtual camera
is there at every boot.

It asks for root only for the steps that need it (it prefixes them with sudo when not root) and prints
every command before running it; --dry-run only prints them.
"""
from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from vcam.control.portal_bus import APP_ID
from vcam.errors import VcamError
from vcam.matting import model_cache

DATA = Path(str(resources.files("vcam") / "data"))  # shipped in the package: works from a wheel too
MODPROBE_CONF = DATA / "v4l2loopback" / "vcam.conf"
MODULES_LOAD_CONF = DATA / "v4l2loopback" / "vcam-modules-load.conf"
SERVICE_FILE = DATA / "vcam.service"
DESKTOP_FILE = DATA / f"{APP_ID}.desktop"  # the app id the desktop portal knows vcam by (global shortcuts)
SYS_MODULE = Path("/sys/module/v4l2loopback")
INSTALL_HINT = ("install the module: Debian/Ubuntu `sudo apt install v4l2loopback-dkms`, "
                "Fedora `sudo dnf install v4l2loopback` (RPM Fusion), "
                "Arch `sudo pacman -S v4l2loopback-dkms`")


class SetupError(VcamError):
    pass


def register(subparsers) -> None:
    p = subparsers.add_parser("setup", help="install the v4l2loopback configuration (asks for root)",
                              description="Install /etc/modprobe.d/vcam.conf and "
                                          "/etc/modules-load.d/vcam.conf (the virtual camera /dev/video10 "
                                          "named \"Virtual Camera\"), load the module and add you to the "
                                          "video group. Root is needed for these steps only; they run "
                                          "through sudo when you are not root.")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--service", action="store_true",
                   help="also install the systemd user service (run without sudo) instead of the module "
                        "steps")
    p.add_argument("--models", action="store_true",
                   help="download the selfie-segmentation models into vcam's cache (~/.cache/vcam/models), "
                        "where no installed mediapipe ships them (Python 3.13+, aarch64); run without sudo")
    p.add_argument("--models-from", metavar="WHEEL",
                   help="with --models: take them from this mediapipe 0.10.21 wheel (a path or URL) instead "
                        "of PyPI, e.g. one `pip download mediapipe==0.10.21 --no-deps` fetched")
    p.set_defaults(func=run_setup)


# -- setup ------------------------------------------------------------------------------------------------
def _user() -> str:
    return os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name


def module_commands(user: str) -> list[list[str]]:
    cmds = [["install", "-m", "0644", str(MODPROBE_CONF), "/etc/modprobe.d/vcam.conf"],
            ["install", "-m", "0644", str(MODULES_LOAD_CONF), "/etc/modules-load.d/vcam.conf"]]
    if SYS_MODULE.exists():
        # Loaded with other options: reload so exclusive_caps/video_nr/card_label take effect.
        cmds.append(["modprobe", "-r", "v4l2loopback"])
    cmds.append(["modprobe", "v4l2loopback"])
    if user != "root" and not in_video_group(user):
        cmds.append(["usermod", "-aG", "video", user])
    return cmds


def _with_key(template: Path, key: str, value: str) -> str:
    """The shipped file `template` with its `key=` line set to `value`."""
    lines = [f"{key}={value}" if line.startswith(f"{key}=") else line
             for line in template.read_text().splitlines()]
    return "\n".join(lines) + "\n"


def service_text(vcam_path: str) -> str:
    """The shipped unit with ExecStart running this vcam."""
    return _with_key(SERVICE_FILE, "ExecStart", f"{vcam_path} run")


def _exec_arg(arg: str) -> str:
    """One argument of a .desktop file's Exec key: quoted if it has reserved characters (the desktop entry
    spec), with the key file's own backslash escaping on top."""
    if arg and not any(c in ' \t\n"\'\\><~|&;$*?#()`' for c in arg):
        return arg.replace("%", "%%")
    quoted = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
    return quoted.replace("\\", "\\\\").replace("%", "%%")


def desktop_text(vcam_path: str) -> str:
    """The shipped .desktop file with Exec running this vcam (like the unit's ExecStart)."""
    command = [vcam_path] if os.path.exists(vcam_path) else vcam_path.split()
    return _with_key(DESKTOP_FILE, "Exec", " ".join(_exec_arg(a) for a in [*command, "run"]))


def desktop_file_target() -> Path:
    """Where the user's .desktop files go: $XDG_DATA_HOME/applications (~/.local/share/applications)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "applications" / DESKTOP_FILE.name


def vcam_executable() -> str:
    """The vcam of this installation (the venv's), for the service's ExecStart."""
    candidate = Path(sys.executable).parent / "vcam"
    return str(candidate) if candidate.exists() else (shutil.which("vcam") or f"{sys.executable} -m vcam")


def run_setup(args: argparse.Namespace) -> int:
    if args.models or args.models_from:
        return _setup_models(args.models_from, args.dry_run)
    if args.service:
        return _setup_service(args.dry_run)
    if shutil.which("modinfo") and subprocess.run(["modinfo", "v4l2loopback"],
                                                  capture_output=True).returncode:
        print(f"vcam setup: the v4l2loopback module is not installed; {INSTALL_HINT}, "
              "then run vcam setup again")
        if not args.dry_run:
            return 1
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for cmd in module_commands(_user()):
        full = sudo + cmd
        print("+", shlex.join(full))
        if args.dry_run:
            continue
        r = subprocess.run(full)
        if r.returncode:
            raise SetupError(f"`{shlex.join(full)}` failed (exit {r.returncode}); "
                             "see docs/troubleshooting.md")
    if args.dry_run:
        print("dry run: nothing was changed. Without --dry-run, these commands would configure /dev/video10 "
              "\"Virtual Camera\" and load it at every boot.")
        return 0
    print("done: /dev/video10 \"Virtual Camera\" is configured and loads at boot. "
          "If you were added to the video group, log out and in again. Check with `vcam doctor`.")
    return 0


def _setup_models(source: str | None, dry_run: bool) -> int:
    """Fill the model cache unless an installed mediapipe or the cache already has verified copies."""
    found = {name: model_cache.installed_model(name) for name in model_cache.MODELS}
    if all(found.values()):
        for name, (path, origin) in found.items():
            print(f"model {name}: {path} ({origin}, checksum verified)")
        return 0
    where = source or model_cache.WHEEL_URL
    print(f"+ download {where}, verify its sha256 and extract the selfie models into "
          f"{model_cache.cache_dir()}")
    if dry_run:
        print("dry run: nothing was downloaded")
        return 0
    for name, path in model_cache.fetch_models(source_url=where).items():
        print(f"model {name}: {path} (cache, checksum verified)")
    return 0


def _setup_service(dry_run: bool) -> int:
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        raise SetupError("--service installs a *user* service: run `vcam setup --service` without sudo")
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    target = base / "systemd" / "user" / "vcam.service"
    desktop = desktop_file_target()  # the app id for the desktop portal's global shortcuts (Wayland)
    exe = vcam_executable()
    files = {target: service_text(exe), desktop: desktop_text(exe)}
    for path in files:
        print(f"+ write {path}")
    cmds = [["systemctl", "--user", "daemon-reload"]]
    if not dry_run:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for cmd in cmds:
        print("+", shlex.join(cmd))
        if not dry_run and shutil.which("systemctl"):
            subprocess.run(cmd)
    if dry_run:
        print(f"dry run: nothing was changed. Without --dry-run, this would write {target} and {desktop} "
              "and reload systemd; then: systemctl --user enable --now vcam")
        return 0
    print("now: systemctl --user enable --now vcam   (logs: journalctl --user -u vcam -f)")
    return 0


def in_video_group(user: str | None = None) -> bool:
    try:
        video = grp.getgrnam("video")
    except KeyError:
        return False
    if user is None:
        return video.gr_gid in os.getgroups() or os.getgid() == video.gr_gid
    try:
        return user in video.gr_mem or pwd.getpwnam(user).pw_gid == video.gr_gid
    except KeyError:
        return False
