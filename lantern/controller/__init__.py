"""The former import path of adaptive decoding, now `lantern.generation.adaptive`.

Code written against `lantern.controller` (and its modules `generation`, `uncertainty`,
`thresholds`) keeps importing: each old module name is the new module itself, so classes,
functions and patches are shared, never copied.
"""

import sys

from lantern.generation.adaptive import (
    GenerationConfig,
    GenerationController,
    GenerationResult,
    UncertaintyController,
    UncertaintySignals,
    thresholds,
    uncertainty,
)
from lantern.generation.adaptive import controller as generation

for _name, _module in (("generation", generation), ("thresholds", thresholds),
                       ("uncertainty", uncertainty)):
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = ["GenerationConfig", "GenerationController", "GenerationResult", "UncertaintyController",
           "UncertaintySignals"]
