"""How training cost grows with model width and context: LANTERN beside a nanoGPT-style reference.

One training step = forward + backward of the next-token loss, gradient clipping at 1.0 and an
AdamW step, in float32, on random windows of a random token stream (vocab 256). Both sides are
the same GPT-2 shape (the `nano` preset's layout: learned positions, LayerNorm, GELU MLP of 4x
width, biases, tied embeddings; `--layers` blocks, width / 64 heads) with full causal attention
through `scaled_dot_product_attention(is_causal=True)`:
- reference: `RefGPT` and `reference_steps` of benchmarks/train_speed.py, its loop unchanged
  (its shape lives in that module's constants, set here per point in a child process);
- LANTERN: `LANTERNModel` of `preset_config("nano", ...)`, LANTERN's `make_optimizer` and its
  `Precision.step` (clip, step, clear). One difference: LANTERN's GELU is the tanh form.

Sweeps: widths 128..768 at context 256, and contexts 256..4096 at width 256 (batch 4, 4 layers).
Each (point, side) runs in its own child process, the two sides in alternating order: `--warmup`
untimed steps, then the median of `--repeats` timed steps.

Peak memory: on CPU, the child's peak resident memory (`ru_maxrss`) minus its resident memory
just before the model is built, i.e. everything training adds (weights, gradients, AdamW
moments, activations, allocator slack) above the imported libraries and the token stream. On
CUDA, `max_memory_allocated` above what was allocated before the model was built. Where a CUDA
GPU is at hand the same runs are repeated on it, the reference too (`torch.set_default_device`
puts its device-less tensors there).

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/cost_growth.py   # ~15 min, 1 thread
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import train_speed
from torch import nn
from window_memory import resident_mb

from lantern.config import preset_config
from lantern.models.lantern_model import LANTERNModel
from lantern.training.optim import learning_rate_at, make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection

SIDES = ("reference", "lantern")
VOCAB, STREAM_TOKENS = 256, 200_000
DOCS = Path(__file__).resolve().parents[1] / "docs"


def lantern_steps(train_ids: torch.Tensor, vocab: int, steps: int) -> Iterator[nn.Module]:
    """LANTERN's model and optimizer in the reference's loop (same windows, schedule, clip)."""
    ref = train_speed
    torch.manual_seed(1337)
    model = LANTERNModel(preset_config("nano", vocab_size=vocab, hidden_size=ref.WIDTH,
                                       num_heads=ref.HEADS, num_blocks=ref.LAYERS,
                                       context_length=ref.CONTEXT)).train()
    opt = make_optimizer(model, OptimizerSection(learning_rate=ref.LR, weight_decay=0.1,
                                                 beta1=0.9, beta2=0.99))
    precision = Precision(PrecisionSection(device=str(train_ids.device), dtype="float32"))
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate_at(step, ref.LR, ref.MIN_LR, ref.WARMUP, steps)
        x, y = ref.random_windows(train_ids)
        _, loss = model(x, y)
        precision.backward(loss)
        precision.step(opt, model.parameters(), clip=1.0)
        yield model


def child(side: str, device: str, width: int, context: int, args: argparse.Namespace) -> None:
    """Train one side at one point; prints {"params", "step_s", "peak_mb"} as JSON."""
    torch.set_num_threads(args.threads)
    torch.set_default_device(device)
    train_speed.WIDTH, train_speed.HEADS = width, width // 64
    train_speed.LAYERS, train_speed.CONTEXT, train_speed.BATCH = args.layers, context, args.batch
    cuda = device == "cuda"
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else lambda: None
    torch.manual_seed(0)
    train_ids = torch.randint(0, VOCAB, (STREAM_TOKENS,))
    before = torch.cuda.memory_allocated() if cuda else resident_mb()
    steps = args.warmup + args.repeats
    if side == "reference":
        run = (model for _, model, _ in train_speed.reference_steps(train_ids, VOCAB, steps))
    else:
        run = lantern_steps(train_ids, VOCAB, steps)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        model = next(run)
        sync()
        times.append(time.perf_counter() - start)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": params, "step_s": times[args.warmup :], "peak_mb": peak}))


def measure(side: str, device: str, width: int, context: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", side, device, str(width), str(context),
               "--layers", str(args.layers), "--batch", str(args.batch), "--warmup",
               str(args.warmup), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    step = statistics.median(result["step_s"])
    return {"side": side, "device": device, "width": width, "context": context,
            "layers": args.layers, "heads": width // 64, "batch": args.batch,
            "params": result["params"], "step_s": result["step_s"],
            "tokens_per_s": args.batch * context / step, "peak_mb": result["peak_mb"]}


def print_table(rows: list[dict], points: list[tuple[str, int, int]], device: str) -> None:
    """Markdown table, LANTERN / reference ratios beside the figures."""
    print(f"\n{device}: | sweep | width | context | params (ref / LANTERN) | tokens/s ref | "
          "tokens/s LANTERN | speed LANTERN / ref | peak MB ref | peak MB LANTERN | "
          "memory LANTERN / ref |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sweep, width, context in points:
        got = {r["side"]: r for r in rows
               if (r["device"], r["width"], r["context"]) == (device, width, context)}
        ref, lan = got["reference"], got["lantern"]
        print(f"| {sweep} | {width} | {context} | {ref['params'] / 1e6:.2f}M / "
              f"{lan['params'] / 1e6:.2f}M | {ref['tokens_per_s']:,.0f} | "
              f"{lan['tokens_per_s']:,.0f} | **{lan['tokens_per_s'] / ref['tokens_per_s']:.2f}** | "
              f"{ref['peak_mb']:,.0f} | {lan['peak_mb']:,.0f} | "
              f"**{lan['peak_mb'] / ref['peak_mb']:.2f}** |")


def plot(rows: list[dict], args: argparse.Namespace, path: Path) -> None:
    """2 x 2: tokens/s and peak memory (rows) against width and context (columns), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    sweeps = (("width", args.widths, "context", args.context),
              ("context", args.contexts, "width", args.width))
    for col, (axis, values, fixed, fixed_value) in enumerate(sweeps):
        for device in sorted({r["device"] for r in rows}):
            for side, style in zip(SIDES, ("s--", "o-"), strict=True):
                line = sorted((r for r in rows if r["device"] == device and r["side"] == side
                               and r[fixed] == fixed_value and r[axis] in values),
                              key=lambda r: r[axis])
                label = f"{'LANTERN' if side == 'lantern' else 'reference'} ({device})"
                for row, key in ((0, "tokens_per_s"), (1, "peak_mb")):
                    axes[row][col].plot([r[axis] for r in line], [r[key] for r in line], style,
                                        label=label)
        for row, what in ((0, "training tokens/s"), (1, "peak memory of training (MB)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(values, [str(v) for v in values])
            ax.set_xlabel(f"{axis} ({fixed} {fixed_value})")
            ax.set_ylabel(what)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(f"Training cost, {args.layers} layers, batch {args.batch}, float32, "
                 f"{args.threads} thread(s) on CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "DEVICE", "WIDTH", "CONTEXT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256, 384, 512, 768])
    parser.add_argument("--context", type=int, default=256, help="context of the width sweep")
    parser.add_argument("--contexts", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--width", type=int, default=256, help="width of the context sweep")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps; the median counts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DOCS / "cost_growth.jsonl")
    parser.add_argument("--plot", type=Path, default=DOCS / "cost_growth.png")
    args = parser.parse_args()
    if args.child:
        side, device, width, context = args.child
        child(side, device, int(width), int(context), args)
        return

    points = [("width", w, args.context) for w in args.widths]
    points += [("context", args.width, c) for c in args.contexts
               if ("width", args.width, c) not in points]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{len(points)} points x {len(SIDES)} sides on {', '.join(devices)}; {args.layers} "
          f"layers, batch {args.batch}, {args.warmup} warm + {args.repeats} timed steps each, "
          f"{args.threads} thread(s)", flush=True)
    rows = []
    with args.out.open("w") as out:
        for device in devices:
            for i, (_, width, context) in enumerate(points):
                for side in SIDES[::1 if i % 2 == 0 else -1]:
                    row = measure(side, device, width, context, args)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{device} {side:9} width {width:4} context {context:5}: "
                          f"{row['params']:>11,} params, {row['tokens_per_s']:8,.0f} tokens/s, "
                          f"peak {row['peak_mb']:7,.0f} MB", flush=True)
                pair = rows[-2:]
                gap = abs(pair[0]["params"] - pair[1]["params"]) / pair[0]["params"]
                if gap > 0.001:
                    raise SystemExit(f"parameter counts differ by {gap:.2%} at width {width}, "
                                     f"context {context}: not the same model")
    print("\nParameter counts agree within 0.1% at every point.")
    for device in devices:
        print_table(rows, points, device)
    plot(rows, args, args.plot)
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
