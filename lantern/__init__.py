"""LANTERN: build, train, run and study small language models.

The main classes are imported on first use, so `import lantern` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "LLM": "lantern.api",
    "LANTERNModel": "lantern.models.lantern_model",
    "LANTERNConfig": "lantern.config",
    "GenerationController": "lantern.generation.adaptive.controller",
    "GenerationConfig": "lantern.generation.adaptive.controller",
    "UncertaintyController": "lantern.generation.adaptive.uncertainty",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lantern' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
