"""Acceptance (e): a task where thinking should help - two-digit addition written in characters.

Text: one problem per line, "07+85=092". Two models of the same shape (2 blocks x 2 steps,
width 128, context 64) train on the same problems; one with pause-token training
(`--pause_tokens 2`: two THINK tokens per 64-character window at random places, targets
ignored). Accuracy (exact answer, greedy) on 400 held-out problems (operand pairs never seen in
training), answering:
- plain:       straight after "=";
- THINK x k:   after k THINK tokens appended to the prompt;
- adaptive:    GenerationController inserting THINK where the answer is uncertain (tau_high).

    .venv/bin/python benchmarks/think_addition.py     # ~10 min on 2 shared cores
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import torch

from lantern.checkpoint import load_model
from lantern.controller.generation import GenerationConfig, GenerationController
from lantern.controller.uncertainty import UncertaintyController
from lantern.training.trainer import TrainConfig, train

INF = float("inf")


def problem(a: int, b: int) -> str:
    return f"{a:02d}+{b:02d}={a + b:03d}"


def held_out(a: int, b: int) -> bool:
    return (a * 7 + b * 3) % 11 == 0  # ~9% of pairs, spread over all digits


def make_data(path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    while len(lines) < count:
        a, b = rng.randrange(100), rng.randrange(100)
        if not held_out(a, b):
            lines.append(problem(a, b))
    path.write_text("\n".join(lines) + "\n")


def accuracy(model, tokenizer, pairs, think_tokens: int, threshold: float | None) -> float:
    think_id = tokenizer.think_id
    uc = (UncertaintyController(threshold, threshold, threshold, mc_samples=0,
                                max_think_tokens=4) if threshold is not None
          else UncertaintyController(INF, INF, INF, mc_samples=0))
    uc.min_steps = uc.max_steps = model.config.steps_per_block
    controller = GenerationController(model, model.lm_head, model.get_embedding_matrix(), uc,
                                      GenerationConfig(max_new_tokens=12, temperature=0.0,
                                                       think_token_id=think_id))
    prompts = torch.tensor([tokenizer.encode("\n" + problem(a, b)[:6]) + [think_id] * think_tokens
                            for a, b in pairs])
    result = controller.generate(prompts)
    correct = 0
    for row, (a, b) in enumerate(pairs):
        text = tokenizer.decode(result.visible_tokens(row, think_id), skip_special_tokens=True)
        correct += text[:4] == f"{a + b:03d}\n"
    return correct / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--problems", type=int, default=60_000)
    parser.add_argument("--pause_tokens", type=int, default=2, help="THINK tokens per window")
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "lantern_bench_think"
    work.mkdir(exist_ok=True)
    data = work / "addition.txt"
    make_data(data, args.problems, seed=0)
    pairs = [(a, b) for a in range(100) for b in range(100) if held_out(a, b)]
    pairs = random.Random(1).sample(pairs, min(400, len(pairs)))
    rows = {}
    for name, pause in (("no pause training", 0),
                        (f"pause training ({args.pause_tokens}/window)", args.pause_tokens)):
        out = work / f"pause_{pause}_{args.steps}"
        cfg = TrainConfig(config="gpt-128", data_path=str(data), hidden_size=128, num_heads=4,
                          num_blocks=2, steps_per_block=2, seq_length=64, batch_size=32,
                          learning_rate=2e-3, max_steps=args.steps, warmup_steps=50,
                          eval_interval=args.steps, save_interval=args.steps, eval_batches=5,
                          num_samples=0, sample_length=8, seed=7, pause_tokens=pause,
                          output_dir=str(out), overwrite=True)
        if not (out / "final_model.pt").exists():
            print(f"training: {name}...", flush=True)
            train(cfg, quiet=True)
        model, tokenizer, _ = load_model(out / "final_model.pt")
        model.eval()
        rows[name] = {
            "plain": accuracy(model, tokenizer, pairs, 0, None),
            "THINK x 1": accuracy(model, tokenizer, pairs, 1, None),
            "THINK x 3": accuracy(model, tokenizer, pairs, 3, None),
            "adaptive (tau_high 0.5)": accuracy(model, tokenizer, pairs, 0, 0.5),
            "adaptive (tau_high 1.0)": accuracy(model, tokenizer, pairs, 0, 1.0),
        }
    columns = list(next(iter(rows.values())))
    print(f"\nexact-answer accuracy on {len(pairs)} held-out two-digit additions")
    print(f"| training | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}")
    for name, accs in rows.items():
        print(f"| {name} | {' | '.join(f'{100 * accs[c]:.1f}%' for c in columns)} |")


if __name__ == "__main__":
    main()
