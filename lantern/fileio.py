"""The one place that writes files: atomically, so a crash never leaves half a file.

A rename is only durable once the directory entry itself reaches the disk, so after
`os.replace` the parent directory is fsynced too (POSIX); otherwise a power cut just after
"saved" could bring back the old file, or none.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lantern.errors import LanternError

_FULL = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (a file-size limit)",
         errno.EDQUOT: "disk quota exceeded"}


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


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync it, rename it into place and
    fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in _FULL:
            raise LanternError(f"cannot write {path}: {_FULL[exc.errno]}; the previous file, if "
                               "any, is unchanged") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_replace_directory(tmp: str | Path, path: str | Path) -> None:
    """Move a fully written directory `tmp` to `path` (replacing an older one), durably."""
    tmp, path = Path(tmp), Path(path)
    for file in tmp.rglob("*"):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    fsync_directory(tmp)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    fsync_directory(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
