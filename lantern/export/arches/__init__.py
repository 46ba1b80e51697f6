"""One module per standard architecture, each an `ExportArch` registered in `base`.

Every module of this package is imported here, so a new architecture is one new file: a
registered `ExportArch` subclass (see docs/export.md, "Adding an architecture").
"""

import importlib
import pkgutil

from lantern.export.arches.base import (
    ExportArch,
    arch_for_config,
    arch_for_gguf,
    arch_for_hf,
    can_shift_positions,
    effective_window,
    hf_value,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ExportArch", "arch_for_config", "arch_for_gguf", "arch_for_hf", "can_shift_positions",
           "effective_window", "hf_value"]
