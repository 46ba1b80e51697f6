"""Acceptance (a): held-out loss against test-time recursion depth (1 ... 2x training depth).

Three models of the same shape (1 block, trained around 4 steps per block) on the same data:
- fixed:   always 4 steps in training (the contrast);
- random:  depth drawn uniformly from 1..4 each step (`--depth_schedule random:1-4`);
- random+reinject: the same, with input re-injection at each recurrence.

    .venv/bin/python benchmarks/depth_extrapolation.py              # ~8 min on 2 free cores
    .venv/bin/python benchmarks/depth_extrapolation.py --steps 200  # quicker, noisier
"""

from __future__ import annotations

import argparse

from depth_common import TRAIN_DEPTH, held_out_loss, held_out_windows, trained_model

VARIANTS = {
    "fixed": dict(),
    "random": dict(depth_schedule="random:1-4"),
    "random+reinject": dict(depth_schedule="random:1-4", reinject_input=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    depths = list(range(1, 2 * TRAIN_DEPTH + 1))
    rows = {}
    for name, overrides in VARIANTS.items():
        model, cfg = trained_model(name, args.steps, **overrides)
        windows = held_out_windows(cfg, model, 8)
        rows[name] = [held_out_loss(model, windows, d) for d in depths]
    print("\nheld-out loss (nats/char) by test-time steps per block; trained at", TRAIN_DEPTH,
          "(fixed) or random 1-4 (mean 2.5)")
    print(f"| model | {' | '.join(str(d) for d in depths)} |")
    print(f"|---|{'---|' * len(depths)}")
    for name, losses in rows.items():
        print(f"| {name} | {' | '.join(f'{x:.3f}' for x in losses)} |")
    for name, losses in rows.items():
        beyond = losses[2:]  # depths 3..8, beyond the random schedule's mean of 2.5
        rise = max(b - a for a, b in zip(beyond, beyond[1:], strict=False))
        print(f"{name}: best depth {depths[losses.index(min(losses))]}, loss at 8 vs 4: "
              f"{losses[7] / losses[3]:.3f}x, largest step-to-step rise beyond depth 3: {rise:+.4f}")


if __name__ == "__main__":
    main()
