"""Adaptive-decoding thresholds fitted from the model itself, stored with its checkpoint.

Fixed thresholds (1, 2, 3 nats) mean different things for different models: on a freshly
trained character model they sent most tokens to full depth and most outputs to THINK. Fitted at
the end of training on held-out windows, `tau_low` is the score above which the `deeper`
share of tokens (20%) lies at the shallow depth, and `tau_mid` the one above which the `deepest`
share (5%) lies at the middle depth: "the 20% most uncertain tokens get more depth" is what the
defaults mean. THINK tokens are the policy's only for a model trained with pauses
(`--pause_tokens`); for it `tau_high` is the score of the `think` share (2%) at full depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lantern.errors import LanternError
from lantern.generation.adaptive.uncertainty import UncertaintyController

DEEPER, DEEPEST, THINK = 0.2, 0.05, 0.02
UNFITTED_TAUS = (1.0, 2.0, 3.0)  # checkpoints saved before thresholds were fitted
SCORE_ROWS = 1024  # positions scored at a time: probabilities of a 49k vocabulary stay ~200 MB


@dataclass(frozen=True)
class AdaptiveDefaults:
    """What `--adaptive` does when no threshold is given, and whether THINK is allowed."""

    tau_low: float
    tau_mid: float
    tau_high: float  # inf: no THINK
    think: bool  # the model was trained with pause tokens
    fitted: bool  # fitted on held-out text (False: a checkpoint from before fitting existed)

    @property
    def taus(self) -> tuple[float, float, float]:
        return self.tau_low, self.tau_mid, self.tau_high

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain data for the checkpoint (no infinity: None stands for "no THINK")."""
        values = asdict(self)
        values["tau_high"] = None if math.isinf(self.tau_high) else self.tau_high
        return values

    def resolve(self, tau_low: float | None, tau_mid: float | None,
                tau_high: float | None) -> tuple[float, float, float]:
        """Given thresholds over the defaults; a THINK threshold for a model that never learned
        THINK is refused by name (it would only put tokens it cannot read into its input)."""
        if tau_high is not None and not self.think:
            raise LanternError("tau_high: this model was not trained with THINK tokens "
                               "(lantern train --pause_tokens), so adaptive decoding emits none")
        given = (tau_low, tau_mid, tau_high)
        return tuple(d if t is None else float(t)
                     for t, d in zip(given, self.taus, strict=True))  # type: ignore[return-value]


def adaptive_defaults(checkpoint: dict[str, Any]) -> AdaptiveDefaults:
    """The defaults a checkpoint carries; for one saved before fitting, the old fixed values,
    with THINK allowed only when its training inserted pause tokens."""
    stored = checkpoint.get("adaptive")
    if stored:
        high = stored["tau_high"]
        return AdaptiveDefaults(stored["tau_low"], stored["tau_mid"],
                                math.inf if high is None else high, stored["think"], True)
    loop = (checkpoint.get("train_config") or {}).get("loop") or {}
    think = bool(loop.get("pause_tokens"))
    low, mid, high = UNFITTED_TAUS
    return AdaptiveDefaults(low, mid, high if think else math.inf, think, False)


@torch.no_grad()
def fit_thresholds(model: Any, windows: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   think: bool) -> AdaptiveDefaults:
    """Quantiles of the model's own uncertainty score on held-out windows, at the depths the
    controller scores at: shallow (tau_low), middle (tau_mid) and full (tau_high)."""
    uc = UncertaintyController(math.inf, math.inf, math.inf, mc_samples=0)
    shallow, mid, deepest = uc.depths(model.config.steps_per_block)
    embedding = model.get_embedding_matrix()
    scores: dict[int, list[torch.Tensor]] = {shallow: [], mid: [], deepest: []}
    was_training = model.training
    model.eval()
    try:
        for x, _ in windows:
            for depth, found in scores.items():
                logits, _ = model(x, steps_per_block=depth)
                for rows in logits.flatten(0, 1).split(SCORE_ROWS):  # bounded memory for big
                    probs = torch.softmax(rows.float(), dim=-1)     # vocabularies
                    found.append(uc.signals(probs, embedding).score)
    finally:
        model.train(was_training)
    if not scores[shallow]:
        raise LanternError("no held-out windows to fit the adaptive thresholds on")
    low = _quantile(scores[shallow], 1 - DEEPER)
    mid_tau = max(low, _quantile(scores[mid], 1 - DEEPEST))
    high = max(mid_tau, _quantile(scores[deepest], 1 - THINK)) if think else math.inf
    return AdaptiveDefaults(low, mid_tau, high, think, True)


def _quantile(parts: list[torch.Tensor], q: float) -> float:
    return float(torch.quantile(torch.cat(parts).float(), q))
