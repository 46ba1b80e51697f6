"""`lantern tokenizer train|encode|decode`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.tokenizers import resolve_tokenizer
from lantern.tokenizers.training import TOKENIZER_TYPES, train_tokenizer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train a tokenizer, encode or decode text",
                              description="Train, and use, LANTERN tokenizers.")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a BPE, Unigram or character tokenizer",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", nargs="+", required=True, help="training text file(s)")
    t.add_argument("--type", choices=TOKENIZER_TYPES, default="bpe", help="tokenizer model")
    t.add_argument("--vocab_size", type=int, default=8000, help="target vocabulary size")
    t.add_argument("--min_freq", "--min_frequency", dest="min_freq", type=int, default=2,
                   help="minimum pair frequency for a BPE merge")
    t.add_argument("--max_token_length", type=int, default=16,
                   help="longest token in characters (stops whole-sentence tokens)")
    t.add_argument("--output", required=True, help="tokenizer .json file to write")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    t.set_defaults(run=run_train)

    for name, helptext in (("encode", "text -> token ids (JSON list)"),
                           ("decode", "token ids (JSON list or spaces) -> text")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--tokenizer", required=True,
                       help="tokenizer .json file, run directory, or `tiktoken`")
        e.add_argument("--encoding", default="gpt2", help="tiktoken encoding name or file")
        e.add_argument("input", nargs="?", default=None, help="the text or ids [stdin]")
        e.set_defaults(run=run_encode if name == "encode" else run_decode)


def run_train(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise LanternError(f"{out} already exists; use --overwrite to replace it")
    tokenizer = train_tokenizer(args.data, args.type, args.vocab_size, args.min_freq,
                                args.max_token_length)
    atomic_write_text(out, tokenizer.to_json())
    print(f"Saved a {tokenizer.kind} tokenizer with {tokenizer.vocab_size:,} tokens to {out}")
    return 0


def _input(args: argparse.Namespace) -> str:
    return args.input if args.input is not None else sys.stdin.read()


def run_encode(args: argparse.Namespace) -> int:
    tokenizer = resolve_tokenizer(args.tokenizer, args.encoding)
    print(json.dumps(tokenizer.encode(_input(args))))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    tokenizer = resolve_tokenizer(args.tokenizer, args.encoding)
    text = _input(args).strip()
    try:
        ids = json.loads(text) if text.startswith("[") else [int(t) for t in text.split()]
    except ValueError:
        raise LanternError(
            "decode needs token ids: a JSON list or numbers separated by spaces") from None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise LanternError("decode needs token ids: a JSON list or numbers separated by spaces")
    sys.stdout.write(tokenizer.decode(ids) + "\n")
    return 0
