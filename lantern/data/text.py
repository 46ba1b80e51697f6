"""Reading a user's text files, with a clear error for anything that is not usable text."""

from __future__ import annotations

from pathlib import Path

from lantern.errors import LanternError

_SNIFF_BYTES = 1 << 16


def check_text_file(path: str | Path) -> Path:
    """Return the path if it is a non-empty UTF-8 text file; otherwise raise one clear error."""
    path = Path(path)
    if not path.exists():
        raise LanternError(f"data file not found: {path}")
    if path.is_dir():
        raise LanternError(f"data path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise LanternError(f"data file is empty: {path}")
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise LanternError(f"data file looks binary (it contains NUL bytes): {path}")
    try:
        # A multi-byte character may be cut at the sniff boundary; ignore only that tail.
        head.decode("utf-8") if len(head) < _SNIFF_BYTES else head[:-4].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LanternError(f"data file is not UTF-8 text (byte {exc.start}): {path}") from None
    return path


def read_text_file(path: str | Path) -> str:
    path = check_text_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LanternError(f"data file is not UTF-8 text (byte {exc.start}): {path}") from None
    if not text.strip():
        raise LanternError(f"data file holds only whitespace: {path}")
    return text
