"""`vcam apply INPUT OUTPUT --effect EFFECT`: the live daemon's effects on an image, a video or a folder
of images, done by the same Engine.

Outputs are written beside the target and renamed into place, so a failure never leaves half a file.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from vcam.atomic_write import OutputWriteError, atomic_output, write_bytes
from vcam.compositing import backgrounds
from vcam.compositing.backgrounds import (
    IMAGE_EXTENSIONS,
    Background,
    BackgroundError,
    is_image_path,
    is_video_path,
    load_background,
    parse_color,
)
from vcam.compositing.effects import FILE_EFFECTS, takes_background
from vcam.compositing.engine import Engine
from vcam.compositing.look import Look, look_from_settings
from vcam.config import MODELS, Settings, load_settings, picture_size_problem
from vcam.errors import VcamError
from vcam.frames.video_file import playback_problem

log = logging.getLogger(__name__)

ALPHA_IMAGE_EXTENSIONS = {".png", ".webp", ".tif", ".tiff"}
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG",
                ".webm": "VP80"}


class InputError(VcamError):
    """An input or output path that cannot be used."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="change the background of an image, a video or a directory of images",
                       description="Change the background of an image, a video, or every image in a "
                                   "directory. The output type follows OUTPUT's extension.")
    p.add_argument("input", metavar="INPUT", help="image, video, or directory of images")
    p.add_argument("output", metavar="OUTPUT",
                   help="output file (or existing directory when INPUT is a directory)")
    p.add_argument("--effect", choices=FILE_EFFECTS,
                   help="what happens behind the person (default: [effect] name); 'mask' writes the matte")
    p.add_argument("--background", metavar="PATH|COLOR",
                   help="image or video file, or a colour such as white, '#00ff00' or '0,128,255'")
    p.add_argument("--blur", type=int, metavar="N", help="blur radius in pixels for --effect blur (1..200)")
    p.add_argument("--model", choices=MODELS, help="segmentation model (default: [segmentation] model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    source, target = Path(args.input), Path(args.output)
    effect = args.effect or settings.effect.name
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"{target}: OUTPUT is INPUT; choose another output so the original is kept")
    look = _look(settings, effect, args.background)
    try:
        if source.is_dir():
            return _apply_directory(source, target, settings, look)
        _check_input_file(source)
        _check_output_dir(target)
        if is_video_path(source):
            return _apply_video(source, target, settings, look)
        _check_image_output(target, effect)
        with Engine(settings, video=False) as engine:
            _apply_image(engine, source, target, look)
        return 0
    finally:
        if look.background is not None:
            look.background.close()


# -- settings and inputs ----------------------------------------------------------------------------------
def _settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.blur is not None:
        if not 1 <= args.blur <= 200:
            raise VcamError(f"--blur must be between 1 and 200, got {args.blur}")
        settings = settings.replace("effect", blur=args.blur)
    if args.model:
        settings = settings.replace("segmentation", model=args.model)
    return settings


def _look(settings: Settings, effect: str, background: str | None) -> Look:
    """The Look for this run; 'mask' is file-only and composites nothing."""
    base = look_from_settings(settings.replace("effect", name="none" if effect == "mask" else effect,
                                               background=""))
    spec = background if background is not None else settings.effect.configured_background
    bg: Background | None = None
    if takes_background(effect):
        if not spec:
            if effect == "video":
                raise VcamError("--effect video needs --background VIDEO_FILE")
            spec = "white"
        bg = load_background(spec)
    elif background is not None and effect == "transparent":
        color = parse_color(background)
        if color is None:
            raise BackgroundError(f"--background {background!r} is not a colour "
                                  "(the key colour of 'transparent')")
        base = base.with_changes(key_color=color)
    return base.with_changes(effect=effect, background=bg)


def _check_input_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: input file not found")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise InputError(f"{path}: input is not a readable file")


def _check_output_dir(target: Path) -> None:
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{target}: output directory {parent} does not exist")


def _check_image_output(target: Path, effect: str) -> None:
    ext = target.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{target}: output must be an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if effect == "transparent" and ext not in ALPHA_IMAGE_EXTENSIONS:
        raise InputError(f"{target}: --effect transparent needs an output with alpha (.png, .webp, .tif)")


def read_image(path: Path) -> np.ndarray:
    """A BGR image, or InputError naming the file if it is missing, not an image or truncated."""
    _check_input_file(path)
    try:
        return backgrounds.read_image(path)
    except backgrounds.ImageFileError as e:
        raise InputError(str(e)) from None


