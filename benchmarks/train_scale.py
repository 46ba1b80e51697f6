"""Training throughput: 2 processes (torchrun, DDP over gloo) vs 1, and bfloat16 vs float32
autocast on CPU.

    .venv/bin/python benchmarks/train_scale.py                 # both parts, a few minutes
    .venv/bin/python benchmarks/train_scale.py --part parallel --repeats 3

Part `parallel`: the same run (the `nano` preset, 4 blocks x width 128, context 64, global batch
16) launched as `lantern train` in 1 process with 1 thread and as `torchrun --nproc_per_node 2`
with 1 thread each (each rank computes half of every batch), alternating; `--with_threads`
adds 1 process with 2 threads. Each side's figure is the median over repeats of its steady
tokens/s (the log's per-interval rates after the first).

Part `precision`: one process trains with `--dtype float32` and `--dtype bfloat16` (autocast,
float32 master weights) alternately, for the `small` preset (1 block x 4 steps, width 256,
context 256) and a GPT-style 6-layer, 384-wide model (6 heads, context 256, nanoGPT's
Shakespeare size), batch 8 (`--precision_batch`); medians of the per-step rates after the
first step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lantern.training.trainer import TrainConfig, train

PARALLEL = ["--config", "nano", "--batch_size", "16", "--corpus_chars", "200000", "--eval_interval",
            "100000", "--save_interval", "100000", "--eval_batches", "1", "--num_samples", "0",
            "--sample_length", "1", "--log_interval", "10", "--device", "cpu", "--overwrite"]
MODELS = {
    "small preset": dict(config="small"),
    "6 layers x 384": dict(config="gpt-512", hidden_size=384, num_heads=6, mlp_hidden_size=1536,
                           num_blocks=6),
}


def steady_rate(out: Path) -> float:
    """Median tokens/s over the logged intervals after the first (which includes warm-up)."""
    lines = (out / "training_log.jsonl").read_text().splitlines()
    rates = [r["tokens_per_second"] for r in map(json.loads, lines) if "tokens_per_second" in r]
    return statistics.median(rates[1:] or rates)


def parallel(steps: int, repeats: int, with_threads: bool, work: Path) -> None:
    sides = {
        "1 process, 1 thread": ([sys.executable, "-m", "lantern", "train"], "1"),
        "1 process, 2 threads": ([sys.executable, "-m", "lantern", "train"], "2"),
        "2 processes (DDP), 1 thread each": (
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "lantern", "train"], "1"),
    }
    if not with_threads:
        del sides["1 process, 2 threads"]
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, (launcher, threads) in sides.items():
            out = work / "parallel"
            env = {**os.environ, "OMP_NUM_THREADS": threads}
            cmd = [*launcher, *PARALLEL, "--max_steps", str(steps), "--output_dir", str(out)]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            rates[name].append(steady_rate(out))
    base = statistics.median(rates["1 process, 1 thread"])
    print(f"\nparallel: nano preset, global batch 16 x 64 tokens, {steps} steps, "
          f"median of {repeats} alternating runs")
    print(f"{'':36}{'tokens/s':>10}{'vs 1x1':>8}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:36}{rate:>10,.0f}{rate / base:>7.2f}x")


def precision(steps: int, repeats: int, batch: int, models: list[str], work: Path) -> None:
    print(f"\nprecision: batch {batch} x 256 tokens, {steps} steps, {torch.get_num_threads()} threads, "
          f"median of {repeats} alternating runs")
    print(f"{'':18}{'params':>10}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}")
    for name in models:
        shape = MODELS[name]
        rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        params = 0
        for _ in range(repeats):
            for dtype in rates:
                out = work / "precision"
                cfg = TrainConfig(**shape, seq_length=256, batch_size=batch, corpus_chars=200_000,
                                  max_steps=steps, log_interval=1, eval_interval=100_000,
                                  save_interval=100_000, eval_batches=1, num_samples=0,
                                  sample_length=1, device="cpu", dtype=dtype, output_dir=str(out),
                                  overwrite=True)
                train(cfg, quiet=True)
                rates[dtype].append(steady_rate(out))
                saved = torch.load(out / "final_model.pt", weights_only=True)["model_state_dict"]
                params = sum({t.data_ptr(): t.numel() for t in saved.values()}.values())
        fp32, bf16 = statistics.median(rates["float32"]), statistics.median(rates["bfloat16"])
        print(f"{name:18}{params / 1e6:>9.1f}M{fp32:>12,.0f}{bf16:>12,.0f}{bf16 / fp32:>10.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("parallel", "precision", "both"), default="both")
    parser.add_argument("--parallel_steps", type=int, default=150)
    parser.add_argument("--with_threads", action="store_true",
                        help="also time 1 process with 2 threads (very slow on a busy machine)")
    parser.add_argument("--precision_steps", type=int, default=6)
    parser.add_argument("--precision_batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the precision part (1: steady on a shared machine)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="models for the precision part")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("parallel", "both"):
            parallel(args.parallel_steps, args.repeats, args.with_threads, Path(tmp))
        if args.part in ("precision", "both"):
            torch.set_num_threads(args.threads)
            precision(args.precision_steps, args.repeats, args.precision_batch, args.models, Path(tmp))


if __name__ == "__main__":
    main()
