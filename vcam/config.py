"""Settings: config/default.toml overlaid by the user's file, parsed into typed, validated dataclasses.

The defaults live only in config/default.toml, so the dataclasses below declare types and bounds but no
values; a key the user sets that the defaults do not have is an error naming the key and the file.
"""
from __future__ import annotations

import dataclasses
import os
import stat
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

from vcam.compositing.effects import LIVE_EFFECTS as EFFECTS
from vcam.errors import VcamError
from vcam.hotkey_grammar import combination, validate_hotkey
from vcam.live.sink_names import SINK_NAMES

# Shipped inside the package (vcam/data/, links to config/ in a checkout), so a wheel install finds it too.
DEFAULT_CONFIG = Path(str(resources.files("vcam") / "data" / "default.toml"))

SINKS = SINK_NAMES  # vcam/live/sink_names.py: one list for the config and the sink registry
MODELS = ("general", "landscape")
RUNTIMES = ("mediapipe", "litert")
REFINES = ("guided", "none")
GUIDES = ("colour", "grey")
QUALITIES = ("fast", "best")
# auto: the desktop portal in a Wayland session whose portal has GlobalShortcuts, else pynput (X11)
HOTKEY_BACKENDS = ("auto", "portal", "x11", "off")
HOTKEY_OPTIONS = ("enabled", "backend")  # the [hotkeys] keys that are not a combination


class ConfigError(VcamError):
    """A setting is missing, unknown, mistyped or out of range; the message names key and file."""


# The pictures vcam can process: the blur works on a quarter-size copy and the matte on a smaller guide,
# which run out of pixels below 16 px; the model's mask keeps the picture's aspect at 256 px on its short
# side, and OpenCV's warps stop at 32767 px, so sides beyond 16:1 are refused rather than failing per frame.
MIN_SIDE = 16
MAX_ASPECT = 16


def picture_size_problem(width: int, height: int) -> str | None:
    """Why a width x height picture cannot be processed, or None if it can."""
    if min(width, height) < MIN_SIDE:
        return f"{width}x{height} is too small (vcam needs at least {MIN_SIDE}x{MIN_SIDE})"
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"{width}x{height} is too elongated (vcam needs sides within {MAX_ASPECT}:1)"
    return None


def _range(lo: float, hi: float) -> dict:
    return {"range": (lo, hi)}


def _choice(*options: str) -> dict:
    return {"choices": options}


@dataclass(frozen=True)
class CameraSettings:
    source: str
    width: int = field(metadata=_range(16, 7680))
    height: int = field(metadata=_range(16, 4320))
    fps: int = field(metadata=_range(1, 240))
    mjpg: bool


@dataclass(frozen=True)
class OutputSettings:
    sink: str = field(metadata=_choice(*SINKS))
    device: str
    width: int = field(metadata=_range(0, 7680))
    height: int = field(metadata=_range(0, 4320))
    fps: int = field(metadata=_range(1, 120))
    mirror: bool
    file: str


@dataclass(frozen=True)
class SegmentationSettings:
    model: str = field(metadata=_choice(*MODELS))
    model_path: str
    runtime: str = field(metadata=_choice(*RUNTIMES))
    interval: int = field(metadata=_range(1, 4))


@dataclass(frozen=True)
class MatteSettings:
    threshold: float = field(metadata=_range(0.0, 1.0))
    edge_width: float = field(metadata=_range(0.0, 1.0))
    feather: int = field(metadata=_range(0, 64))
    temporal: float = field(metadata=_range(0.0, 0.95))
    motion: int = field(metadata=_range(0, 255))
    refine: str = field(metadata=_choice(*REFINES))
    refine_size: int = field(metadata=_range(64, 1080))
    guide: str = field(metadata=_choice(*GUIDES))
    refine_radius: int = field(metadata=_range(1, 32))
    refine_eps: float = field(metadata=_range(0.0, 1.0))
    confident: float = field(metadata=_range(0.5, 1.0))
    quality: str = field(metadata=_choice(*QUALITIES))


@dataclass(frozen=True)
class EffectSettings:
    name: str = field(metadata=_choice(*EFFECTS))
    background: str
    blur: int = field(metadata=_range(1, 200))
    key_color: str

    @property
    def configured_background(self) -> str:
        """The background spec this section names, "" for none: a blank value (only whitespace) is read
        like an empty one, so every path that asks (startup, reload, set-effect, apply) agrees on it."""
        return self.background.strip()


@dataclass(frozen=True)
class BackgroundSettings:
    paths: list


@dataclass(frozen=True)
class DaemonSettings:
    on_demand: bool
    idle_fps: int = field(metadata=_range(1, 30))


def _hotkey() -> dict:
    return {"check": validate_hotkey}


@dataclass(frozen=True)
class HotkeySettings:
    enabled: bool
    backend: str = field(metadata=_choice(*HOTKEY_BACKENDS))
    next_effect: str = field(metadata=_hotkey())
    previous_effect: str = field(metadata=_hotkey())
    next_background: str = field(metadata=_hotkey())
    previous_background: str = field(metadata=_hotkey())
    toggle_pause: str = field(metadata=_hotkey())
    toggle_mirror: str = field(metadata=_hotkey())
    blur_stronger: str = field(metadata=_hotkey())
    blur_weaker: str = field(metadata=_hotkey())
    edge_softer: str = field(metadata=_hotkey())
    edge_harder: str = field(metadata=_hotkey())


