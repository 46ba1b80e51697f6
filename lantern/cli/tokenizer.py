"""`lantern tokenizer train|encode|decode`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lantern.cli.data import ENCODING_HELP, check_output_file, tokenizer_from_args
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.tokenizers.training import TOKENIZER_TYPES, train_tokenizer

DEFAULT_VOCAB_SIZE, DEFAULT_MIN_FREQ, DEFAULT_MAX_TOKEN_LENGTH = 8000, 2, 16


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train a tokenizer, encode or decode text",
                              description="Train, and use, LANTERN tokenizers.")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a BPE, Unigram or character tokenizer")
    t.add_argument("--data", nargs="+", required=True, help="training text file(s)")
    t.add_argument("--type", choices=TOKENIZER_TYPES, default="bpe",
                   help="tokenizer model; char includes byte fallback [bpe]")
    t.add_argument("--vocab_size", type=int, default=None,
                   help=f"target vocabulary size (bpe, unigram) [{DEFAULT_VOCAB_SIZE}]")
    t.add_argument("--min_freq", "--min_frequency", dest="min_freq", type=int, default=None,
                   help=f"minimum pair frequency for a merge (bpe) [{DEFAULT_MIN_FREQ}]")
    t.add_argument("--max_token_length", type=int, default=None,
                   help="longest token in characters, stops whole-sentence tokens (bpe, unigram) "
                        f"[{DEFAULT_MAX_TOKEN_LENGTH}]")
    t.add_argument("--output", required=True, help="tokenizer .json file to write")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    t.set_defaults(run=run_train)

    for name, helptext in (("encode", "text -> token ids (JSON list)"),
                           ("decode", "token ids (JSON list or spaces) -> text")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--tokenizer", required=True,
                       help="tokenizer .json file, run directory, or `tiktoken`")
        e.add_argument("--encoding", default=None, help=ENCODING_HELP)
        e.add_argument("input", nargs="?", default=None, help="the text or ids [stdin]")
        e.set_defaults(run=run_encode if name == "encode" else run_decode)


def _settings(args: argparse.Namespace) -> tuple[int, int, int]:
    """vocab_size, min_freq, max_token_length; a flag the chosen --type has no use for is
    refused, never ignored."""
    applies = {"vocab_size": ("bpe", "unigram"), "min_freq": ("bpe",),
               "max_token_length": ("bpe", "unigram")}
    for flag, types in applies.items():
        if getattr(args, flag) is not None and args.type not in types:
            raise LanternError(f"--{flag} does not apply to --type {args.type} "
                               f"(only to {' and '.join(types)})")
    return (DEFAULT_VOCAB_SIZE if args.vocab_size is None else args.vocab_size,
            DEFAULT_MIN_FREQ if args.min_freq is None else args.min_freq,
            DEFAULT_MAX_TOKEN_LENGTH if args.max_token_length is None else args.max_token_length)


def run_train(args: argparse.Namespace) -> int:
    out = check_output_file(args.output, args.overwrite)
    if any(Path(data).resolve() == out.resolve() for data in args.data):
        raise LanternError(f"--output {out} is one of the --data files; choose another path")
    tokenizer = train_tokenizer(args.data, args.type, *_settings(args))
    atomic_write_text(out, tokenizer.to_json())
    print(f"Saved a {tokenizer.kind} tokenizer with {tokenizer.vocab_size:,} tokens to {out}")
    return 0


def _input(args: argparse.Namespace) -> str:
    """The argument, or standard input read as strict UTF-8."""
    if args.input is not None:
        return args.input
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LanternError(f"standard input is not UTF-8 text (byte {exc.start})") from None


def run_encode(args: argparse.Namespace) -> int:
    tokenizer = tokenizer_from_args(args)
    print(json.dumps(tokenizer.encode(_input(args))))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    tokenizer = tokenizer_from_args(args)
    text = _input(args).strip()
    try:
        ids = json.loads(text) if text.startswith("[") else [int(t) for t in text.split()]
    except ValueError:
        raise LanternError(
            "decode needs token ids: a JSON list or numbers separated by spaces") from None
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise LanternError("decode needs token ids: a JSON list or numbers separated by spaces")
    sys.stdout.write(tokenizer.decode(ids) + "\n")
    return 0
