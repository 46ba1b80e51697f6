"""The one place that writes files: atomically, so a crash never leaves half a file.

A rename is only durable once the directory entry itself reaches the disk, so after
`os.replace` the parent directory is fsynced too (POSIX); otherwise a power cut just after
"saved" could bring back the old file, or none.

New files and directories are created with the mode the user's umask gives them: the kernel
applies the umask at creation (mode 0o666 or 0o777), so the process umask is never read or
changed - changing it, even briefly, would race with threads that create files meanwhile.

Every directory LANTERN writes as a whole (a run, an export, a TRM stage) holds a marker file,
`OUTPUT_MARKER`; `--overwrite` replaces a directory only when it carries one (or is a training
run written before markers existed, recognised by its files), and never a home or root directory.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from lantern.errors import LanternError

_FULL = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (a file-size limit)",
         errno.EDQUOT: "disk quota exceeded"}
OUTPUT_MARKER = ".lantern-output"
# A run directory from before the marker: any of these files names it as LANTERN's.
_RUN_FILES = ("train_config.json", "training_log.jsonl")


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries (new names, renames) to disk; a no-op where the OS has no
    directory file descriptors (Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")


def create_temporary_file(path: str | Path) -> tuple[int, Path]:
    """A new, uniquely named file beside `path` (open for writing, its descriptor and name),
    with the permissions a new file gets under the user's umask."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temporary_name(path, ".tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def create_temporary_directory(path: str | Path) -> Path:
    """A new, uniquely named directory beside `path`, with the permissions a new directory
    gets under the user's umask."""
    path = Path(path)
    while True:
        tmp = _temporary_name(path, ".tmp")
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync it, rename it into place and
    fsync the directory."""
    path = Path(path)
    if path.is_dir():
        raise LanternError(f"cannot write {path}: it is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _FULL:
            raise LanternError(f"cannot write {path}: {_FULL[exc.errno]}; the previous file, if "
                               "any, is unchanged") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def make_output_directory(directory: str | Path, kind: str) -> Path:
    """Create (if needed) a directory LANTERN writes as a whole and mark it as LANTERN's, so a
    later `--overwrite` may replace it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / OUTPUT_MARKER).is_file():
        atomic_write_text(directory / OUTPUT_MARKER, json.dumps({"kind": kind}) + "\n")
    return directory


def is_lantern_output(directory: Path) -> bool:
    """Marked by LANTERN, or a training run from before the marker (recognised by its files)."""
    if (directory / OUTPUT_MARKER).is_file():
        return True
    return (any((directory / name).is_file() for name in _RUN_FILES)
            or any(directory.glob("checkpoint_step_*.pt")))


def check_replaceable_directory(path: str | Path) -> None:
    """Refuse to delete a directory `--overwrite` names unless it is empty or LANTERN's own; a
    home or root directory never, whatever it holds."""
    path = Path(path)
    if not path.is_dir():
        return
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise LanternError(f"--overwrite will not replace {path}: it is a "
                           f"{'root' if resolved == Path(resolved.anchor) else 'home'} directory")
    if Path.cwd().resolve().is_relative_to(resolved):
        raise LanternError(f"--overwrite will not replace {path}: it holds the current directory")
    if any(path.iterdir()) and not is_lantern_output(path):
        raise LanternError(f"--overwrite will not replace {path}: it is not a LANTERN output (no "
                           f"{OUTPUT_MARKER} file); remove it yourself or choose another output")


def remove_stale_leftovers(directory: Path, name: str = "*") -> None:
    """Remove what a killed write left beside `name` in `directory` (a temporary file or
    directory, or an old copy set aside for a replacement); never a finished file."""
    for pattern in (f".{name}.tmp", f".{name}.*.tmp", f".{name}.old", f".{name}.*.old"):
        for path in directory.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def atomic_replace_directory(tmp: str | Path, path: str | Path) -> None:
    """Move a fully written directory `tmp` to `path` (replacing an older one), durably. The
    older one is set aside under a fresh name first, so a leftover of a killed replacement
    never blocks this one, and is removed (with such leftovers) once `tmp` is in place."""
    tmp, path = Path(tmp), Path(path)
    for file in tmp.rglob("*"):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    fsync_directory(tmp)
    try:
        if path.exists():
            old = _temporary_name(path, ".old")
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise LanternError(f"cannot replace {path}: {exc.strerror or exc}") from None
    fsync_directory(path.parent)
    remove_stale_leftovers(path.parent, glob.escape(path.name))


def json_lines(path: str | Path, what: str, accept: Callable[[object], bool]) -> Iterator[object]:
    """The values of a JSON-lines file, blank lines skipped; a line that is not JSON, or that
    `accept` refuses, stops with `path:line: not what` (`what` says what each line should be)."""
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    value = None
                if value is None or not accept(value):
                    raise LanternError(f"{path}:{number}: not {what}")
                yield value
        except UnicodeDecodeError:
            raise LanternError(f"{path} is not a JSONL text file") from None
