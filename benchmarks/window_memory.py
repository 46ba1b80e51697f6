"""Acceptance (d): sliding-window attention (w = 256) against full attention, and the KV cache.

Part 1, training: one forward + backward of a 1-block model (width 128, 4 heads, RoPE) on one
sequence of L = 4096 and 8192 tokens, each configuration in its own subprocess so its peak
resident memory (ru_maxrss, above the memory held before the pass) is its own:
- full:        full causal attention (PyTorch's fused flash SDPA kernel: O(L) memory, O(L^2) time);
- full-math:   full causal attention with the L x L scores materialized (SDPA's math kernel);
- dense-mask:  the window as a dense L x L boolean mask (what an O(L^2) "sliding window" does);
- window:      LANTERN's blocked sliding window, O(L * w).
Time is the best of 3 passes.

Part 2, prefill: the decoding core encodes one prompt of L tokens (inference, no gradient) into
its KV cache, same model and modes as part 1, so a windowed model's prefill is measured against
full attention and against the dense-mask window.

Part 3, generation: 10,000 tokens decoded one at a time by a windowed model with its ring-buffer
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

import lantern.models.attention as attention
from lantern.config import LANTERNConfig
from lantern.generation.core import Decoder
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


def dense_window_attention(q, k, v, window, sink=0, dropout_p=0.0):
    """The same window as one dense L x L boolean mask: equal work for the O(L^2) baseline."""
    index = torch.arange(q.shape[2], device=q.device)
    mask = attention.window_allows(index, index, window, sink)
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=k.shape[1] != q.shape[1])


def child(task: str, mode: str, length: int) -> None:
    """One configuration; prints {"peak_mb", "seconds"} as JSON. task: train or prefill."""
    torch.set_num_threads(2)
    model = model_for(length, None if mode.startswith("full") else WINDOW)
    if mode == "dense-mask":
        attention.blocked_window_attention = dense_window_attention
    x = torch.randint(0, 256, (1, length))
    before = resident_mb()
    times = []
    kernel = [SDPBackend.MATH] if mode == "full-math" else [SDPBackend.FLASH_ATTENTION,
                                                            SDPBackend.MATH]
    for _ in range(3):
        start = time.perf_counter()
        with sdpa_kernel(kernel):
            if task == "train":
                _, loss = model(x, x)
                loss.backward()
            else:
                model.eval()
                Decoder(model).add(x.tolist())
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak - before, "seconds": min(times)}))


def table(task: str, lengths: list[int]) -> None:
    modes = ("full", "full-math", "dense-mask", "window")
    results = {}
    for length in lengths:
        for mode in modes:
            out = subprocess.run([sys.executable, __file__, "--child", task, mode, str(length)],
                                 capture_output=True, text=True, check=True)
            results[mode, length] = json.loads(out.stdout.strip().splitlines()[-1])
    what = "forward+backward" if task == "train" else "prefill into the KV cache (inference)"
    print(f"\n{what}, one sequence, window {WINDOW}")
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "MODE", "LENGTH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", default=["train", "prefill", "generate"],
                        choices=["train", "prefill", "generate"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--tokens", type=int, default=10_000)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    for task in ("train", "prefill"):
        if task in args.parts:
            table(task, args.lengths)
    if "generate" in args.parts:
        generation_table(args.tokens)


if __name__ == "__main__":
    main()
