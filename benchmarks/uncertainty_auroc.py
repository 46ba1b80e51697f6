"""Acceptance (b): how well each uncertainty signal predicts that the next token will be wrong.

On held-out windows of the variable-depth benchmark model (see depth_common.py): the
GenerationController itself scores each window (its `targets` mode), with thresholds that send
every token to full depth and through its Monte-Carlo-dropout passes, so every figure is exactly
the signal the controller acts on: entropy, 1 - top1, dispersion, epistemic (its 4 passes of the
last block application at the model's trained dropout rate) and the combined score.
label = (greedy prediction != actual next character).
AUROC 0.5 = no information, 1.0 = perfect ranking.

    .venv/bin/python benchmarks/uncertainty_auroc.py      # ~1 min (+ training if not cached)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from depth_common import TRAIN_DEPTH, held_out_windows, trained_model

from lantern.generation.adaptive.controller import GenerationConfig, GenerationController
from lantern.generation.adaptive.uncertainty import UncertaintyController


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse = np.unique(scores, return_inverse=True)
    ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]  # average tied ranks
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--mc_samples", type=int, default=4, help="the controller's default")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, cfg = trained_model("random", args.steps, depth_schedule="random:1-4")
    inf = float("inf")
    uc = UncertaintyController(-inf, -inf, inf, max_steps=TRAIN_DEPTH, mc_samples=args.mc_samples)
    controller = GenerationController(model, uncertainty_controller=uc,
                                      config=GenerationConfig(temperature=0))
    print(f"Monte-Carlo dropout: {controller.mc_samples} passes at p = {controller.mc_rate}")
    columns: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("entropy", "1 - top1", "dispersion", "epistemic",
                                             "combined score", "wrong")}
    for x, y in held_out_windows(cfg, model, args.batches):
        ids = torch.cat([x, y[:, -1:]], dim=1)
        trace = controller.generate(ids[:, :1], targets=ids[:, 1:]).trace
        entries = [t for row in trace for t in row]
        top1 = np.array([t.top1 for t in entries])
        loss = np.array([t.loss for t in entries])
        for name, value in (("entropy", [t.entropy for t in entries]),
                            ("1 - top1", 1 - top1),
                            ("dispersion", [t.dispersion for t in entries]),
                            ("epistemic", [t.epistemic for t in entries]),
                            ("combined score", [t.uncertainty for t in entries]),
                            ("wrong", loss > -np.log(top1) + 1e-6)):  # target below the top-1
            columns[name].append(np.asarray(value))
    data = {k: np.concatenate(v) for k, v in columns.items()}
    wrong = data.pop("wrong").astype(bool)
    print(f"\n{len(wrong):,} held-out characters, greedy error rate {wrong.mean():.1%}")
    print("| signal | AUROC (predicting a wrong next token) |\n|---|---|")
    for name, values in data.items():
        print(f"| {name} | {auroc(values, wrong):.3f} |")


if __name__ == "__main__":
    main()
