"""An alias of the preset table at the import path `lantern.utils.config`.

`from lantern.utils.config import create_base_config` keeps working for code written against it;
new code calls `lantern.config.preset_config(name, **overrides)`, which these two wrap.
"""

from __future__ import annotations

from typing import Any

from lantern.config import LANTERNConfig, preset_config


def create_small_config(**overrides: Any) -> LANTERNConfig:
    """`preset_config("small", **overrides)`: 1 recursive block, width 256, 4 heads."""
    return preset_config("small", **overrides)


def create_base_config(**overrides: Any) -> LANTERNConfig:
    """`preset_config("base", **overrides)`: 2 recursive blocks, width 512, 8 heads."""
    return preset_config("base", **overrides)
