"""Seed 000's config helpers (`from lantern.utils.config import create_base_config`)."""

from __future__ import annotations

from typing import Any

from lantern.config import LANTERNConfig, preset_config


def create_small_config(**overrides: Any) -> LANTERNConfig:
    """The `small` preset: 1 recursive block, width 256, 4 heads."""
    return preset_config("small", **overrides)


def create_base_config(**overrides: Any) -> LANTERNConfig:
    """The `base` preset: 2 recursive blocks, width 512, 8 heads."""
    return preset_config("base", **overrides)
