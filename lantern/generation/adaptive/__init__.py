"""Adaptive decoding: per-token uncertainty signals decide recursion depth, Monte-Carlo-dropout
averaging and THINK tokens, as a policy over the decoding core."""

from lantern.generation.adaptive.controller import (
    GenerationConfig,
    GenerationController,
    GenerationResult,
)
from lantern.generation.adaptive.uncertainty import UncertaintyController, UncertaintySignals

__all__ = ["GenerationConfig", "GenerationController", "GenerationResult", "UncertaintyController",
           "UncertaintySignals"]
