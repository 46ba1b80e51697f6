"""Acceptance (c): depth that decides itself - adaptive recursion depth against fixed depths.

The recipe model of `depth_extrapolation.py` (prelude, one recurrent block, coda; trained with
depth 1 + Poisson(3)) scores held-out windows token by token through GenerationController (KV
cache, teacher forcing, one row at a time so each token's depth is its own), up to 4 recurrent
steps:
- fixed k: every token at k steps;
- uncertainty: a token goes to the middle depth when its score at depth 1 exceeds tau_low, and
  to 4 when it then exceeds tau_mid (the thresholds fitted at the end of training, and a sweep);
- convergence: a token runs one more step while its next-token distribution still moves,
  KL(p_k || p_k-1) > exit_kl (Geiping et al. 2025), a sweep of exit_kl.
Compute = block applications actually run per token (prelude, coda and re-run codas counted)
relative to always running 4 steps (6 applications); each window's first token comes from the
prompt's prefill at full depth in every setting.

    .venv/bin/python benchmarks/depth_adaptive.py         # ~5 min (+ training if not cached)
"""

from __future__ import annotations

import argparse

import torch
from depth_common import TRAIN_DEPTH, held_out_windows, recipe_model

from lantern.generation.adaptive.controller import GenerationConfig, GenerationController
from lantern.generation.adaptive.thresholds import adaptive_defaults
from lantern.generation.adaptive.uncertainty import UncertaintyController

INF = float("inf")


def score(model, rows, uc: UncertaintyController) -> tuple[float, float]:
    """Mean loss and compute (fraction of always-max-depth block applications)."""
    controller = GenerationController(model, uncertainty_controller=uc,
                                      config=GenerationConfig(temperature=0.0))
    losses, runs, count = 0.0, 0, 0
    for ids in rows:
        trace = controller.generate(ids[None, :1], targets=ids[None, 1:]).trace[0][1:]
        losses += sum(t.loss for t in trace)
        runs += sum(t.applications for t in trace)
        count += len(trace)
    return losses / count, runs / (count * model.config.num_layers(TRAIN_DEPTH))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--windows", type=int, default=24)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, cfg, state = recipe_model(args.steps)
    fitted = adaptive_defaults(state)
    rows = [torch.cat([x[i, :1], y[i, :-1]])
            for x, y in held_out_windows(cfg, model, 2) for i in range(len(x))][: args.windows]
    settings = {f"fixed {k}": UncertaintyController(INF, INF, INF, min_steps=k, max_steps=k,
                                                      mc_samples=0)
                for k in range(1, TRAIN_DEPTH + 1)}
    lows = [(f"fitted tau_low {fitted.tau_low:.2f}", fitted.tau_low, fitted.tau_mid)]
    lows += [(f"tau_low {low}", low, low + 1.0) for low in (1.0, 1.5, 2.0, 2.5)]
    for name, low, mid in lows:
        settings[f"uncertainty, {name}"] = UncertaintyController(
            low, mid, INF, min_steps=1, max_steps=TRAIN_DEPTH, mc_samples=0)
    for kl in (0.1, 0.03, 0.01, 0.003, 0.001):
        settings[f"convergence, exit_kl {kl}"] = UncertaintyController(
            INF, INF, INF, min_steps=1, max_steps=TRAIN_DEPTH, mc_samples=0, exit_kl=kl)
    results = {}
    for name, uc in settings.items():
        results[name] = score(model, rows, uc)
        print(name, results[name], flush=True)
    base_loss, _ = results[f"fixed {TRAIN_DEPTH}"]
    print(f"\n{len(rows)} held-out windows x {len(rows[0]) - 1} characters")
    print("| setting | loss | loss vs fixed 4 | compute vs fixed 4 |\n|---|---|---|---|")
    for name, (loss, compute) in results.items():
        print(f"| {name} | {loss:.4f} | {100 * (loss / base_loss - 1):+.2f}% | {compute:.1%} |")


if __name__ == "__main__":
    main()
