"""Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, then a draw
(or the argmax when the temperature is 0).

Every setting is bounded so that no value a user may give can make a non-finite distribution,
and the draw itself accepts any logits (NaN, +-inf) a model might produce: one bad row must
never fail the rows sampled beside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lantern.errors import LanternError
from lantern.generation.logits_process import (
    FrequencyPenalty,
    LogitsRule,
    MinP,
    PresencePenalty,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_rules,
)
from lantern.setting import setting

MAX_TEMPERATURE = 100.0
PENALTY_LIMIT = 2.0  # presence and frequency penalties lie in [-2, 2], as OpenAI's
REPETITION_PENALTY_RANGE = (0.01, 10.0)


def sampler(default: Any, rule: Callable[[Any], LogitsRule], help: str, *, off: Any,
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            llamacpp: tuple[str, str] | None = None, greedy_too: bool = False) -> Any:
    """A sampling setting: its field declares everything the command line, the server and
    llama.cpp read. `rule(value)` is its logits rule, left out at the `off` value (or None);
    `ge`/`gt`/`le` bound it; `llamacpp` is (request key, sampler-chain name) where llama.cpp
    has it (a GGUF run refuses the setting by name where it does not); `greedy_too` keeps the
    rule under greedy decoding (it changes which token is best)."""
    return setting(default, help, unset="off", rule=rule, off=off, ge=ge, gt=gt, le=le,
                   llamacpp=llamacpp, greedy_too=greedy_too)


@dataclass
class SamplingConfig:
    """How each next token is chosen. The fields are in the order their rules apply: penalties
    first (on the model's own logits), then temperature, then the truncations."""

    repetition_penalty: float = sampler(
        1.0, RepetitionPenalty, "> 1 makes tokens already in the text less likely; 1 = off",
        off=1.0, ge=REPETITION_PENALTY_RANGE[0], le=REPETITION_PENALTY_RANGE[1],
        llamacpp=("repeat_penalty", "penalties"), greedy_too=True)
    presence_penalty: float = sampler(
        0.0, PresencePenalty, "subtracted from the logit of every token already in the text",
        off=0.0, ge=-PENALTY_LIMIT, le=PENALTY_LIMIT, llamacpp=("presence_penalty", "penalties"),
        greedy_too=True)
    frequency_penalty: float = sampler(
        0.0, FrequencyPenalty, "subtracted once per occurrence of a token in the text", off=0.0,
        ge=-PENALTY_LIMIT, le=PENALTY_LIMIT, llamacpp=("frequency_penalty", "penalties"),
        greedy_too=True)
    temperature: float = sampler(1.0, Temperature, "0 = greedy", off=1.0, ge=0.0,
                                 le=MAX_TEMPERATURE, llamacpp=("temperature", "temperature"))
    top_k: int | None = sampler(None, TopK, "keep the k most likely tokens; 0 = off", off=0,
                                ge=0, llamacpp=("top_k", "top_k"))
    top_p: float | None = sampler(None, TopP, "nucleus sampling mass; 1 = off", off=1.0, gt=0.0,
                                  le=1.0, llamacpp=("top_p", "top_p"))
    min_p: float | None = sampler(None, MinP, "drop tokens less likely than min_p x the most "
                                  "likely one; 0 = off", off=0.0, ge=0.0, le=1.0,
                                  llamacpp=("min_p", "min_p"))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that mean nothing, naming the flag a user would type."""
        for f, value in self.samplers():
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise LanternError("sampling settings must be finite numbers")
            ge, gt, le = f.metadata["ge"], f.metadata["gt"], f.metadata["le"]
            if (ge is not None and value < ge) or (gt is not None and value <= gt):
                low = ge if ge is not None else gt
                wanted = ("not be negative" if ge == 0 else "be positive" if gt == 0
                          else f"be at least {low:g}")
                raise LanternError(f"--{f.name} must {wanted} (got {value})")
            if le is not None and value > le:
                raise LanternError(f"--{f.name} must be at most {le:g} (got {value})")

    def samplers(self) -> list[tuple[dataclasses.Field, Any]]:
        """(field, value) of every sampling setting, in the order their rules apply."""
        return [(f, getattr(self, f.name)) for f in sampler_fields()]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def rules(self) -> list[LogitsRule]:
        """The logits rules in the order they apply; a setting at its off value adds none, and
        greedy decoding keeps only the rules that can change the best token."""
        return [f.metadata["rule"](value) for f, value in self.samplers()
                if value is not None and value != f.metadata["off"]
                and (f.metadata["greedy_too"] or not self.greedy)]


def sampler_fields() -> list[dataclasses.Field]:
    """The sampling settings' fields (those declared with `sampler`)."""
    return [f for f in dataclasses.fields(SamplingConfig) if "rule" in f.metadata]


def choose(
    logits: torch.Tensor,
    rules: list[LogitsRule],
    greedy: bool,
    counts: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row (B, 1) from the last-position logits (B, V)."""
    return draw(apply_rules(rules, logits.float(), counts), greedy, generator)


def draw(
    logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row (B, 1) from filtered logits (B, V), whatever they hold: NaN counts as
    excluded, and +inf entries share the whole mass (the limit of ever larger logits), so the
    distribution drawn from is always finite. A row with nothing left fails alone (LanternError)."""
    logits = torch.where(logits.isnan(), float("-inf"), logits)
    top = logits.amax(dim=-1, keepdim=True)
    if bool((top == float("-inf")).any()):
        raise LanternError("the model's next-token logits hold no finite value")
    infinite = torch.where(logits == float("inf"), 0.0, float("-inf"))
    logits = torch.where(top == float("inf"), infinite, logits)
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
