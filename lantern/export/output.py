"""Output paths of an export: refuse to replace anything without --overwrite, and never leave
half a directory or half a file behind (everything is written beside, then renamed in)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from lantern.errors import LanternError
from lantern.fileio import (
    atomic_replace_directory,
    check_replaceable_directory,
    create_temporary_directory,
    create_temporary_file,
    fsync_directory,
    make_output_directory,
)


def check_output(output: Path, overwrite: bool, source: Path | None = None,
                 directory: bool = True) -> None:
    """Refuse an existing output (unless `overwrite`), one of the other kind (file or
    directory), a directory that is not LANTERN's to replace, and any output that is or holds
    the source."""
    if source is not None:
        out, src = output.resolve(), source.resolve()
        if out == src or out in src.parents:
            raise LanternError(f"the output {output} would replace the model being exported")
    if output.exists() and not overwrite:
        raise LanternError(f"{output} already exists; pass --overwrite to replace it")
    if output.exists() and output.is_dir() != directory:
        raise LanternError(f"{output} is a {'file' if directory else 'directory'}; this export "
                           f"writes a {'directory' if directory else 'file'}, so it is left alone")
    if directory:
        check_replaceable_directory(output)


def write_directory(output: Path, fill: Callable[[Path], None]) -> None:
    """Let `fill(tmp)` write a directory beside `output`, then move it into place (marked as
    LANTERN's: a later --overwrite may replace it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable_directory(output)
    tmp = create_temporary_directory(output)
    try:
        fill(tmp)
        make_output_directory(tmp, "export")
        atomic_replace_directory(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_file(output: Path, fill: Callable[[Path], None]) -> None:
    """Let `fill(tmp)` write a file beside `output` (for writers that open paths themselves),
    then flush it and rename it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temporary_file(output)
    os.close(fd)
    try:
        fill(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(output.parent)
