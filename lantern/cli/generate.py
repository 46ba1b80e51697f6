"""`lantern generate`: sample text from a trained model."""

from __future__ import annotations

import argparse

import torch

from lantern.checkpoint import load_model
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.tokenizers import Tokenizer, load_tokenizer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a trained model",
        description="Generate text from a checkpoint file or a run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                   help="a .pt checkpoint or a run directory")
    p.add_argument("--prompt", default=None, help="text to continue (default: a new document)")
    p.add_argument("--max_new_tokens", "--max_length", dest="max_new_tokens", type=int, default=200,
                   help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top_p", type=float, default=None, help="nucleus sampling mass")
    p.add_argument("--num_samples", type=int, default=1, help="independent samples")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")
    p.add_argument("--tokenizer", default=None, help="tokenizer file [the checkpoint's own]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(run=run_generate)


def check_generation_args(args: argparse.Namespace) -> None:
    if args.max_new_tokens <= 0:
        raise LanternError(f"--max_new_tokens must be positive (got {args.max_new_tokens})")
    if args.temperature < 0:
        raise LanternError(f"--temperature must not be negative (got {args.temperature})")
    if args.top_k is not None and args.top_k <= 0:
        raise LanternError(f"--top_k must be positive (got {args.top_k})")
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        raise LanternError(f"--top_p must be in (0, 1] (got {args.top_p})")
    if args.num_samples <= 0:
        raise LanternError(f"--num_samples must be positive (got {args.num_samples})")


def encode_prompt(tokenizer: Tokenizer, prompt: str | None) -> list[int]:
    """Prompt ids; no prompt means "start a new document" (the end-of-sequence token)."""
    if prompt is None:
        if tokenizer.eos_id is None:
            raise LanternError("this tokenizer has no end-of-sequence token; give a --prompt")
        return [tokenizer.eos_id]
    if not prompt:
        raise LanternError("--prompt is empty; give some text, or leave the flag out")
    ids = tokenizer.encode(prompt)
    unk = tokenizer.token_to_id("<unk>")
    if unk is not None and unk in ids and "<unk>" not in prompt:
        known = {c for c in prompt if tokenizer.encode(c) != [unk]}
        unknown = "".join(sorted({c for c in prompt if c not in known}))
        raise LanternError(f"the prompt has characters this model's tokenizer does not know: {unknown!r}")
    return ids


def run_generate(args: argparse.Namespace) -> int:
    check_generation_args(args)
    device = pick_device(args.device)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    model, tokenizer, _ = load_model(args.checkpoint, device=device, tokenizer=tokenizer)
    prompt_ids = encode_prompt(tokenizer, args.prompt)
    if len(prompt_ids) > model.config.context_length:
        prompt_ids = prompt_ids[-model.config.context_length :]
    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed) if args.seed is not None else generator.seed()
    ids = torch.tensor([prompt_ids] * args.num_samples, device=device)
    out = model.generate(ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, eos_token_id=tokenizer.eos_id,
                         generator=generator)
    prefix = args.prompt or ""
    for i, row in enumerate(out.tolist()):
        new = row[len(prompt_ids):]
        if tokenizer.eos_id in new:
            new = new[: new.index(tokenizer.eos_id)]
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(prefix + tokenizer.decode(new, skip_special_tokens=True))
    return 0
