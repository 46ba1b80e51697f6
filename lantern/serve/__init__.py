"""`lantern serve`: an OpenAI-compatible HTTP server with continuous batching and a playground.

The names below load on first use, so that `lantern serve --help` (which reads only
`ServeLimits`) does not import the web framework."""

import importlib
from typing import Any

EXPORTS = {"create_app": "lantern.serve.app", "ServeLimits": "lantern.serve.limits",
           "ModelRegistry": "lantern.serve.registry", "ServedModel": "lantern.serve.registry",
           "load_served_model": "lantern.serve.registry"}

__all__ = ["ModelRegistry", "ServeLimits", "ServedModel", "create_app", "load_served_model"]


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'lantern.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)
