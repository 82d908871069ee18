"""`vcam setup` (install the v4l2loopback configuration, optionally the user service) and `vcam doctor`
(check the whole chain and say what to fix, one line per problem).

setup asks for root only for the steps that need it (it prefixes them with sudo when not root) and
prints every command before running it; --dry-run only prints them.
"""
from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vcam.config import Settings, load_settings
from vcam.errors import VcamError
from vcam.live.sinks import MODPROBE_LINE

ROOT = Path(__file__).resolve().parents[2]
MODPROBE_CONF = ROOT / "config" / "v4l2loopback" / "vcam.conf"
MODULES_LOAD_CONF = ROOT / "config" / "v4l2loopback" / "vcam-modules-load.conf"
SERVICE_FILE = ROOT / "systemd" / "vcam.service"
SYS_MODULE = Path("/sys/module/v4l2loopback")
INSTALL_HINT = ("install the module: Debian/Ubuntu `sudo apt install v4l2loopback-dkms`, "
                "Fedora `sudo dnf install v4l2loopback` (RPM Fusion), Arch `sudo pacman -S v4l2loopback-dkms`")


class SetupError(VcamError):
    pass


def register(subparsers) -> None:
    p = subparsers.add_parser("setup", help="install the v4l2loopback configuration (asks for root)",
                              description="Install /etc/modprobe.d/vcam.conf and /etc/modules-load.d/vcam.conf "
                                          "(the virtual camera /dev/video10 named \"Virtual Camera\"), load the "
                                          "module and add you to the video group. Root is needed for these "
                                          "steps only; they run through sudo when you are not root.")
    p.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    p.add_argument("--service", action="store_true",
                   help="also install the systemd user service (run without sudo) instead of the module steps")
    p.set_defaults(func=run_setup)
    d = subparsers.add_parser("doctor", help="check camera, virtual camera, permissions, model and display",
                              description="Check the whole chain and print what to fix, one line per problem. "
                                          "Exit status 0 when everything is fine, 1 otherwise.")
    d.set_defaults(func=run_doctor)


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


def service_text(vcam_path: str) -> str:
    lines = []
    for line in SERVICE_FILE.read_text().splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={vcam_path} run"
        lines.append(line)
    return "\n".join(lines) + "\n"


def vcam_executable() -> str:
    """The vcam of this installation (the venv's), for the service's ExecStart."""
    candidate = Path(sys.executable).parent / "vcam"
    return str(candidate) if candidate.exists() else (shutil.which("vcam") or f"{sys.executable} -m vcam")


def run_setup(args: argparse.Namespace) -> int:
    if args.service:
        return _setup_service(args.dry_run)
    if shutil.which("modinfo") and subprocess.run(["modinfo", "v4l2loopback"], capture_output=True).returncode:
        print(f"vcam setup: the v4l2loopback module is not installed; {INSTALL_HINT}, then run vcam setup again")
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
            raise SetupError(f"`{shlex.join(full)}` failed (exit {r.returncode}); see docs/troubleshooting.md")
    if args.dry_run:
        print("dry run: nothing was changed. Without --dry-run, these commands would configure /dev/video10 "
              "\"Virtual Camera\" and load it at every boot.")
        return 0
    print("done: /dev/video10 \"Virtual Camera\" is configured and loads at boot. "
          "If you were added to the video group, log out and in again. Check with `vcam doctor`.")
    return 0


def _setup_service(dry_run: bool) -> int:
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        raise SetupError("--service installs a *user* service: run `vcam setup --service` without sudo")
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    target = base / "systemd" / "user" / "vcam.service"
    text = service_text(vcam_executable())
    print(f"+ write {target}")
    cmds = [["systemctl", "--user", "daemon-reload"]]
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for cmd in cmds:
        print("+", shlex.join(cmd))
        if not dry_run and shutil.which("systemctl"):
            subprocess.run(cmd)
    if dry_run:
        print(f"dry run: nothing was changed. Without --dry-run, this would write {target} and reload systemd; "
              "then: systemctl --user enable --now vcam")
        return 0
    print("now: systemctl --user enable --now vcam   (logs: journalctl --user -u vcam -f)")
    return 0


# -- doctor -----------------------------------------------------------------------------------------------
@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"ok   {self.what}" if self.ok else f"FIX  {self.what}: {self.fix}"


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


