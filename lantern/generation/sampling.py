"""Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, then a draw
(or the argmax when the temperature is 0).

Every setting is bounded so that no value a user may give can make a non-finite distribution,
and the draw itself accepts any logits (NaN, +-inf) a model might produce: one bad row must
never fail the rows sampled beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

MAX_TEMPERATURE = 100.0
PENALTY_LIMIT = 2.0  # presence and frequency penalties lie in [-2, 2], as OpenAI's
REPETITION_PENALTY_RANGE = (0.01, 10.0)


@dataclass
class SamplingConfig:
    """How each next token is chosen. Off values: top_k None/0, top_p None/1, min_p None/0,
    penalties 1.0 (repetition) and 0.0 (presence, frequency)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject values that mean nothing, naming the flag a user would type."""
        values = (self.temperature, self.top_p, self.min_p, self.repetition_penalty,
                  self.presence_penalty, self.frequency_penalty)
        if any(v is not None and not math.isfinite(v) for v in values):
            raise LanternError("sampling settings must be finite numbers")
        low, high = REPETITION_PENALTY_RANGE
        checks = [
            (self.temperature >= 0, f"--temperature must not be negative (got {self.temperature})"),
            (self.temperature <= MAX_TEMPERATURE,
             f"--temperature must be at most {MAX_TEMPERATURE:g} (got {self.temperature})"),
            (self.top_k is None or self.top_k >= 0,
             f"--top_k must be positive, or 0 for off (got {self.top_k})"),
            (self.top_p is None or 0.0 < self.top_p <= 1.0,
             f"--top_p must be in (0, 1] (got {self.top_p})"),
            (self.min_p is None or 0.0 <= self.min_p <= 1.0,
             f"--min_p must be in [0, 1] (got {self.min_p})"),
            (low <= self.repetition_penalty <= high,
             f"--repetition_penalty must be in [{low:g}, {high:g}]; 1 is off (got "
             f"{self.repetition_penalty})"),
            (abs(self.presence_penalty) <= PENALTY_LIMIT,
             f"--presence_penalty must be in [-{PENALTY_LIMIT:g}, {PENALTY_LIMIT:g}] (got "
             f"{self.presence_penalty})"),
            (abs(self.frequency_penalty) <= PENALTY_LIMIT,
             f"--frequency_penalty must be in [-{PENALTY_LIMIT:g}, {PENALTY_LIMIT:g}] (got "
             f"{self.frequency_penalty})"),
        ]
        for ok, message in checks:
            if not ok:
                raise LanternError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def rules(self) -> list[LogitsRule]:
        """The logits rules in the order they apply: penalties first (on the model's own
        logits), then temperature, then the truncations."""
        rules: list[LogitsRule] = []
        if self.repetition_penalty != 1.0:
            rules.append(RepetitionPenalty(self.repetition_penalty))
        if self.presence_penalty:
            rules.append(PresencePenalty(self.presence_penalty))
        if self.frequency_penalty:
            rules.append(FrequencyPenalty(self.frequency_penalty))
        if not self.greedy:
            if self.temperature != 1.0:
                rules.append(Temperature(self.temperature))
            if self.top_k:
                rules.append(TopK(self.top_k))
            if self.top_p is not None and self.top_p < 1.0:
                rules.append(TopP(self.top_p))
            if self.min_p:
                rules.append(MinP(self.min_p))
        return rules


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