@dataclass(frozen=True)
class ControlSettings:
    socket: str
    max_request_bytes: int = field(metadata=_range(64, 1048576))
    client_timeout: float = field(metadata=_range(0.1, 60.0))
    watch_config: bool


@dataclass(frozen=True)
class Settings:
    camera: CameraSettings
    output: OutputSettings
    segmentation: SegmentationSettings
    matte: MatteSettings
    effect: EffectSettings
    backgrounds: BackgroundSettings
    daemon: DaemonSettings
    hotkeys: HotkeySettings
    control: ControlSettings
    source_files: tuple = ()

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some keys of one section changed (validated like a file would be)."""
        current = dataclasses.asdict(getattr(self, section))
        current.update(changes)
        new_section = _build_section(type(getattr(self, section)), section, current, "<override>")
        return dataclasses.replace(self, **{section: new_section})


def user_config_path() -> Path:
    """The XDG location of the user's overrides."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vcam" / "config.toml"


MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few kB; anything larger is not one


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, or ConfigError in one line: a FIFO, a device or a huge file must never hang or
    exhaust the daemon (nor `vcam ctl`, which reads the socket path from it)."""
    try:
        with open(path, "rb", opener=_open_nonblocking) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: not a regular file")
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} kB, not a settings file")
    return data


def _read_toml(path: Path) -> dict:
    """The parsed file, or ConfigError in one line (also for bytes that are not UTF-8 and nesting deep
    enough to exhaust the parser's recursion)."""
    data = read_config_bytes(path)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None


def _open_nonblocking(name: str, flags: int) -> int:
    """open() that cannot block on a FIFO with no writer (the regular-file check comes right after)."""
    return os.open(name, flags | os.O_NONBLOCK)


_PY_TYPES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def _check_value(key: str, value: Any, typ: type, meta: dict, origin: str) -> Any:
    where = f"{origin}: [{key.split('.')[0]}] {key.split('.', 1)[1]}"
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{where} must be {_PY_TYPES[typ]}, got {value!r}")
    if "range" in meta:
        lo, hi = meta["range"]
        if not lo <= value <= hi:
            raise ConfigError(f"{where} must be between {lo} and {hi}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if typ is list and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    # a syntax check of the value's own (e.g. a hotkey): raises ValueError with the reason
    if "check" in meta:
        try:
            meta["check"](value)
        except ValueError as e:
            raise ConfigError(f"{where} is not valid: {e}") from None
    return value


def _build_section(cls: type, name: str, values: dict, origin: str):
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            raise ConfigError(f"{origin}: [{name}] {f.name} is missing")
        kwargs[f.name] = _check_value(f"{name}.{f.name}", values[f.name], hints[f.name], dict(f.metadata),
                                      origin)
    section = cls(**kwargs)
    if cls is HotkeySettings:
        _check_hotkeys_distinct(section, origin)
    return section


def _check_hotkeys_distinct(hotkeys: HotkeySettings, origin: str) -> None:
    """Two actions on one combination: only one of them would ever fire, so refuse it."""
    seen: dict[frozenset, str] = {}
    for f in fields(hotkeys):
        combo = getattr(hotkeys, f.name)
        if f.name in HOTKEY_OPTIONS or not combo:
            continue
        try:
            key = combination(combo)
        except ValueError:  # pynput accepted it (checked above) but our grammar doesn't: compare as text
            key = frozenset([combo])
        if key in seen:
            first = seen[key]
            raise ConfigError(f"{origin}: [hotkeys] {first} and {f.name} are the same combination "
                              f"({getattr(hotkeys, first)!r}, {combo!r}): only one could ever fire; "
                              f"change one, or unbind it with \"\"")
        seen[key] = f.name


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings) if f.name != "source_files"}


def _overlay(base: dict, override: dict, path: Path) -> None:
    """Apply a user's file onto the defaults, refusing keys and sections the defaults don't have."""
    for section, values in override.items():
        if section not in base:
            raise ConfigError(f"{path}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"{path}: unknown key [{section}] {key}")
            base[section][key] = value


def load_settings(path: Path | str | None = None, *, use_user_config: bool = True) -> Settings:
    """Defaults, then the user's XDG file (if any and no explicit path), then `path`."""
    raw = _read_toml(DEFAULT_CONFIG)
    sources = [DEFAULT_CONFIG]
    if path is not None:
        overrides = [Path(path)]
    elif use_user_config and user_config_path().exists():
        overrides = [user_config_path()]
    else:
        overrides = []
    for override in overrides:
        _overlay(raw, _read_toml(override), override)
        sources.append(override)
    origin = str(sources[-1])
    sections = {}
    for name, cls in _section_classes().items():
        sections[name] = _build_section(cls, name, raw.get(name, {}), origin)
    for name in ("camera", "output"):
        w, h = sections[name].width, sections[name].height
        if name == "output" and 0 in (w, h):  # 0: the camera's (the whole size is checked by output_size())
            problem = (f"{w}x{h}: a side that is set must be at least {MIN_SIDE}"
                       if 0 < max(w, h) < MIN_SIDE else None)
        else:
            problem = picture_size_problem(w, h)
        if problem:
            raise ConfigError(f"{origin}: [{name}] width and height: {problem}")
    return Settings(**sections, source_files=tuple(str(s) for s in sources))
