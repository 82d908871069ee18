"""Where vcam's selfie-segmentation models come from, and `vcam setup --models`, which fills the cache.

The two .tflite files are MediaPipe's, as shipped inside the mediapipe 0.10.21 wheel (the last release
that bundles them; every 0.10.21 wheel, Linux, macOS or Windows, holds byte-identical copies).
find_model() looks, in this order, at:
  1. [segmentation] model_path, when set (the user's own file: no checksum, the runtime checks its shape);
  2. an installed mediapipe 0.10.21 (found with importlib.util.find_spec, without importing mediapipe),
     if the file there has the expected sha256;
  3. the cache, $XDG_CACHE_HOME/vcam/models/ (default ~/.cache/vcam/models/), sha256-checked;
and otherwise raises ModelMissing, whose one line says to run `vcam setup --models`.

fetch_models() is what `vcam setup --models` runs: it downloads the pinned wheel from PyPI's file host
with urllib (HTTPS; honours https_proxy/no_proxy and SSL_CERT_FILE, not pip's own configuration),
checks the wheel's sha256, extracts only the two members with zipfile, checks each member's sha256 and
size, and writes each file atomically (temporary file in the same folder, fsync, os.replace). The
source can also be a local file or a file:// URL (any mediapipe 0.10.21 wheel, e.g. one that
`pip download` fetched through the user's own index or proxy): then only the members' checksums are
checked, since they are what is pinned.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vcam.atomic_write import atomic_output, write_bytes
from vcam.errors import VcamError

# The smallest manylinux x86_64 wheel of mediapipe 0.10.21 (cp311): 35,622,638 bytes. The archive is
# read with zipfile only, so it serves every machine, aarch64 included (0.10.21 has no Linux aarch64 wheel).
WHEEL_URL = ("https://files.pythonhosted.org/packages/ad/83/56f760fecdc60de84c529d6c05c9dfc7d972617c6632bd254d5e021e5b16/"
             "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl")
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
WHEEL_SIZE = 35_622_638
MEMBER_DIR = "mediapipe/modules/selfie_segmentation/"
MEDIAPIPE_SUBDIR = ("modules", "selfie_segmentation")
MAX_DOWNLOAD = 64 * 1024 * 1024  # refuse to write more than this for one wheel


@dataclass(frozen=True)
class ModelFile:
    filename: str
    sha256: str
    size: int


MODELS: dict[str, ModelFile] = {
    "general": ModelFile("selfie_segmentation.tflite",
                         "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", 249_505),
    "landscape": ModelFile("selfie_segmentation_landscape.tflite",
                           "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd", 250_145),
}


class ModelError(VcamError):
    """The model file is missing or not a selfie-segmentation model."""


class ModelMissing(ModelError):
    """No usable model file; the message says what to run."""


class ModelFetchError(VcamError):
    """`vcam setup --models` could not download or verify the models; the message is one line."""


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/vcam/models, or ~/.cache/vcam/models (a relative XDG_CACHE_HOME is ignored, per
    the spec)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "vcam" / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_valid(path: Path, model: ModelFile) -> bool:
    """The file exists, has the model's size and sha256."""
    try:
        return path.stat().st_size == model.size and sha256_file(path) == model.sha256
    except OSError:
        return False


def _model(name: str) -> ModelFile:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelMissing(f"unknown segmentation model {name!r} (known: {', '.join(MODELS)})") from None


def mediapipe_model_path(name: str) -> Path | None:
    """The model inside an installed mediapipe whose copy has the expected sha256, else None.

    find_spec() on the top-level name locates the package without importing it (mediapipe's import
    costs about a second and loads native libraries)."""
    model = _model(name)
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location, *MEDIAPIPE_SUBDIR, model.filename)
        if is_valid(path, model):
            return path
    return None


def installed_model(name: str) -> tuple[Path, str] | None:
    """(path, "mediapipe" or "cache") of a verified copy of the model, or None."""
    bundled = mediapipe_model_path(name)
    if bundled is not None:
        return bundled, "mediapipe"
    cached = cache_dir() / _model(name).filename
    return (cached, "cache") if is_valid(cached, _model(name)) else None


