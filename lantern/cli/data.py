"""`lantern data prepare|synth|tokenize|stats|dedupe`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO

from lantern.data.prepare import CORPORA, prepare
from lantern.data.quality import dedupe, file_stats
from lantern.data.synth import generate_lines, synth_text
from lantern.data.text import check_text_file
from lantern.data.token_store import (
    iter_documents,
    iter_file_tokens,
    iter_jsonl_rows,
    write_jsonl,
    write_shards,
)
from lantern.errors import LanternError
from lantern.fileio import atomic_write
from lantern.tokenizers import resolve_tokenizer

F = argparse.ArgumentDefaultsHelpFormatter


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="prepare, generate, tokenize and check datasets",
                              description="Datasets: download or read, generate, tokenize, check.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    pr = sub.add_parser("prepare", help="a real corpus as text files", formatter_class=F)
    pr.add_argument("name", choices=tuple(CORPORA), help="dataset")
    size = pr.add_mutually_exclusive_group(required=True)
    size.add_argument("--sample_size", type=int, help="documents in the training sample")
    size.add_argument("--full", action="store_true", help="the whole dataset")
    pr.add_argument("--valid_size", type=int, default=None,
                    help="validation documents in a sample [sample_size / 10]")
    pr.add_argument("--data_dir", default="data", help="where the text files go")
    pr.add_argument("--source", default=None,
                    help="read a local file or directory instead of downloading")
    pr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pr.set_defaults(run=run_prepare)

    sy = sub.add_parser("synth", help="synthetic English/Hungarian data (seed 002)",
                        formatter_class=F)
    sy.add_argument("--sentences", type=int, default=10000, help="English/Hungarian sentences")
    sy.add_argument("--stories", type=int, default=5000, help="short stories")
    sy.add_argument("--translations", type=int, default=3000, help="EN<->HU translation pairs")
    sy.add_argument("--instructions", type=int, default=2000, help="instructions and Q&A")
    sy.add_argument("--seed", type=int, default=0, help="same seed, same data")
    sy.add_argument("--output", required=True, help="text file to write")
    sy.set_defaults(run=run_synth)

    tk = sub.add_parser("tokenize", help="text -> JSONL token rows or binary shards",
                        formatter_class=F)
    tk.add_argument("input", help="text file")
    tk.add_argument("output", help="OUT.jsonl (seed 004 rows), OUT.bin (one shard), or a "
                                   "directory with --shard_tokens")
    tk.add_argument("--tokenizer", required=True,
                    help="tokenizer .json file, run directory, or `tiktoken`")
    tk.add_argument("--encoding", default="gpt2", help="tiktoken encoding name or file")
    tk.add_argument("--max_length", type=int, default=512, help="ids per JSONL row")
    tk.add_argument("--shard_tokens", type=int, default=None,
                    help="ids per binary shard (writes OUTPUT/shard-NNNNN.bin)")
    tk.add_argument("--no_eos", action="store_true",
                    help="do not close each line (document) with <eos>; shards then keep the "
                         "text's newlines")
    tk.set_defaults(run=run_tokenize)

    st = sub.add_parser("stats", help="lines, uniqueness, characters, tokens",
                        formatter_class=F)
    st.add_argument("file", help="text file")
    st.add_argument("--tokenizer", default=None, help="count tokens with this tokenizer")
    st.add_argument("--encoding", default="gpt2", help="tiktoken encoding name or file")
    st.add_argument("--top", type=int, default=10, help="most frequent tokens to list")
    st.set_defaults(run=run_stats)

    dd = sub.add_parser("dedupe", help="drop repeated lines (keeps the first)", formatter_class=F)
    dd.add_argument("input", help="text file")
    dd.add_argument("output", help="text file to write")
    dd.add_argument("--keep_empty", action="store_true", help="keep blank lines")
    dd.set_defaults(run=run_dedupe)


def run_prepare(args: argparse.Namespace) -> int:
    results = prepare(args.name, args.data_dir, args.sample_size, args.full, args.valid_size,
                      args.source, args.overwrite)
    for path, count in results:
        print(f"Wrote {path} ({count:,} documents)")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    counts = (args.sentences, args.stories, args.translations, args.instructions)
    if min(counts) < 0 or sum(counts) == 0:
        raise LanternError("the counts must not be negative and at least one must be positive")
    lines = generate_lines(*counts, seed=args.seed)

    def write(f: IO[bytes]) -> None:
        for line in synth_text(lines):
            f.write(line.encode("utf-8"))

    atomic_write(args.output, write)
    print(f"Wrote {sum(counts):,} examples to {args.output}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    tokenizer = resolve_tokenizer(args.tokenizer, args.encoding)
    source = check_text_file(args.input)
    out = Path(args.output)
    if out.resolve() == source.resolve():
        raise LanternError("the output would overwrite the input; choose another output path")
    quiet = not sys.stderr.isatty()
    if out.suffix == ".jsonl":
        rows = iter_jsonl_rows(iter_documents(source), tokenizer, args.max_length,
                               add_eos=not args.no_eos)
        count = write_jsonl(rows, out)
        print(f"Wrote {count:,} rows of at most {args.max_length} ids to {out}")
        return 0
    if out.suffix != ".bin" and args.shard_tokens is None:
        raise LanternError("the output must end in .jsonl or .bin, or give --shard_tokens N "
                           "and a directory")
    if args.no_eos:
        chunks = iter_file_tokens(source, tokenizer, quiet)
    else:
        import numpy as np

        from lantern.data.token_store import token_dtype

        dtype = token_dtype(tokenizer.vocab_size)
        rows = iter_jsonl_rows(iter_documents(source), tokenizer, 1 << 30)
        chunks = (np.asarray(row, dtype=dtype) for row in rows)
    paths = write_shards(chunks, out, tokenizer.vocab_size, args.shard_tokens)
    print(f"Wrote {len(paths)} shard file(s) to {out}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    tokenizer = resolve_tokenizer(args.tokenizer, args.encoding) if args.tokenizer else None
    stats = file_stats(args.file, tokenizer, args.top, quiet=not sys.stderr.isatty())
    print(stats.report())
    return 0


def run_dedupe(args: argparse.Namespace) -> int:
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise LanternError("dedupe writes a new file; choose an output other than the input")
    kept, dropped = dedupe(args.input, args.output, args.keep_empty, quiet=not sys.stderr.isatty())
    print(f"Kept {kept:,} lines, dropped {dropped:,} duplicates: {args.output}")
    return 0
