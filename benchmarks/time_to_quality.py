"""Time to quality: how soon `lantern train --config fast` reaches a held-out loss against the
nanoGPT-style reference of `train_speed.py` (4 layers, 4 heads, width 128, context 64, batch 12,
AdamW 1e-3, warmup 100 then cosine to 1e-4, 2000 steps), on tiny Shakespeare in characters.

Both sides run in this process, one after the other, on the same thread count (--threads); both are scored
every --every steps on the same held-out windows (20 batches of 12, the run's own validation
split) and the clock counts training only, evaluations left out. The fast side is the preset as a
user runs it (`TrainConfig(config="fast", data_path=...)`): RoPE, RMSNorm, SwiGLU at equal
parameters, learning rate 3e-3 held then decayed linearly over the last 30% of 650 steps.

    .venv/bin/python benchmarks/time_to_quality.py                 # 3 alternating repeats
    .venv/bin/python benchmarks/time_to_quality.py --repeats 1 --stretch_steps 2000 --ablations

`--ablations` adds the fast recipe on nano's own architecture (learned positions, LayerNorm,
GELU) and nano's schedule on the fast architecture, once each, to say what each change bought.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from train_speed import BATCH, CONTEXT, LR, MIN_LR, SHAKESPEARE, WARMUP, held_out_loss, reference_steps

from lantern.data.batches import eval_windows
from lantern.data.token_store import load_tokens
from lantern.tokenizers import CharTokenizer
from lantern.training.trainer import TrainConfig, train

EVAL_BATCHES = 20
Curve = list[tuple[int, float, float]]  # (step, training seconds, held-out loss)


def reference_curve(train_ids: torch.Tensor, vocab: int, val, steps: int, every: int) -> Curve:
    """nanoGPT's loop (train_speed.py's), scored every `every` steps off the clock."""
    curve, clock = [], 0.0
    for step, model, seconds in reference_steps(train_ids, vocab, steps):
        clock += seconds
        if step % every == 0 or step == steps:
            curve.append((step, clock, held_out_loss(model, val)))
            model.train()
    return curve


def lantern_curve(data: Path, out: Path, every: int, **overrides) -> Curve:
    """A `lantern train` run; its evaluations (same windows) and their training clock."""
    cfg = TrainConfig(config="fast", data_path=str(data), output_dir=str(out), overwrite=True,
                      eval_interval=every, eval_batches=EVAL_BATCHES, num_samples=0,
                      save_interval=10**9, log_interval=every, **overrides)
    train(cfg, quiet=True)
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_time"], r["val_loss"]) for r in records if "val_loss" in r]


def first_below(curve: Curve, target: float) -> tuple[int, float] | None:
    return next(((step, clock) for step, clock, loss in curve if loss <= target), None)


def describe(curve: Curve, target: float) -> str:
    hit = first_below(curve, target)
    step, clock, loss = curve[-1]
    reached = f"<= {target} at step {hit[0]}, {hit[1]:.1f} s" if hit else "not reached"
    return f"{reached}; final {loss:.3f} at step {step}, {clock:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=1.88)
    parser.add_argument("--stretch", type=float, default=1.60)
    parser.add_argument("--stretch_steps", type=int, default=0,
                        help="also run the fast recipe this long and report --stretch")
    parser.add_argument("--steps", type=int, default=2000, help="reference steps")
    parser.add_argument("--every", type=int, default=50, help="steps between evaluations")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (one is steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not SHAKESPEARE.is_file():
        raise SystemExit(f"needs {SHAKESPEARE}")
    tokenizer = CharTokenizer.train([SHAKESPEARE.read_text()])
    tokens = torch.from_numpy(load_tokens(SHAKESPEARE, tokenizer).astype("int64"))
    split = int(len(tokens) * 0.9)
    val = eval_windows(tokens[split:].numpy(), CONTEXT, BATCH, EVAL_BATCHES)
    print(f"tiny Shakespeare | threads {torch.get_num_threads()} | target {args.target} | "
          f"evaluations every {args.every} steps, off the clock")
    ref_times, fast_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeats):
            ref = reference_curve(tokens[:split], tokenizer.vocab_size, val, args.steps, args.every)
            fast = lantern_curve(SHAKESPEARE, Path(tmp) / f"fast{attempt}", args.every)
            print(f"repeat {attempt + 1}: reference {describe(ref, args.target)}")
            print(f"repeat {attempt + 1}: fast      {describe(fast, args.target)}", flush=True)
            ref_hit, fast_hit = first_below(ref, args.target), first_below(fast, args.target)
            ref_times.append(ref_hit[1] if ref_hit else ref[-1][1])
            fast_times.append(fast_hit[1] if fast_hit else float("inf"))
        ref_time, fast_time = statistics.median(ref_times), statistics.median(fast_times)
        print(f"\nmedian time to held-out loss <= {args.target}: reference {ref_time:.1f} s, "
              f"fast {fast_time:.1f} s -> fast takes {fast_time / ref_time:.2f}x the "
              f"reference's time (target <= 0.35)")
        if args.stretch_steps:
            stretch = lantern_curve(SHAKESPEARE, Path(tmp) / "stretch", args.every,
                                    max_steps=args.stretch_steps)
            print(f"stretch: the fast recipe over {args.stretch_steps} steps: "
                  f"{describe(stretch, args.stretch)} (reference's own time {ref_time:.1f} s)")
        if args.ablations:
            nano_shape = dict(position="learned", norm="layernorm", mlp="gelu",
                              mlp_hidden_size=512)
            rows = {"fast recipe, nano's architecture": nano_shape,
                    "fast architecture, nano's schedule": dict(
                        learning_rate=LR, lr_schedule="cosine", decay_fraction=0.2,
                        warmup_steps=WARMUP, min_lr=MIN_LR, max_steps=args.steps)}
            for name, overrides in rows.items():
                curve = lantern_curve(SHAKESPEARE, Path(tmp) / "ablation", args.every,
                                      **overrides)
                print(f"{name}: {describe(curve, args.target)}", flush=True)


if __name__ == "__main__":
    main()
