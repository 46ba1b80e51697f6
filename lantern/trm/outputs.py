"""Results a user already has are never replaced unless they ask (`--overwrite`)."""

from __future__ import annotations

from pathlib import Path

from lantern.errors import LanternError


def refuse_to_replace(directory: Path, names: list[str], overwrite: bool) -> None:
    found = [n for n in names if (directory / n).exists()]
    if found and not overwrite:
        raise LanternError(f"{directory} already holds {', '.join(found)}; pass --overwrite to "
                           "replace them, or pick another --output_dir")
