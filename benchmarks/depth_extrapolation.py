"""Acceptance (a): held-out loss against test-time recursion depth (1 ... 2x the training mean).

Models of one shape family (width 128, 4 heads, SwiGLU, RoPE, context 64), trained on the same
data for the same steps:
- fixed 4 (1 block): one block applied 4 times, always (how the recursive presets trained);
- random 1-4 (1 block): the depth drawn uniformly from 1..4 each step, the former recipe;
- prelude+coda, fixed 4: 3 blocks - one prelude, one recurrent block applied 4 times, one coda
  (6 block applications per step): the recipe's fixed-depth twin at equal compute;
- recipe: the same 3 blocks, the recurrent depth drawn from 1 + Poisson(3) capped at 8
  (`--prelude_blocks 1 --coda_blocks 1 --depth_schedule poisson:4`; mean 4, so 6 applications
  per step on average, as its twin).
On the built-in story corpus (nats per character) and on 3-digit additions "123+456=0579"
(loss on the answer digits of held-out problems, and exact answers).

    .venv/bin/python benchmarks/depth_extrapolation.py              # ~15 min on 2 free cores
    .venv/bin/python benchmarks/depth_extrapolation.py --steps 200  # quicker, noisier
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch
from depth_common import (
    RECIPE,
    RECIPE_NAME,
    TRAIN_DEPTH,
    held_out_loss,
    held_out_windows,
    trained_model,
)

from lantern.checkpoint import load_model
from lantern.models.lantern_model import IGNORE_INDEX

PRELUDE_CODA = dict(num_blocks=3, prelude_blocks=1, coda_blocks=1)
VARIANTS = {
    "fixed 4 (1 block)": dict(),
    "random 1-4 (1 block)": dict(depth_schedule="random:1-4"),
    "prelude+coda, fixed 4": PRELUDE_CODA,
    "recipe: prelude+coda, poisson:4": RECIPE,
}
DEPTHS = list(range(1, 2 * TRAIN_DEPTH + 1))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def addition(a: int, b: int) -> str:
    return f"{a:03d}+{b:03d}={a + b:04d}"


def addition_data(count: int) -> tuple[Path, list[tuple[int, int]]]:
    """Training text, and held-out pairs ({a, b} never in training in either order)."""
    rng = random.Random(0)
    held = lambda a, b: (min(a, b) * 7 + max(a, b) * 3) % 11 == 0  # noqa: E731
    lines = []
    while len(lines) < count:
        a, b = rng.randrange(1000), rng.randrange(1000)
        if not held(a, b):
            lines.append(addition(a, b))
    path = Path(tempfile.gettempdir()) / "lantern_bench_depth_addition.txt"
    path.write_text("\n".join(lines) + "\n")
    pairs = [(a, b) for a in range(1000) for b in range(1000) if held(a, b)]
    return path, random.Random(1).sample(pairs, 512)


@torch.no_grad()
def answer_scores(model, tokenizer, pairs, depth: int) -> tuple[float, float]:
    """Loss per answer digit (teacher forced) and exact answers (every digit the argmax, which
    is what greedy decoding writes)."""
    rows = torch.tensor([tokenizer.encode("\n" + addition(a, b) + "\n") for a, b in pairs])
    x, y = rows[:, :-1], rows[:, 1:].clone()
    y[:, : len("\n123+456=") - 1] = IGNORE_INDEX  # score the answer and its newline only
    logits, loss = model(x, y, steps_per_block=depth)
    scored = y != IGNORE_INDEX
    right = (logits.argmax(-1) == y) | ~scored
    return float(loss), float(right.all(dim=1).float().mean())


def table(title: str, rows: dict[str, list[float]], fmt: str) -> None:
    print(f"\n{title}")
    print(f"| model | {' | '.join(str(d) for d in DEPTHS)} |\n|---|{'---|' * len(DEPTHS)}")
    for name, values in rows.items():
        print(f"| {name} | {' | '.join(format(v, fmt) for v in values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--problems", type=int, default=60_000)
    args = parser.parse_args()
    story = {}
    for name, overrides in VARIANTS.items():
        run = RECIPE_NAME if overrides is RECIPE else slug(f"story {name}")
        model, cfg = trained_model(run, args.steps, **overrides)
        windows = held_out_windows(cfg, model, 8)
        story[name] = [held_out_loss(model, windows, d) for d in DEPTHS]
    table(f"story corpus: held-out loss (nats/char) by test-time steps per recurrent block; "
          f"trained {args.steps} steps", story, ".3f")
    for name, losses in story.items():
        mean = TRAIN_DEPTH - 1
        rises = [b - a for a, b in zip(losses[mean:], losses[mean + 1:], strict=False)]
        print(f"{name}: loss at 8 / at 4 = {losses[7] / losses[3]:.3f}, largest rise beyond 4: "
              f"{max(rises):+.4f}")
    recipe, twin = story["recipe: prelude+coda, poisson:4"], story["prelude+coda, fixed 4"]
    print(f"recipe at depth 4 vs its fixed twin: {recipe[3] / twin[3] - 1:+.2%}")

    data, pairs = addition_data(args.problems)
    losses, exact = {}, {}
    for name in ("prelude+coda, fixed 4", "recipe: prelude+coda, poisson:4"):
        model, cfg = trained_model(slug(f"addition {name}"), args.steps, data_path=str(data),
                                   **VARIANTS[name])
        tokenizer = load_model(Path(cfg.output_dir) / "final_model.pt")[1]
        scores = [answer_scores(model, tokenizer, pairs, d) for d in DEPTHS]
        losses[name] = [s[0] for s in scores]
        exact[name] = [100 * s[1] for s in scores]
    table(f"3-digit addition, {len(pairs)} held-out problems: loss per answer digit",
          losses, ".4f")
    table("3-digit addition: exact answers (%)", exact, ".1f")


if __name__ == "__main__":
    main()
