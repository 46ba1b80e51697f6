"""`lantern push PATH --repo user/name`: upload an export, a run or a checkpoint to the Hub."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a model (export, run, checkpoint) to the Hugging Face Hub",
        description="Upload a file or directory (a transformers export, a GGUF file, a run "
        "directory, a compressor or TRM checkpoint) with huggingface_hub. Log in first with "
        "`hf auth login` or set HF_TOKEN.",
    )
    p.add_argument("path", help="file or directory to upload")
    p.add_argument("--repo", required=True, help="user/name of the model repository")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(run=run_push)


def run_push(args: argparse.Namespace) -> int:
    from lantern.export.hub import push

    url = push(args.path, args.repo, args.private, args.message)
    print(f"uploaded {args.path} to {url}")
    return 0