def find_model(name: str, model_path: str | None = None) -> tuple[Path, str]:
    """(path, origin) of the model to run; origin is "model_path", "mediapipe" or "cache".

    Raises ModelMissing with a one-line reason and fix."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelMissing(f"{path}: segmentation model not found (set by [segmentation] model_path)")
        return path, "model_path"
    model = _model(name)
    found = installed_model(name)
    if found is not None:
        return found
    cached = cache_dir() / model.filename
    why = "is damaged (wrong checksum)" if cached.exists() else "is not installed"
    raise ModelMissing(f"segmentation model {name!r} ({model.filename}) {why}: run `vcam setup --models` "
                       f"to download it into {cached.parent}")


def _install(dest: Path, data: bytes) -> None:
    """`data` as `dest`, atomically: a reader never sees half a model."""
    with atomic_output(dest) as tmp:
        write_bytes(tmp, data)
        os.chmod(tmp, 0o644)


def _is_local(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("", "file")


def _local_path(source: str) -> Path:
    parts = urllib.parse.urlsplit(source)
    return Path(urllib.request.url2pathname(parts.path) if parts.scheme == "file" else source).expanduser()


def _download(url: str, into, timeout: float, progress: Callable[[int, int | None], None] | None) -> str:
    """Stream `url` into the open binary file `into`; the sha256 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": "vcam (vcam setup --models)"})
    h = hashlib.sha256()
    done = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        while block := response.read(1 << 16):
            done += len(block)
            if done > MAX_DOWNLOAD:
                raise ModelFetchError(f"{url}: more than {MAX_DOWNLOAD >> 20} MiB; not the expected wheel")
            h.update(block)
            into.write(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


def fetch_models(dest: Path | str | None = None, *, source_url: str = WHEEL_URL,
                 wheel_sha256: str | None = None, timeout: float = 60.0,
                 names: tuple[str, ...] = tuple(MODELS), force: bool = False,
                 progress: Callable[[int, int | None], None] | None = None) -> dict[str, Path]:
    """Install the models `names` into `dest` (default: cache_dir()); {name: path}.

    Models already there with the right checksum are kept and nothing is downloaded unless `force`.
    `source_url`: an https:// URL of a mediapipe 0.10.21 wheel (default: PyPI's cp311 manylinux one),
    a file:// URL or a local path. The wheel's sha256 is checked against `wheel_sha256`, which defaults
    to the pinned one for the default URL and to no check for another source; each extracted member is
    always checked against MODELS. `timeout`: seconds for the connection and each read.
    Raises ModelFetchError (one line) on any failure; a failure leaves no partial file behind."""
    dest = Path(dest).expanduser() if dest is not None else cache_dir()
    wanted = {name: _model(name) for name in names}
    result = {name: dest / m.filename for name, m in wanted.items()}
    todo = {name: m for name, m in wanted.items() if force or not is_valid(result[name], m)}
    if not todo:
        return result
    expected_wheel = wheel_sha256 or (WHEEL_SHA256 if source_url == WHEEL_URL else None)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelFetchError(f"{dest}: cannot create the model folder: {e.strerror}") from None
    tmp = None
    try:
        if _is_local(source_url):
            wheel = _local_path(source_url)
            if not wheel.is_file():
                raise ModelFetchError(f"{wheel}: no such file (expected a mediapipe 0.10.21 wheel)")
            got = sha256_file(wheel) if expected_wheel else None
        else:
            fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=".mediapipe-", suffix=".whl.part")
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as f:
                got = _download(source_url, f, timeout, progress)
            wheel = tmp
        if expected_wheel and got != expected_wheel:
            raise ModelFetchError(f"{source_url}: sha256 {got} is not the expected {expected_wheel}; "
                                  f"the download is damaged or not the mediapipe 0.10.21 wheel")
        verified: dict[str, bytes] = {}
        with zipfile.ZipFile(wheel) as zf:
            for name, m in todo.items():
                member = MEMBER_DIR + m.filename
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise ModelFetchError(f"{source_url}: has no {member} "
                                          "(not a mediapipe 0.10.21 wheel)") from None
                if info.file_size != m.size:
                    raise ModelFetchError(f"{source_url}: {member} is {info.file_size} bytes, "
                                          f"expected {m.size}")
                data = zf.read(info)
                digest = hashlib.sha256(data).hexdigest()
                if digest != m.sha256:
                    raise ModelFetchError(f"{source_url}: {member} has sha256 {digest}, expected {m.sha256}")
                verified[name] = data
        for name, data in verified.items():  # all or nothing: every member checked before any is installed
            _install(result[name], data)
    except ModelFetchError:
        raise
    except urllib.error.HTTPError as e:
        raise ModelFetchError(f"{source_url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise ModelFetchError(f"{source_url}: cannot download ({e.reason}); check the network or proxy "
                              f"(https_proxy), or pass a wheel fetched by `pip download mediapipe==0.10.21 "
                              f"--no-deps` as the source") from None
    except TimeoutError:
        raise ModelFetchError(f"{source_url}: no answer within {timeout:g} s") from None
    except zipfile.BadZipFile:
        raise ModelFetchError(f"{source_url}: not a zip archive (not a wheel)") from None
    except OSError as e:
        raise ModelFetchError(f"{dest}: cannot write the models: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return result
