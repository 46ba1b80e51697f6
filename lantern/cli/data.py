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

DEFAULT_MAX_LENGTH, DEFAULT_TOP, DEFAULT_ENCODING = 512, 10, "gpt2"
ENCODING_HELP = f"tiktoken encoding name or .tiktoken file, with --tokenizer tiktoken [{DEFAULT_ENCODING}]"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="prepare, generate, tokenize and check datasets",
                              description="Datasets: download or read, generate, tokenize, "
                                          "check. Defaults are shown in brackets.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    pr = sub.add_parser("prepare", help="a real corpus as text files")
    pr.add_argument("name", choices=tuple(CORPORA), help="dataset")
    size = pr.add_mutually_exclusive_group(required=True)
    size.add_argument("--sample_size", type=int, help="documents in the training sample")
    size.add_argument("--full", action="store_true", help="the whole dataset")
    pr.add_argument("--valid_size", type=int, default=None,
                    help="validation documents in a sample [sample_size / 10]")
    pr.add_argument("--data_dir", default="data", help="where the text files go [data]")
    pr.add_argument("--source", default=None,
                    help="read a local file or directory instead of downloading [download]")
    pr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pr.set_defaults(run=run_prepare)

    sy = sub.add_parser("synth", help="synthetic English/Hungarian sentences, stories, "
                        "translations and instructions")
    sy.add_argument("--sentences", type=int, default=10000, help="English/Hungarian sentences [10000]")
    sy.add_argument("--stories", type=int, default=5000, help="short stories [5000]")
    sy.add_argument("--translations", type=int, default=3000, help="EN<->HU translation pairs [3000]")
    sy.add_argument("--instructions", type=int, default=2000, help="instructions and Q&A [2000]")
    sy.add_argument("--seed", type=int, default=0, help="same seed, same data [0]")
    sy.add_argument("--output", required=True, help="text file to write")
    sy.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    sy.set_defaults(run=run_synth)

    tk = sub.add_parser("tokenize", help="text -> JSONL token rows or binary shards")
    tk.add_argument("input", help="text file")
    tk.add_argument("output", help="OUT.jsonl (a row of token ids per line), OUT.bin (one "
                                   "shard), or a directory with --shard_tokens")
    tk.add_argument("--tokenizer", required=True,
                    help="tokenizer .json file, run directory, or `tiktoken`")
    tk.add_argument("--encoding", default=None, help=ENCODING_HELP)
    tk.add_argument("--max_length", type=int, default=None,
                    help=f"ids per JSONL row [{DEFAULT_MAX_LENGTH}]")
    tk.add_argument("--shard_tokens", type=int, default=None,
                    help="ids per binary shard (writes OUTPUT/shard-NNNNN.bin) [one .bin file]")
    tk.add_argument("--no_eos", action="store_true",
                    help="do not close each line (document) with <eos>; shards then keep the "
                         "text's newlines")
    tk.add_argument("--overwrite", action="store_true",
                    help="replace an existing output (file, or the shards in a directory)")
    tk.set_defaults(run=run_tokenize)

    st = sub.add_parser("stats", help="lines, uniqueness, characters, tokens")
    st.add_argument("file", help="text file")
    st.add_argument("--tokenizer", default=None, help="count tokens with this tokenizer")
    st.add_argument("--encoding", default=None, help=ENCODING_HELP)
    st.add_argument("--top", type=int, default=None,
                    help=f"most frequent tokens to list, with --tokenizer [{DEFAULT_TOP}]")
    st.set_defaults(run=run_stats)

    dd = sub.add_parser("dedupe", help="drop repeated lines (keeps the first)")
    dd.add_argument("input", help="text file")
    dd.add_argument("output", help="text file to write")
    dd.add_argument("--keep_empty", action="store_true", help="keep blank lines")
    dd.add_argument("--overwrite", action="store_true", help="replace an existing output")
    dd.set_defaults(run=run_dedupe)


