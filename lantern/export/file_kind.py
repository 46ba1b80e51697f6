"""What a file is, from its first bytes, so that a refusal can say so ("it is a safetensors
file") instead of only what it is not."""

from __future__ import annotations

import json
import struct
from pathlib import Path

GGUF_MAGIC = b"GGUF"
SNIFF_BYTES = 4096


def is_gguf_file(path: str | Path) -> bool:
    """Whether `path` is a file that starts as a GGUF does."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then that header as a JSON object."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    length = struct.unpack("<Q", head[:8])[0]
    if length > len(head) - 8:
        return True  # a header longer than the sniffed bytes: its start is enough
    try:
        return isinstance(json.loads(head[8:8 + length]), dict)
    except ValueError:
        return False


def file_kind(path: str | Path) -> str:
    """'a GGUF file', 'a safetensors file', 'a zip archive', 'a text file', ... for `path`."""
    path = Path(path)
    if path.is_dir():
        return "a directory"
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        return "an empty file"
    if head.startswith(GGUF_MAGIC):
        return "a GGUF file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if looks_like_safetensors(head):
        return "a safetensors file"
    if head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6)):
        return "a pickle"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniffed end
            return "unknown binary data (damaged, or in a format LANTERN does not read)"
    return "a JSON file" if head.lstrip()[:1] in (b"{", b"[") else "a text file"
