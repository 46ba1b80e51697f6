"""Pretrained models: known names fetched into LANTERN's cache, GGUF files and transformers
directories, loaded as LANTERN models or written as run directories."""

from lantern.pretrained.catalog import KNOWN_MODELS, KnownModel, known_model
from lantern.pretrained.load import load_pretrained, model_path, resolve
from lantern.pretrained.pull import cache_root, pull

__all__ = ["KNOWN_MODELS", "KnownModel", "cache_root", "known_model", "load_pretrained", "model_path", "pull",
           "resolve"]
