"""Sliding-window attention (w = 256) against full causal attention, and the ring KV cache.

Both sides are the same 1-block model (width 128, 4 heads of 32, RoPE) with a 32-wide MLP, so
attention dominates, on one thread; each measurement runs in its own subprocess, so its peak
resident memory (ru_maxrss, above the memory held after a short warm-up pass) is its own:
- full:   full causal attention through `scaled_dot_product_attention(is_causal=True)`, PyTorch's
          fused flash kernel (O(L) memory, O(L^2) time, fully masked key tiles skipped);
- window: LANTERN's blocked sliding window (`blocked_window_attention`, O(L * w)).
Figures are medians of `--repeats` runs, the two sides alternating.

Part 1, train: one forward + backward of the language-model loss on one sequence of L tokens.
Part 2, prefill: the decoding core encodes one prompt of L tokens into its KV cache (inference).
Part 3, attention: the attention op alone, forward + backward, on random q, k, v of the model's
shape (4 heads of 32): `scaled_dot_product_attention(is_causal=True)` against
`blocked_window_attention`, without the rest of the model that both sides share.
Part 4, generate: 10,000 tokens decoded one at a time by the windowed model with its ring-buffer
KV cache; cache bytes and process memory every 2,000 tokens, against what a full cache needs.

    nice -n 5 .venv/bin/python benchmarks/window_memory.py   # ~25 min on a busy 2-core machine
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from lantern.config import LANTERNConfig
from lantern.generation.core import Decoder
from lantern.models.attention import blocked_window_attention
from lantern.models.lantern_model import LANTERNModel

WINDOW = 256
MODES = ("full", "window")
WARMUP_LENGTH = 512


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def model_for(length: int, window: int | None) -> LANTERNModel:
    """1 block, width 128, 4 heads of 32, RoPE, a 32-wide MLP: attention dominates the cost."""
    torch.manual_seed(0)
    return LANTERNModel(LANTERNConfig(vocab_size=256, context_length=length, hidden_size=128,
                                      num_heads=4, num_blocks=1, steps_per_block=1,
                                      mlp_hidden_size=32, position="rope",
                                      attention_window=window))


def attention_pass(mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The attention op alone, forward + backward."""
    if mode == "full":
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        out = blocked_window_attention(q, k, v, WINDOW)
    out.backward(torch.ones_like(out))


def run_pass(model: LANTERNModel, task: str, x: torch.Tensor) -> None:
    if task == "train":
        _, loss = model(x, x)
        loss.backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            Decoder(model).add(x.tolist())


def child(task: str, mode: str, length: int) -> None:
    """One pass of one configuration, its inputs made beforehand; prints {"peak_mb", "seconds"}
    as JSON."""
    torch.set_num_threads(1)
    if task == "attention":
        def make(n: int) -> list[torch.Tensor]:  # the model's shape: 4 heads of 32
            return [torch.randn(1, 4, n, 32, requires_grad=True) for _ in range(3)]

        def run(inputs: list[torch.Tensor]) -> None:
            attention_pass(mode, *inputs)
    else:
        model = model_for(length, None if mode == "full" else WINDOW)
        model.train(task == "train")

        def make(n: int) -> torch.Tensor:
            return torch.randint(0, 256, (1, n))

        def run(inputs: torch.Tensor) -> None:
            run_pass(model, task, inputs)
    run(make(min(length, WARMUP_LENGTH)))
    inputs = make(length)
    before = resident_mb()
    start = time.perf_counter()
    run(inputs)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak - before, "seconds": seconds}))


def measure(task: str, mode: str, length: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", task, mode, str(length)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(task: str, lengths: list[int], repeats: int, long_repeats: int) -> None:
    what = {"train": "forward + backward of the loss",
            "prefill": "prefill into the KV cache (inference, no gradient)",
            "attention": "the attention op alone, forward + backward"}[task]
    print(f"\n{what}, one sequence, window {WINDOW}, one thread; medians of alternating repeats")
    print("| L | repeats | full: time | window: time | time, window / full | "
          "full: extra peak | window: extra peak | memory, window / full |")
    print("|---|---|---|---|---|---|---|---|")
    for length in lengths:
        runs = repeats if length <= 16384 else long_repeats
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(runs):
            for mode in MODES:
                results[mode].append(measure(task, mode, length))
        seconds = {m: statistics.median(r["seconds"] for r in results[m]) for m in MODES}
        peak = {m: statistics.median(r["peak_mb"] for r in results[m]) for m in MODES}
        spread = {m: max(r["seconds"] for r in results[m]) / min(r["seconds"] for r in results[m])
                  for m in MODES}
        print(f"| {length} | {runs} | {seconds['full']:.3f} s (max/min {spread['full']:.2f}) | "
              f"{seconds['window']:.3f} s (max/min {spread['window']:.2f}) | "
              f"**{seconds['window'] / seconds['full']:.3f}** | {peak['full']:.1f} MB | "
              f"{peak['window']:.1f} MB | **{peak['window'] / peak['full']:.2f}** |", flush=True)


@torch.no_grad()
def generation_table(tokens: int) -> None:
    torch.set_num_threads(1)
    model = model_for(256, WINDOW).eval()  # RoPE: positions past the context are computed
    decoder = Decoder(model)
    decoder.add([[0]])
    per_token = 2 * model.config.num_blocks * model.config.hidden_size * 4  # K + V, float32
    print(f"\nKV cache over {tokens:,} generated tokens (window {WINDOW}, ring buffer)")
    print("| tokens | ring cache (KB) | full cache would need (KB) | process RSS (MB) | ms/token |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for i in range(1, tokens + 1):
        decoder.step(decoder.logits.argmax(-1))
        if i % 2000 == 0:
            elapsed = (time.perf_counter() - start) / 2000 * 1000
            print(f"| {i:,} | {decoder.cache.nbytes() / 1024:.0f} | {i * per_token / 1024:.0f} | "
                  f"{resident_mb():.0f} | {elapsed:.2f} |", flush=True)
            start = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "MODE", "LENGTH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", default=["train", "prefill", "attention", "generate"],
                        choices=["train", "prefill", "attention", "generate"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per length")
    parser.add_argument("--long_repeats", type=int, default=3,
                        help="repeats above L = 16384, where full attention is slowest")
    parser.add_argument("--tokens", type=int, default=10_000)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    for task in ("train", "prefill", "attention"):
        if task in args.parts:
            table(task, args.lengths, args.repeats, args.long_repeats)
    if "generate" in args.parts:
        generation_table(args.tokens)


if __name__ == "__main__":
    main()
