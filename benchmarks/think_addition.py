"""Acceptance (e): do THINK tokens help on a task where thinking should help?

Text: one addition per line in characters, "123+456=0579" (`--digits 3`; 2 gives "07+85=092").
Models of the same shape (2 blocks x 2 steps, width 128, context 64) train on the same problems:
- no pauses;
- random pauses (`--pause_tokens P`: P THINK tokens per window at random places, targets ignored);
- pauses before the answer (`--pause_tokens P --pause_after =`: P THINK after every "=").
Each training runs with `--seeds` seeds. Accuracy (exact answer, greedy) on 400 held-out problems
(operand pairs never seen in training) answering after k = 0 ... P+1 THINK tokens appended to the
prompt, and with the adaptive controller inserting THINK where the answer is uncertain.

    .venv/bin/python benchmarks/think_addition.py                # ~70 min on 2 free cores
    .venv/bin/python benchmarks/think_addition.py --trainings none,answer --steps 800
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import torch

from lantern.checkpoint import load_model
from lantern.generation.adaptive.controller import GenerationConfig, GenerationController
from lantern.generation.adaptive.uncertainty import UncertaintyController
from lantern.training.trainer import TrainConfig, train

INF = float("inf")


def problem(a: int, b: int, digits: int) -> str:
    return f"{a:0{digits}d}+{b:0{digits}d}={a + b:0{digits + 1}d}"


def held_out(a: int, b: int) -> bool:
    """~9% of the unordered pairs, spread over all digits; (a, b) and (b, a) fall together."""
    return (min(a, b) * 7 + max(a, b) * 3) % 11 == 0


def make_data(path: Path, count: int, digits: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    while len(lines) < count:
        a, b = rng.randrange(10 ** digits), rng.randrange(10 ** digits)
        if not held_out(a, b):
            lines.append(problem(a, b, digits))
    path.write_text("\n".join(lines) + "\n")


def accuracy(model, tokenizer, pairs, digits: int, think_tokens: int,
             threshold: float | None) -> float:
    think_id = tokenizer.think_id
    uc = (UncertaintyController(threshold, threshold, threshold, mc_samples=0,
                                max_think_tokens=4) if threshold is not None
          else UncertaintyController(INF, INF, INF, mc_samples=0))
    uc.min_steps = uc.max_steps = model.config.steps_per_block
    controller = GenerationController(model, model.lm_head, model.get_embedding_matrix(), uc,
                                      GenerationConfig(max_new_tokens=digits + 8, temperature=0.0,
                                                       think_token_id=think_id))
    prompt_length = 2 * digits + 2
    prompts = torch.tensor([tokenizer.encode("\n" + problem(a, b, digits)[:prompt_length])
                            + [think_id] * think_tokens for a, b in pairs])
    result = controller.generate(prompts)
    correct = 0
    for row, (a, b) in enumerate(pairs):
        text = tokenizer.decode(result.visible_tokens(row, think_id), skip_special_tokens=True)
        correct += text[: digits + 2] == f"{a + b:0{digits + 1}d}\n"
    return correct / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--problems", type=int, default=60_000)
    parser.add_argument("--pause_tokens", type=int, default=2, help="THINK tokens per pause")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trainings", default="none,random,answer",
                        help="which of none, random, answer (pauses after '=') to train")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "lantern_bench_think"
    work.mkdir(exist_ok=True)
    data = work / f"addition_{args.digits}.txt"
    make_data(data, args.problems, args.digits, seed=0)
    span = 10 ** args.digits
    pairs = [(a, b) for a in range(span) for b in range(span) if held_out(a, b)]
    pairs = random.Random(1).sample(pairs, min(400, len(pairs)))
    p = args.pause_tokens
    known = {"none": ("no pauses", {}),
             "random": (f"random pauses ({p} per window)", {"pause_tokens": p}),
             "answer": (f"{p} pauses after '='", {"pause_tokens": p, "pause_after": "="})}
    trainings = dict(known[key] for key in args.trainings.split(","))
    columns = [f"THINK x {k}" for k in range(p + 2)] + ["adaptive (tau_high 1.0)"]
    rows: dict[str, list[list[float]]] = {}
    for name, pauses in trainings.items():
        for seed in range(args.seeds):
            tag = "_".join(f"{k}{v}" for k, v in pauses.items()) or "plain"
            out = work / f"{tag}_d{args.digits}_s{seed}_{args.steps}"
            cfg = TrainConfig(config="gpt-128", data_path=str(data), hidden_size=128,
                              num_heads=4, num_blocks=2, steps_per_block=2, seq_length=64,
                              batch_size=32, learning_rate=2e-3, max_steps=args.steps,
                              warmup_steps=50, eval_interval=args.steps,
                              save_interval=args.steps, eval_batches=5, num_samples=0,
                              sample_length=8, seed=7 + seed, output_dir=str(out),
                              overwrite=True, **pauses)
            if not (out / "final_model.pt").exists():
                print(f"training: {name}, seed {seed}...", flush=True)
                train(cfg, quiet=True)
            model, tokenizer, _ = load_model(out / "final_model.pt")
            model.eval()
            accs = [accuracy(model, tokenizer, pairs, args.digits, k, None) for k in range(p + 2)]
            accs.append(accuracy(model, tokenizer, pairs, args.digits, 0, 1.0))
            print(f"{name}, seed {seed}: " + ", ".join(f"{c} {100 * a:.1f}%"
                                                     for c, a in zip(columns, accs, strict=True)),
                  flush=True)
            rows.setdefault(name, []).append(accs)
    print(f"\nexact-answer accuracy on {len(pairs)} held-out {args.digits}-digit additions, "
          f"mean ± standard deviation over {args.seeds} seeds")
    print(f"| training | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}")
    for name, runs in rows.items():
        cells = []
        for column in zip(*runs, strict=True):
            spread = statistics.stdev(column) if len(column) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(column):.1f} ± {100 * spread:.1f}%")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
