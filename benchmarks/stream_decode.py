"""Streaming detokenization: LANTERN's `TextStream` (decodes only the tokens since the text was
last complete, with one run of context) vs decoding the whole output again for every token
(what a stream does when it keeps no state, and what `TextStream` did before), on the same
token ids of a BPE tokenizer, for outputs of several lengths. Both give the same text at every
step (checked here); the ratio is the time of the full re-decode over the incremental one.

    .venv/bin/python benchmarks/stream_decode.py [--lengths 250 1000 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from lantern.generation.streaming import TextStream
from lantern.tokenizers.bpe import HFTokenizerAdapter


def incremental(tokenizer: HFTokenizerAdapter, ids: list[int]) -> tuple[float, str]:
    stream = TextStream(tokenizer)
    started = time.perf_counter()
    text = "".join(stream.add(i) for i in ids) + stream.finish()
    return time.perf_counter() - started, text


def full_redecode(tokenizer: HFTokenizerAdapter, ids: list[int]) -> tuple[float, str]:
    started = time.perf_counter()
    text = ""
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n], skip_special_tokens=True)
    return time.perf_counter() - started, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(Path("docs").glob("*.md")))
    tokenizer = HFTokenizerAdapter.train_bpe([text], vocab_size=2000)
    every_id = tokenizer.encode(text)
    print(f"{'tokens':>7} {'full re-decode':>15} {'incremental':>12} {'ratio':>7}")
    for length in args.lengths:
        ids = every_id[:length]
        times: dict[str, list[float]] = {"full": [], "incremental": []}
        for _ in range(args.repeats):  # alternating repeats
            seconds, reference = full_redecode(tokenizer, ids)
            times["full"].append(seconds)
            seconds, streamed = incremental(tokenizer, ids)
            times["incremental"].append(seconds)
            assert streamed == reference, "the stream's text differs from the full decoding"
        full, inc = (statistics.median(times[k]) for k in ("full", "incremental"))
        print(f"{len(ids):>7} {full:>14.3f}s {inc:>11.3f}s {full / inc:>6.1f}x")


if __name__ == "__main__":
    main()
