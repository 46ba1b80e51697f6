"""Weights the LLM-TRM steps write as STEM.safetensors + STEM.json, read back as a pair (the
refusal to replace a run's results is the training loop's, `lantern.training.loop.start_run`)."""

from __future__ import annotations

from pathlib import Path

from lantern.errors import LanternError


def paired_files(path: str | Path, what: str) -> tuple[Path, Path]:
    """STEM.safetensors and STEM.json from the stem or either file; refused in one line when
    one is missing or `path` names some other file."""
    path = Path(path)
    if path.is_file() and path.suffix not in (".safetensors", ".json"):
        raise LanternError(f"{path} is not a {what} (a STEM.safetensors with its STEM.json)")
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise LanternError(f"{what} not found: {weights} and {meta} are both needed")
    return weights, meta


def damage_reason(exc: Exception) -> str:
    """What a reader found wrong in a damaged file, in at most one short line."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]
