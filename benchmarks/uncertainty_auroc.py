"""Acceptance (b): how well each uncertainty signal predicts that the next token will be wrong.

On held-out windows of the variable-depth benchmark model (see depth_common.py), at full depth:
label = (greedy prediction != actual next character); score = each signal, and the combined
score of UncertaintyController (entropy + (1 - top1) + dispersion + epistemic). Epistemic
uncertainty comes from 8 Monte-Carlo-dropout passes of the whole transformer at the training
dropout rate (p = 0.05).
AUROC 0.5 = no information, 1.0 = perfect ranking.

    .venv/bin/python benchmarks/uncertainty_auroc.py      # ~1 min (+ training if not cached)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from depth_common import TRAIN_DEPTH, held_out_windows, trained_model

from lantern.controller.uncertainty import UncertaintyController, mc_dropout


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
    parser.add_argument("--mc_samples", type=int, default=8)
    parser.add_argument("--mc_dropout", type=float, default=0.05, help="the training rate")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, cfg = trained_model("random", args.steps, depth_schedule="random:1-4")
    uc = UncertaintyController()
    embedding = model.get_embedding_matrix()
    columns: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("entropy", "1 - top1", "dispersion", "epistemic",
                                             "combined score", "wrong")}
    for x, y in held_out_windows(cfg, model, args.batches):
        logits, _ = model(x, steps_per_block=TRAIN_DEPTH)
        probs = torch.softmax(logits.float(), -1).flatten(0, 1)
        with mc_dropout(model.transformer, args.mc_dropout):
            samples = torch.stack([
                torch.softmax(model(x, steps_per_block=TRAIN_DEPTH)[0].float(), -1).flatten(0, 1)
                for _ in range(args.mc_samples)
            ])
        s = uc.signals(probs, embedding, samples)
        for name, value in (("entropy", s.entropy), ("1 - top1", 1 - s.top1),
                            ("dispersion", s.dispersion), ("epistemic", s.epistemic),
                            ("combined score", s.score),
                            ("wrong", probs.argmax(-1) != y.flatten())):
            columns[name].append(value.numpy())
    data = {k: np.concatenate(v) for k, v in columns.items()}
    wrong = data.pop("wrong").astype(bool)
    print(f"\n{len(wrong):,} held-out characters, greedy error rate {wrong.mean():.1%}")
    print("| signal | AUROC (predicting a wrong next token) |\n|---|---|")
    for name, values in data.items():
        print(f"| {name} | {auroc(values, wrong):.3f} |")


if __name__ == "__main__":
    main()
