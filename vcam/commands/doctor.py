"""`vcam doctor`: check the whole chain, from the kernel module to the hotkeys (X display or desktop
portal), and say what to fix, one line per problem.
"""
from __future__ import annotations

import argparse
import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vcam.commands.setup import INSTALL_HINT, SYS_MODULE, desktop_file_target, in_video_group
from vcam.config import Settings, load_settings
from vcam.control.hotkey_backends import NO_BACKEND_HINT, choose_backend
from vcam.control.portal_bus import probe_portal
from vcam.errors import VcamError
from vcam.frames import turbojpeg
from vcam.live.capture import CameraSource
from vcam.live.sinks import MODPROBE_LINE
from vcam.matting.model_cache import find_model
from vcam.matting.runtimes import open_segmenter


def register(subparsers) -> None:
    d = subparsers.add_parser("doctor", help="check camera, virtual camera, permissions, model and hotkeys",
                              description="Check the whole chain and print what to fix, one line per "
                                          "problem. Exit status 0 when everything is fine, 1 otherwise.")
    d.set_defaults(func=run_doctor)


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"ok   {self.what}" if self.ok else f"FIX  {self.what}: {self.fix}"


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
            checks.append(Check(False,
                                "v4l2loopback loaded without exclusive_caps=1 (Chrome/Meet won't list it)",
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
                      f"load the module with `{MODPROBE_LINE}`, or set [output] device to the loopback "
                      f"device (`v4l2-ctl --list-devices` shows it)")]
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
    try:
        seg = settings.segmentation
        open_segmenter(seg.model, seg.model_path, video=True, runtime=seg.runtime).close()
    except VcamError as e:
        return Check(False, "segmentation model does not load", str(e))
    path, origin = find_model(seg.model, seg.model_path)
    where = {"model_path": "[segmentation] model_path", "mediapipe": "the installed mediapipe 0.10.21",
             "cache": "vcam's cache, from `vcam setup --models`"}[origin]
    return Check(True, f"segmentation model '{seg.model}' loads ({seg.runtime}) from {where}: {path}")


def check_jpeg() -> Check:
    """libturbojpeg lets vcam decode a webcam's MJPG straight to the YUV it sends
    (vcam/frames/turbojpeg.py)."""
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


def check_desktop_file() -> Check:
    """The portal knows vcam by its app id only if the .desktop file of that name is installed (GNOME
    refuses global shortcuts without it)."""
    mine = desktop_file_target()
    system = (os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    for path in [mine, *(Path(d) / "applications" / mine.name for d in system if d)]:
        if path.exists():
            return Check(True, f"{path} installed (the desktop portal knows vcam's app id)")
    return Check(False, f"{mine.name} is not installed: GNOME gives global shortcuts only to apps it knows",
                 f"run `vcam setup --service` (it installs {mine})")


def check_hotkeys(settings: Settings) -> list[Check]:
    """Which hotkey backend [hotkeys] backend gets here and whether it works; if none does, why."""
    probe = functools.cache(probe_portal)  # the portal is asked once, and only when the answer matters
    backend, why = choose_backend(settings.hotkeys, probe=probe)
    if backend == "off":
        return [Check(True, f"global hotkeys off ({why}); `vcam ctl` works regardless")]
    if backend == "none":
        return [Check(False, f"no global hotkeys ({why})", NO_BACKEND_HINT)]
    if backend == "portal":
        state, reason = probe()
        if state == "ok":
            return [Check(True, f"global hotkeys through the desktop portal ({reason}); the desktop asks you "
                                f"once to confirm the keys"), check_desktop_file()]
        return [Check(False, f"global hotkeys through the desktop portal do not work ({why}: {reason})",
                      "run vcam in a desktop session whose portal has GlobalShortcuts (GNOME 48+, KDE "
                      "Plasma, Hyprland), or set [hotkeys] backend = \"x11\" under X11; docs/control.md")]
    x11 = check_display()
    if not x11.ok and settings.hotkeys.backend == "auto":  # would the portal do instead?
        state, reason = probe()
        x11.fix += (f"; or set [hotkeys] backend = \"portal\": the desktop portal has {reason}"
                    if state == "ok" else f"; the desktop portal is no alternative here ({reason})")
    return [x11]


def run_doctor(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    checks = [*check_module(), *check_device(settings), check_group(), check_camera(settings),
              check_jpeg(), check_model(settings), *check_hotkeys(settings)]
    for c in checks:
        print(c.line(), flush=True)
    problems = sum(not c.ok for c in checks)
    print("all good" if not problems else f"{problems} problem(s); fix the FIX lines above, top to bottom")
    return 1 if problems else 0
