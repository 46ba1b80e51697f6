"""Per-token uncertainty signals, the score that combines them, and the policy that acts on it.

Signals, for a next-token distribution p over the vocabulary:
- entropy: H(p) in nats (0 = certain, log V = uniform);
- top-1 probability: max p (reported as 1 - max p in the score, so higher = less sure);
- semantic dispersion: the top-k candidates' unit-length embeddings e_i, weighted by their
  renormalized probabilities q_i, spread around their mean m: sum q_i |e_i - m|^2 = 1 - |m|^2,
  in [0, 1]. Candidates that mean the same thing (similar embeddings) disperse little even when
  the probability is split between them;
- epistemic: with N Monte-Carlo-dropout passes p_1..p_N, the mutual information
  H(mean p_n) - mean H(p_n) (how much the passes disagree); 0 where no passes ran.

Score (nats-like, so the thresholds read like entropies):
    score = w_entropy * entropy + w_top1 * (1 - top1) + w_dispersion * dispersion
            + w_epistemic * epistemic
with all weights 1 by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lantern.errors import LanternError


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., V) probabilities -> (...) entropy in nats."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def semantic_dispersion(
    probs: torch.Tensor, embedding: torch.Tensor, top_k: int = 8
) -> torch.Tensor:
    """(..., V) probabilities, (V, C) embeddings -> (...) probability-weighted spread in [0, 1]."""
    top, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    weights = top / top.sum(-1, keepdim=True).clamp_min(1e-12)
    vectors = F.normalize(embedding[ids].float(), dim=-1)  # (..., k, C)
    mean = (weights[..., None] * vectors).sum(-2)
    return (1.0 - mean.pow(2).sum(-1)).clamp_min(0.0)


def mutual_information(sample_probs: torch.Tensor) -> torch.Tensor:
    """(N, ..., V) probabilities of N dropout passes -> (...) epistemic uncertainty in nats."""
    total = predictive_entropy(sample_probs.mean(0))
    return (total - predictive_entropy(sample_probs).mean(0)).clamp_min(0.0)


@dataclass
class UncertaintySignals:
    """One value per batch row for each signal, and the combined score."""

    entropy: torch.Tensor
    top1: torch.Tensor
    dispersion: torch.Tensor
    epistemic: torch.Tensor
    score: torch.Tensor


@contextmanager
def mc_dropout(module: nn.Module, p: float) -> Iterator[None]:
    """Run `module` with every dropout active at rate p (Monte-Carlo dropout), then restore."""
    saved = [(m, m.training) for m in module.modules()]
    rates = []
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            rates.append((m, "p", m.p))
            m.p = p
        elif isinstance(getattr(m, "dropout", None), float):
            rates.append((m, "dropout", m.dropout))
            m.dropout = p
    module.train()
    try:
        yield
    finally:
        for m, name, value in rates:
            setattr(m, name, value)
        for m, training in saved:
            m.training = training


class UncertaintyController:
    """Maps an uncertainty score to what the generator does next. Every threshold acts:

    - score <= tau_low: keep the shallowest depth (`min_steps` per block);
    - tau_low < score: recurse deeper, to `mid_steps`, and score again;
    - tau_mid < score (at mid depth): recurse to `max_steps` and run `mc_samples`
      Monte-Carlo-dropout passes of the last block application, which measure epistemic
      uncertainty (at `mc_dropout`, default the rate the model was trained with; none for a
      model trained without dropout);
    - tau_high < score (at max depth): emit a THINK token instead of a word (at most
      `max_think_tokens` in a row) and start every following token at `max_steps` until the
      score falls back to tau_mid or below.

    With `exit_kl`, depth decides itself from the recursion's own convergence instead of the
    score (Geiping et al. 2025): from `min_steps` each token runs one more step while the
    next-token distribution still moves, KL(p_k || p_k-1) > exit_kl, up to `max_steps`.
    Monte-Carlo passes and THINK still follow the score at the depth reached.
    """

    def __init__(
        self,
        tau_low: float = 1.0,
        tau_mid: float = 2.0,
        tau_high: float = 3.0,
        min_steps: int = 1,
        mid_steps: int | None = None,
        max_steps: int | None = None,
        mc_samples: int = 4,
        mc_dropout: float | None = None,
        max_think_tokens: int = 2,
        top_k: int = 8,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        exit_kl: float | None = None,
    ) -> None:
        if not tau_low <= tau_mid <= tau_high:
            raise LanternError(
                f"thresholds must satisfy tau_low <= tau_mid <= tau_high "
                f"(got {tau_low}, {tau_mid}, {tau_high})"
            )
        if (min_steps < 1 or mc_samples < 0 or max_think_tokens < 0
                or (mc_dropout is not None and not 0.0 <= mc_dropout < 1.0)):
            raise LanternError("min_steps >= 1, mc_samples >= 0, max_think_tokens >= 0 and "
                               "0 <= mc_dropout < 1 are required")
        if exit_kl is not None and not exit_kl >= 0:
            raise LanternError(f"exit_kl must be a non-negative number of nats (got {exit_kl})")
        self.tau_low, self.tau_mid, self.tau_high = tau_low, tau_mid, tau_high
        self.min_steps, self.mid_steps, self.max_steps = min_steps, mid_steps, max_steps
        self.mc_samples, self.mc_dropout = mc_samples, mc_dropout
        self.max_think_tokens = max_think_tokens
        self.top_k = top_k
        self.weights = weights
        self.exit_kl = exit_kl

    def depths(self, model_steps: int) -> tuple[int, int, int]:
        """(shallow, mid, max) steps per block; max defaults to the model's trained depth."""
        deepest = self.max_steps or model_steps
        shallow = min(self.min_steps, deepest)
        mid = self.mid_steps or (shallow + deepest + 1) // 2
        return shallow, min(max(mid, shallow), deepest), deepest

    def signals(
        self, probs: torch.Tensor, embedding: torch.Tensor, sample_probs: torch.Tensor | None = None
    ) -> UncertaintySignals:
        """Signals of (B, V) probabilities; `sample_probs` (N, B, V) are MC-dropout passes."""
        probs = probs.float()
        entropy = predictive_entropy(probs)
        top1 = probs.max(-1).values
        dispersion = semantic_dispersion(probs, embedding, self.top_k)
        epistemic = (mutual_information(sample_probs.float()) if sample_probs is not None
                     else torch.zeros_like(entropy))
        w = self.weights
        score = w[0] * entropy + w[1] * (1 - top1) + w[2] * dispersion + w[3] * epistemic
        return UncertaintySignals(entropy, top1, dispersion, epistemic, score)

    def still_moving(self, probs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Rows whose next-token distribution changed by more than `exit_kl` in the last step."""
        kl = (probs * (probs.clamp_min(1e-12).log() - previous.clamp_min(1e-12).log())).sum(-1)
        return kl > self.exit_kl

    def go_deeper(self, score: torch.Tensor) -> torch.Tensor:
        return score > self.tau_low

    def go_max(self, score: torch.Tensor) -> torch.Tensor:
        return score > self.tau_mid

    def think(self, score: torch.Tensor) -> torch.Tensor:
        return score > self.tau_high