def check_module() -> list[Check]:
    if not SYS_MODULE.exists():
        return [Check(False, "v4l2loopback kernel module is not loaded",
                      f"run `{MODPROBE_LINE}` (or `vcam setup` to load it at every boot); if modprobe says "
                      f"it is not found, {INSTALL_HINT}")]
    checks = []
    version = (SYS_MODULE / "version").read_text().strip() if (SYS_MODULE / "version").exists() else "?"
    checks.append(Check(True, f"v4l2loopback {version} loaded"))
    caps = SYS_MODULE / "parameters" / "exclusive_caps"
    if caps.exists():
        values = caps.read_text().strip()
        if not any(v in ("Y", "1") for v in values.split(",")):
            checks.append(Check(False, "v4l2loopback loaded without exclusive_caps=1 (Chrome/Meet won't list it)",
                                "run `sudo modprobe -r v4l2loopback` then "
                                f"`{MODPROBE_LINE}`, or `vcam setup`"))
        else:
            checks.append(Check(True, "exclusive_caps=1 (browsers list the device)"))
    return checks


def check_device(settings: Settings) -> list[Check]:
    device = settings.output.device
    if settings.output.sink != "virtualcam":
        return [Check(True, f"[output] sink = {settings.output.sink} (no virtual camera needed)")]
    if not os.path.exists(device):
        return [Check(False, f"virtual camera {device} does not exist",
                      f"load the module with `{MODPROBE_LINE}`, or set [output] device to the loopback device "
                      f"(`v4l2-ctl --list-devices` shows it)")]
    checks = []
    mode = os.stat(device).st_mode
    if not stat.S_ISCHR(mode):
        return [Check(False, f"{device} is not a video device node", "set [output] device to /dev/videoN")]
    name_file = Path("/sys/class/video4linux") / Path(device).name / "name"
    label = name_file.read_text().strip() if name_file.exists() else "?"
    checks.append(Check(True, f"{device} present ({label})"))
    if os.access(device, os.W_OK):
        checks.append(Check(True, f"{device} writable"))
    else:
        checks.append(Check(False, f"{device} is not writable by you",
                            "run `sudo usermod -aG video $USER`, then log out and in again"))
    return checks


def check_group() -> Check:
    if os.geteuid() == 0 or in_video_group():
        return Check(True, "you are in the video group" if os.geteuid() else "running as root")
    return Check(False, "you are not in the video group",
                 "run `sudo usermod -aG video $USER`, then log out and in again")


def check_camera(settings: Settings) -> Check:
    from vcam.live.capture import CameraSource

    source = CameraSource(settings.camera, pace=False)
    try:
        source.open()
        frame = source.read()
    except VcamError as e:
        return Check(False, f"camera {settings.camera.source} does not open",
                     f"{e}; is it plugged in, or busy in another app (a running vcam: "
                     f"`systemctl --user stop vcam`)? Set [camera] source (`v4l2-ctl --list-devices`)")
    finally:
        source.close()
    return Check(True, f"camera {settings.camera.source} opens ({frame.shape[1]}x{frame.shape[0]})")


def check_model(settings: Settings) -> Check:
    from vcam.matting.runtimes import open_segmenter

    try:
        seg = settings.segmentation
        open_segmenter(seg.model, seg.model_path, video=True, runtime=seg.runtime).close()
    except VcamError as e:
        return Check(False, "segmentation model does not load", str(e))
    return Check(True, f"segmentation model '{settings.segmentation.model}' loads ({settings.segmentation.runtime})")


def check_jpeg() -> Check:
    """libturbojpeg lets vcam decode a webcam's MJPG straight to the YUV it sends (vcam/turbojpeg.py)."""
    from vcam.frames import turbojpeg

    if turbojpeg.library() is not None:
        return Check(True, "libturbojpeg found (webcam MJPG decoded straight to YUV)")
    return Check(False, "libturbojpeg not found: decoding webcam MJPG costs more CPU",
                 "install libturbojpeg0 (Debian/Ubuntu), turbojpeg (Fedora) or libjpeg-turbo (Arch)")


def check_display() -> Check:
    display = os.environ.get("DISPLAY")
    if not display:
        wayland = " (Wayland session: bind `vcam ctl ACTION` to desktop shortcuts)" \
            if os.environ.get("WAYLAND_DISPLAY") else ""
        return Check(False, "no X display: global hotkeys are off" + wayland,
                     "run vcam in your graphical session (the systemd user service gets DISPLAY from it), "
                     "or use `vcam ctl` (docs/control.md)")
    try:
        from Xlib.display import Display

        Display(display).close()
    except Exception as e:  # Xlib raises several unrelated types for "cannot connect"
        return Check(False, f"X display {display} does not answer: global hotkeys are off",
                     f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
                     f"check DISPLAY and XAUTHORITY")
    return Check(True, f"X display {display} (global hotkeys work)")


def run_doctor(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    checks = [*check_module(), *check_device(settings), check_group(), check_camera(settings),
              check_jpeg(), check_model(settings), check_display()]
    for c in checks:
        print(c.line(), flush=True)
    problems = sum(not c.ok for c in checks)
    print("all good" if not problems else f"{problems} problem(s); fix the FIX lines above, top to bottom")
    return 1 if problems else 0
