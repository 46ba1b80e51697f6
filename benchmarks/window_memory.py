"""Acceptance (d): sliding-window attention (w = 256) against full attention, and the KV cache.

Part 1, training: one forward + backward of a 1-block model (width 128, 4 heads, RoPE) on one
sequence of L = 4096 and 8192 tokens, each configuration in its own subprocess so its peak
resident memory (ru_maxrss, above the memory held before the pass) is its own:
- full:        full causal attention (PyTorch's fused flash SDPA kernel: O(L) memory, O(L^2) time);
- full-math:   full causal attention with the L x L scores materialized (SDPA's math kernel);
- dense-mask:  the window as a dense L x L boolean mask (what an O(L^2) "sliding window" does);
- window:      LANTERN's blocked sliding window, O(L * w).
Time is the best of 3 passes.

Part 2, generation: 10,000 tokens decoded one at a time by a windowed model with its ring-buffer
KV cache; cache bytes and process memory every 2,000 tokens, against what a full cache needs.

    .venv/bin/python benchmarks/window_memory.py          # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lantern.config import LANTERNConfig
from lantern.models.lantern_model import LANTERNModel

WINDOW = 256


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def model_for(length: int, window: int | None) -> LANTERNModel:
    torch.manual_seed(0)
    return LANTERNModel(LANTERNConfig(vocab_size=256, context_length=length, hidden_size=128,
                                      num_heads=4, num_blocks=1, steps_per_block=1,
                                      position="rope", attention_window=window))


def child(mode: str, length: int) -> None:
    """One forward+backward configuration; prints {"peak_mb", "seconds"} as JSON."""
    torch.set_num_threads(2)
    model = model_for(length, None if mode.startswith("full") else WINDOW)
    x = torch.randint(0, 256, (1, length))
    padding = torch.ones(1, length, dtype=torch.bool) if mode == "dense-mask" else None
    before = resident_mb()
    times = []
    kernel = [SDPBackend.MATH] if mode == "full-math" else [SDPBackend.FLASH_ATTENTION,
                                                            SDPBackend.MATH]
    for _ in range(3):
        start = time.perf_counter()
        with sdpa_kernel(kernel):
            _, loss = model(x, x, key_padding=padding)
            loss.backward()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak - before, "seconds": min(times)}))


def training_table(lengths: list[int]) -> None:
    modes = ("full", "full-math", "dense-mask", "window")
    results = {}
    for length in lengths:
        for mode in modes:
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(length)],
                                 capture_output=True, text=True, check=True)
            results[mode, length] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nforward+backward, one sequence, window {WINDOW}")
    print("| L | mode | peak memory (MB) | time (s) | memory vs full | time vs full |")
    print("|---|---|---|---|---|---|")
    for length in lengths:
        full = results["full", length]
        for mode in modes:
            r = results[mode, length]
            print(f"| {length} | {mode} | {r['peak_mb']:.0f} | {r['seconds']:.2f} | "
                  f"{r['peak_mb'] / full['peak_mb']:.2f} | {r['seconds'] / full['seconds']:.2f} |")


@torch.no_grad()
def generation_table(tokens: int) -> None:
    torch.set_num_threads(2)
    model = model_for(tokens + 16, WINDOW).eval()
    cache = model.new_cache(1, tokens + 16)
    token = torch.zeros(1, 1, dtype=torch.long)
    per_token = 2 * model.config.num_blocks * model.config.hidden_size * 4  # K + V, float32
    print(f"\nKV cache over {tokens:,} generated tokens (window {WINDOW}, ring buffer)")
    print("| tokens | ring cache (KB) | full cache would need (KB) | process RSS (MB) | ms/token |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for i in range(1, tokens + 1):
        logits, _ = model(token, cache=cache)
        token = logits[:, -1].argmax(-1, keepdim=True)
        if i % 2000 == 0:
            elapsed = (time.perf_counter() - start) / 2000 * 1000
            print(f"| {i:,} | {cache.nbytes() / 1024:.0f} | {i * per_token / 1024:.0f} | "
                  f"{resident_mb():.0f} | {elapsed:.2f} |", flush=True)
            start = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--tokens", type=int, default=10_000)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    training_table(args.lengths)
    generation_table(args.tokens)


if __name__ == "__main__":
    main()