def check_output_file(path: str | Path, overwrite: bool, directory: bool = False) -> Path:
    """Refuse, before any work, an output that would replace what a user has (unless
    `overwrite`), that is of the wrong kind (a directory for a file, or the reverse), or that
    cannot be made because part of its path is a file."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LanternError(f"cannot write {path}: {parent} is a file, not a directory")
            break
    if path.is_dir() and not directory:
        raise LanternError(f"{path} is a directory; give a file path")
    if path.exists() and directory and not path.is_dir():
        raise LanternError(f"{path} is a file; --shard_tokens writes a directory")
    if path.exists() and not overwrite and not (directory and not any(path.iterdir())):
        raise LanternError(f"{path} already exists; use --overwrite to replace it")
    return path


def tokenizer_from_args(args: argparse.Namespace):
    """--tokenizer, with --encoding only where it means something (tiktoken)."""
    if args.encoding is not None and args.tokenizer != "tiktoken":
        raise LanternError("--encoding picks a tiktoken encoding; it needs --tokenizer tiktoken")
    return resolve_tokenizer(args.tokenizer, args.encoding or DEFAULT_ENCODING)


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
    check_output_file(args.output, args.overwrite)
    lines = generate_lines(*counts, seed=args.seed)

    def write(f: IO[bytes]) -> None:
        for line in synth_text(lines):
            f.write(line.encode("utf-8"))

    atomic_write(args.output, write)
    print(f"Wrote {sum(counts):,} examples to {args.output}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    tokenizer = tokenizer_from_args(args)
    source = check_text_file(args.input)
    out = Path(args.output)
    if out.resolve() == source.resolve():
        raise LanternError("the output would overwrite the input; choose another output path")
    sharded = args.shard_tokens is not None
    if out.suffix not in (".jsonl", ".bin") and not sharded:
        raise LanternError("the output must end in .jsonl or .bin, or give --shard_tokens N "
                           "and a directory")
    if out.suffix == ".jsonl" and sharded:
        raise LanternError("--shard_tokens writes binary shards; a .jsonl output takes "
                           "--max_length rows instead")
    if out.suffix != ".jsonl" and args.max_length is not None:
        raise LanternError("--max_length sets the rows of a .jsonl output; binary shards hold "
                           "one stream of ids")
    check_output_file(out, args.overwrite, directory=sharded)
    old_shards = set(out.glob("shard-*.bin")) if sharded else set()
    quiet = not sys.stderr.isatty()
    if out.suffix == ".jsonl":
        max_length = DEFAULT_MAX_LENGTH if args.max_length is None else args.max_length
        rows = iter_jsonl_rows(iter_documents(source), tokenizer, max_length,
                               add_eos=not args.no_eos)
        count = write_jsonl(rows, out)
        print(f"Wrote {count:,} rows of at most {max_length} ids to {out}")
        return 0
    if args.no_eos:
        chunks = iter_file_tokens(source, tokenizer, quiet)
    else:
        import numpy as np

        from lantern.data.token_store import token_dtype

        dtype = token_dtype(tokenizer.vocab_size)
        rows = iter_jsonl_rows(iter_documents(source), tokenizer, 1 << 30)
        chunks = (np.asarray(row, dtype=dtype) for row in rows)
    paths = write_shards(chunks, out, tokenizer.vocab_size, args.shard_tokens)
    for stale in old_shards - set(paths):  # an older, longer set of shards would mix in
        stale.unlink()
    print(f"Wrote {len(paths)} shard file(s) to {out}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    if args.tokenizer is None and (args.top is not None or args.encoding is not None):
        raise LanternError("--top and --encoding count tokens; give --tokenizer too")
    if args.top is not None and args.top < 1:
        raise LanternError(f"--top must be positive (got {args.top})")
    tokenizer = tokenizer_from_args(args) if args.tokenizer else None
    top = DEFAULT_TOP if args.top is None else args.top
    stats = file_stats(args.file, tokenizer, top, quiet=not sys.stderr.isatty())
    print(stats.report())
    return 0


def run_dedupe(args: argparse.Namespace) -> int:
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise LanternError("dedupe writes a new file; choose an output other than the input")
    check_output_file(args.output, args.overwrite)
    kept, dropped = dedupe(args.input, args.output, args.keep_empty, quiet=not sys.stderr.isatty())
    print(f"Kept {kept:,} lines, dropped {dropped:,} duplicates: {args.output}")
    return 0
