"""`lantern serve`: an OpenAI-compatible HTTP server with continuous batching and a playground."""

from lantern.serve.app import create_app
from lantern.serve.limits import ServeLimits
from lantern.serve.registry import ModelRegistry, ServedModel, load_served_model

__all__ = ["ModelRegistry", "ServeLimits", "ServedModel", "create_app", "load_served_model"]
