"""Tokenizing speed and peak memory: LANTERN's streaming pipeline vs one naive `encode` call.

Both sides tokenize the same generated text file (the built-in story corpus, plus the shared
Shakespeare and TinyStories files when present, repeated to --mb megabytes) with the same
8k byte-level BPE, each in a fresh child process limited to --threads cores, one after the
other, so machine noise hits both alike. Peak memory is each child's maximum resident size.

    python benchmarks/tokenize_speed.py --mb 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path("/work/shared/data")
CHILD = r"""
import json, resource, sys, time
from lantern.tokenizers import load_tokenizer
mode, text_path, tok_path, out_path = sys.argv[1:5]
tok = load_tokenizer(tok_path)
start = time.perf_counter()
if mode == "lantern":
    from lantern.data.token_store import encode_file
    count = encode_file(text_path, tok, out_path)
else:
    with open(text_path, encoding="utf-8") as f:
        count = len(tok.hf.encode(f.read(), add_special_tokens=False).ids)
seconds = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tokens": count, "seconds": seconds, "peak_mb": peak_kb / 1024}))
"""


def build_text(directory: Path, megabytes: int) -> Path:
    from lantern.data.stories import build_corpus

    parts = ["\n".join(build_corpus(4_000_000, seed=0))]
    for name in ("tinyshakespeare.txt", "tinystories_valid_sample.txt"):
        if (SHARED / name).is_file():
            parts.append((SHARED / name).read_text(encoding="utf-8"))
    block = "\n".join(parts) + "\n"
    path = directory / "text.txt"
    target = megabytes * 1_000_000
    with path.open("w", encoding="utf-8") as f:
        written = 0
        while written < target:
            f.write(block)
            written += len(block.encode("utf-8"))
    return path


def run_child(mode: str, text: Path, tok: Path, out: Path, threads: int, cap_gb: float
              ) -> dict | None:
    """One side in a fresh process on `threads` cores, its address space capped at `cap_gb`
    so a side that would exhaust a shared machine fails alone (None) instead."""
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", CHILD, mode, str(text), str(tok), str(out)]
    if hasattr(os, "sched_getaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:threads]
        cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
    cap = int(cap_gb * (1 << 30))
    result = subprocess.run(cmd, env=env, capture_output=True, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the text in megabytes")
    parser.add_argument("--threads", type=int, default=2, help="cores for both sides")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--cap_gb", type=float, default=8.0,
                        help="address-space limit for each side, in GiB")
    args = parser.parse_args()
    from lantern.tokenizers.training import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = build_text(tmp, args.mb)
        size_mb = text.stat().st_size / 1e6
        sample = tmp / "sample.txt"
        with text.open(encoding="utf-8") as f:
            sample.write_text(f.read(5_000_000), encoding="utf-8")
        tok_path = tmp / "bpe.json"
        tok_path.write_text(train_tokenizer([sample], "bpe", args.vocab_size).to_json())
        print(f"text {size_mb:.1f} MB | BPE vocab {args.vocab_size} | {args.threads} threads | "
              f"self peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        results = {}
        for mode in ("lantern", "naive"):
            start = time.perf_counter()
            results[mode] = r = run_child(mode, text, tok_path, tmp / "ids.bin", args.threads,
                                          args.cap_gb)
            if r is None:
                print(f"{mode:>8}: failed after {time.perf_counter() - start:.0f} s: it needs "
                      f"more than the {args.cap_gb:g} GiB memory cap")
                continue
            print(f"{mode:>8}: {r['tokens']:,} tokens in {r['seconds']:.1f} s = "
                  f"{size_mb / r['seconds']:.2f} MB/s | peak memory {r['peak_mb']:.0f} MB")
        lantern, naive = results["lantern"], results["naive"]
        if lantern and naive:
            assert lantern["tokens"] == naive["tokens"], "both sides must give the same tokens"
            print(f"ratio: LANTERN is {naive['seconds'] / lantern['seconds']:.2f}x the naive "
                  f"speed with {lantern['peak_mb'] / naive['peak_mb']:.2f}x its peak memory")


if __name__ == "__main__":
    main()
