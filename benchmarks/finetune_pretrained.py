"""Fine-tuning a real pretrained model on CPU: full fine-tuning against LoRA, in float32 and
bfloat16, side by side on the same data, steps and batches.

    .venv/bin/python benchmarks/finetune_pretrained.py [--model smollm2-135m-instruct] \
        [--steps 6] [--seq_length 64] [--batch_size 2] [--lora_rank 8] [--threads 2]

The TinyStories sample is split by characters, at a line break: the first 90% is the training
text, the last 10% is held out. Each configuration is one `lantern train --init_from` run in a
child process (so its memory is its own); it reports the median tokens/s of its logged steps, the
peak resident memory while training (sampled every 50 ms, the imported model included, its import
excluded) and its loss curve. Held-out loss is scored the same way for the model before training
and for every run's final (merged) model: the mean next-token loss of fixed windows spread evenly
over the held-out tokens, in float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DATA = Path("/work/shared/data/tinystories_valid_sample.txt")
CONFIGS = {"full fp32": ("float32", False), "full bf16": ("bfloat16", False),
           "LoRA fp32": ("float32", True), "LoRA bf16": ("bfloat16", True)}


def split_data(source: Path, directory: Path) -> tuple[Path, Path]:
    text = source.read_text(encoding="utf-8")
    cut = text.index("\n", int(len(text) * 0.9)) + 1
    train, held_out = directory / "train.txt", directory / "heldout.txt"
    train.write_text(text[:cut], encoding="utf-8")
    held_out.write_text(text[cut:], encoding="utf-8")
    return train, held_out


def held_out_loss(model, tokenizer, held_out: Path, window: int, count: int) -> float:
    import numpy as np
    import torch

    tokens = np.asarray(tokenizer.encode(held_out.read_text(encoding="utf-8")), dtype=np.int64)
    starts = np.linspace(0, len(tokens) - window - 1, count).astype(np.int64)
    rows = torch.from_numpy(tokens[starts[:, None] + np.arange(window + 1)])
    model.float().eval()
    with torch.no_grad():
        losses = [model(rows[i:i + 4, :-1], rows[i:i + 4, 1:])[1].item() * len(rows[i:i + 4])
                  for i in range(0, count, 4)]
    return sum(losses) / count


class PeakMemory:
    """The largest resident set size of this process while the block runs."""

    def __enter__(self) -> PeakMemory:
        import psutil

        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def child(args: argparse.Namespace) -> None:
    """One configuration (or, for `base`, the model before training): prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    held_out = Path(args.held_out)
    if args.one == "base":
        from lantern.pretrained import load_pretrained

        model, tokenizer = load_pretrained(args.model)
        print(json.dumps({"held_out": held_out_loss(model, tokenizer, held_out, args.seq_length,
                                                    args.windows)}))
        return
    from lantern.checkpoint import load_model
    from lantern.training.trainer import TrainConfig, Trainer

    dtype, lora = CONFIGS[args.one]
    out = Path(args.work) / args.one.replace(" ", "_")
    cfg = TrainConfig(init_from=args.model, data_path=args.train, val_data_path=str(held_out),
                      seq_length=args.seq_length, batch_size=args.batch_size, max_steps=args.steps,
                      learning_rate=args.lora_lr if lora else args.lr, warmup_steps=2,
                      lora_rank=args.lora_rank if lora else 0, dtype=dtype, device="cpu",
                      log_interval=1, eval_interval=10**6, eval_batches=1, sample_length=0,
                      num_samples=0, save_interval=10**6, output_dir=str(out), overwrite=True)
    trainer = Trainer(cfg, quiet=True)
    with PeakMemory() as memory:
        trainer.fit()
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    steps = [row for row in log if "train_loss" in row]
    model, tokenizer, _ = load_model(out)
    print(json.dumps({
        "tokens_per_second": statistics.median(row["tokens_per_second"] for row in steps[1:]),
        "peak_rss_gb": memory.peak / 1e9, "losses": [row["train_loss"] for row in steps],
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "held_out": held_out_loss(model, tokenizer, held_out, args.seq_length, args.windows)}))


def run_child(name: str, args: argparse.Namespace, train: Path, held_out: Path, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--train", str(train), "--held_out", str(held_out),
           "--work", str(work)] + [f"--{k}={v}" for k, v in vars(args).items()
                                   if k not in ("one", "train", "held_out", "work") and v is not None]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {name}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seq_length", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--lora_rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5, help="full fine-tuning learning rate")
    parser.add_argument("--lora_lr", type=float, default=1e-3, help="LoRA learning rate")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows scored")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each run")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="which runs, comma-separated")
    for hidden in ("--one", "--train", "--held_out", "--work"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(args)
        return
    from lantern.pretrained import KNOWN_MODELS
    from lantern.pretrained.pull import cached_path

    if args.model in KNOWN_MODELS and not cached_path(KNOWN_MODELS[args.model]).is_file():
        print(f"skipped: {args.model} is not in the cache; `lantern pull {args.model}` first")
        return
    if not DATA.is_file():
        print(f"skipped: {DATA} is not on this machine")
        return
    names = [name.strip() for name in args.configs.split(",")]
    print(f"{args.model}: {args.steps} steps x {args.batch_size} x {args.seq_length} tokens, "
          f"{args.threads} threads, LoRA rank {args.lora_rank}; held-out: last 10% of {DATA.name}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train, held_out = split_data(DATA, work)
        results = {"before": run_child("base", args, train, held_out, work)}
        for name in names:
            results[name] = run_child(name, args, train, held_out, work)
    first = names[0]
    print(f"\nheld-out loss before fine-tuning: {results['before']['held_out']:.4f}")
    print(f"{'run':<10} {'trainable':>12} {'tokens/s':>9} {'ratio':>6} {'peak RSS GB':>12} "
          f"{'ratio':>6} {'held-out loss':>14}  loss every 2 steps")
    for name in names:
        r = results[name]
        curve = " ".join(f"{loss:.2f}" for loss in r["losses"][::2])
        print(f"{name:<10} {r['trainable']:>12,} {r['tokens_per_second']:>9.1f} "
              f"{r['tokens_per_second'] / results[first]['tokens_per_second']:>5.2f}x "
              f"{r['peak_rss_gb']:>12.2f} {r['peak_rss_gb'] / results[first]['peak_rss_gb']:>5.2f}x "
              f"{r['held_out']:>14.4f}  {curve}")
    print(f"(ratios against {first}; tokens/s is the median over logged steps after the first)")


if __name__ == "__main__":
    main()
