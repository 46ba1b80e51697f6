"""Uncertainty-aware generation: per-token uncertainty signals decide recursion depth,
Monte-Carlo-dropout averaging and THINK tokens."""

from lantern.controller.generation import GenerationConfig, GenerationController, GenerationResult
from lantern.controller.uncertainty import UncertaintyController, UncertaintySignals

__all__ = ["GenerationConfig", "GenerationController", "GenerationResult", "UncertaintyController",
           "UncertaintySignals"]