# -- images -----------------------------------------------------------------------------------------------
def render_image(engine: Engine, image: np.ndarray, look: Look) -> np.ndarray:
    """What `vcam apply` writes for one still: composited BGR, BGRA (transparent) or the matte (mask)."""
    if look.effect == "mask":
        return engine.alpha(image, matte=look.matte)
    if look.effect == "transparent":
        return engine.compositor.rgba(image, engine.alpha(image, matte=look.matte))
    return engine.process(image, look)


def _check_size(source: Path, width: int, height: int) -> None:
    problem = picture_size_problem(width, height)
    if problem:
        raise InputError(f"{source}: {problem}")


def _apply_image(engine: Engine, source: Path, target: Path, look: Look) -> None:
    image = read_image(source)
    _check_size(source, image.shape[1], image.shape[0])
    out = render_image(engine, image, look)
    ok, encoded = cv2.imencode(target.suffix, out)
    if not ok:
        raise InputError(f"{target}: could not encode the output image")
    with atomic_output(target) as tmp:
        write_bytes(tmp, encoded.tobytes())
    log.info("wrote %s", target)


def _output_name(source: Path, effect: str) -> str:
    return source.stem + ".png" if effect in ("transparent", "mask") else source.name


def _refuse_name_collisions(images: list[Path], effect: str, target: Path) -> None:
    """Two inputs that would write one output (photo.jpg and photo.png -> photo.png) are refused up front."""
    seen: dict[str, Path] = {}
    for path in images:
        name = _output_name(path, effect)
        if name in seen:
            raise InputError(f"{seen[name].name} and {path.name} would both be written to {target / name}; "
                             f"rename one of them")
        seen[name] = path


def _apply_directory(source: Path, target: Path, settings: Settings, look: Look) -> int:
    if not target.is_dir():
        raise InputError(f"{target}: output directory does not exist (create it first)")
    images = sorted(p for p in source.iterdir() if p.is_file() and is_image_path(p))
    if not images:
        raise InputError(f"{source}: no images in this directory")
    _refuse_name_collisions(images, look.effect, target)
    from tqdm import tqdm

    failed = 0
    with Engine(settings, video=False) as engine:
        for path in tqdm(images, desc="images", unit="img", disable=None):
            try:
                _apply_image(engine, path, target / _output_name(path, look.effect), look)
            except (InputError, OutputWriteError) as e:  # one bad file must not lose the rest of the batch
                log.error("%s", e)
                failed += 1
    if failed:
        log.error("%d of %d images failed", failed, len(images))
        return 2
    return 0


# -- videos -----------------------------------------------------------------------------------------------
def _apply_video(source: Path, target: Path, settings: Settings, look: Look) -> int:
    ext = target.suffix.lower()
    if ext not in VIDEO_CODECS:
        raise InputError(f"{target}: video output must be one of {', '.join(sorted(VIDEO_CODECS))}")
    cap = cv2.VideoCapture(str(source))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # a phone clip's display rotation: upright, as players show it
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise InputError(f"{source}: not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    h, w = frame.shape[:2]
    index = 0
    from tqdm import tqdm

    try:
        _check_size(source, w, h)  # inside the try: the capture is released either way
        with atomic_output(target, check=lambda p: playback_problem(p, index)) as tmp, \
                Engine(settings, video=True) as engine:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), fps, (w, h))
            if not writer.isOpened():
                raise InputError(f"{target}: cannot write a {ext} video here")
            mask_bgr = np.empty((h, w, 3), np.uint8)
            index = 0
            with tqdm(total=total, desc=source.name, unit="frame", disable=None) as bar:
                while ok:
                    ts = int(round(index * 1000.0 / fps))
                    if look.effect == "mask":
                        out = cv2.cvtColor(engine.alpha(frame, ts, look.matte), cv2.COLOR_GRAY2BGR,
                                           dst=mask_bgr)
                    else:  # 'transparent' has no alpha in video containers: it renders the key colour
                        out = engine.process(frame, look, ts)
                    writer.write(out)
                    index += 1
                    bar.update(1)
                    ok, frame = cap.read(frame)
            writer.release()
            # A cut-off file decodes "fine" up to the cut; the container's frame count tells (some
            # containers only estimate it, hence the small tolerance).
            if total and index < total - max(2, total // 50):
                raise InputError(f"{source}: video is truncated or damaged: "
                                 f"decoded {index} of {total} frames")
    finally:
        cap.release()
    log.info("wrote %s (%d frames, %.2f fps, %dx%d)", target, index, fps, w, h)
    return 0
