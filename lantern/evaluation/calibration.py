"""How far a model's next-token probabilities can be trusted, measured on held-out text.

The scored windows are split in two, alternately: on the first half a temperature is fitted
(the one of a log-spaced grid that minimises the negative log-likelihood: temperature scaling,
Guo et al. 2017); on the other half the expected calibration error (ECE: 15 equal-width bins of
the top-1 probability, |accuracy - confidence| weighted by the bin's share) is reported before
and after it, with a reliability diagram, and the AUROC of each uncertainty signal for "the
model's top-1 token is wrong". One pass over the data: for every reported token the top-1
probability is kept at every temperature of the grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

TEMPERATURES = torch.exp(torch.linspace(math.log(0.25), math.log(4.0), 49))  # ratio ~1.06
AS_TRAINED = int((TEMPERATURES - 1.0).abs().argmin())  # the grid's T = 1
BINS = 15


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor,
                     bins: int = BINS) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, tokens) of each non-empty equal-width confidence bin."""
    index = (confidence * bins).long().clamp(max=bins - 1)
    return [(confidence[index == b].double().mean().item(), correct[index == b].double().mean().item(),
             int((index == b).sum())) for b in range(bins) if (index == b).any()]


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor,
                               bins: int = BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| x the bin's share."""
    return sum(abs(accuracy - mean) * count for mean, accuracy, count
               in reliability_bins(confidence, correct, bins)) / max(1, len(confidence))


def auroc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting half (the Mann-Whitney U)."""
    values, inverse = torch.unique(score.double(), return_inverse=True)
    pos = torch.bincount(inverse[positive], minlength=len(values)).double()
    neg = torch.bincount(inverse[~positive], minlength=len(values)).double()
    below = torch.cumsum(neg, 0) - neg
    pairs = pos.sum() * neg.sum()
    return float(((pos * (below + 0.5 * neg)).sum() / pairs).item()) if pairs > 0 else float("nan")


class Calibration:
    """Accumulates the two halves' tokens; `figures()` fits the temperature and reports."""

    def __init__(self) -> None:
        self.fit_nll = torch.zeros(len(TEMPERATURES), dtype=torch.float64)
        self.fit_tokens = 0
        self.top1: list[torch.Tensor] = []  # (n, len(TEMPERATURES)) per reported batch
        self.correct: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, targets: torch.Tensor, fit: bool) -> None:
        """logits (n, V) and the tokens that came (n,), from a window of the `fit` half or not."""
        logits = logits.float()
        if fit:
            for i, t in enumerate(TEMPERATURES.tolist()):
                self.fit_nll[i] += F.cross_entropy(logits / t, targets, reduction="sum").double()
            self.fit_tokens += len(targets)
            return
        top = logits.max(dim=-1).values
        self.top1.append(torch.stack([torch.exp(top / t - torch.logsumexp(logits / t, dim=-1))
                                      for t in TEMPERATURES.tolist()], dim=1).cpu())
        self.correct.append((logits.argmax(-1) == targets).cpu())
        logp = F.log_softmax(logits, dim=-1)
        self.entropy.append(-(logp.exp() * logp).sum(-1).cpu())

    def column(self, after_temperature: bool) -> int:
        """The grid column of the fitted temperature, or of T = 1."""
        return int(self.fit_nll.argmin()) if after_temperature else AS_TRAINED

    def figures(self) -> dict[str, float | int]:
        if not self.fit_tokens or not self.top1:
            return {}
        best = self.column(after_temperature=True)
        top1, correct = torch.cat(self.top1), torch.cat(self.correct)
        wrong = ~correct
        return {"calibration_tokens": len(correct), "temperature_fit_tokens": self.fit_tokens,
                "temperature": float(TEMPERATURES[best]),
                "ece": expected_calibration_error(top1[:, AS_TRAINED], correct),
                "ece_after_temperature": expected_calibration_error(top1[:, best], correct),
                "auroc_wrong_1_minus_top1": auroc(1.0 - top1[:, AS_TRAINED], wrong),
                "auroc_wrong_entropy": auroc(torch.cat(self.entropy), wrong)}

    def reliability_points(self, after_temperature: bool) -> list[tuple[float, float, int]]:
        """(mean confidence, accuracy, tokens) per non-empty bin, for the diagram."""
        return reliability_bins(torch.cat(self.top1)[:, self.column(after_temperature)],
                                torch.cat(self.correct))


def plot_reliability(curves: dict[str, Calibration], path: str | Path) -> None:
    """Accuracy against confidence per bin, before and after temperature scaling, one line per
    scored depth; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = {label: calibration.figures() for label, calibration in curves.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, after in zip(axes, (False, True), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for label, calibration in curves.items():
            figures = report[label]
            points = calibration.reliability_points(after)
            ece = figures["ece_after_temperature" if after else "ece"]
            name = f"{label}: ECE {ece:.3f}" + (f", T {figures['temperature']:.2f}" if after else "")
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_title("after temperature scaling" if after else "as trained")
        ax.set_xlabel("top-1 probability (bin mean)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy of the top-1 token")
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
