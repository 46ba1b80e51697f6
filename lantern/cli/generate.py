"""`lantern generate`: sample text from a trained model (or talk to it with --interactive)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from lantern.checkpoint import load_model
from lantern.controller.cli import add_adaptive_flags, run_adaptive
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.generation.interactive import InteractiveSession
from lantern.generation.prompts import encode_prompt, fit_context
from lantern.generation.sampling import SamplingConfig
from lantern.generation.textgen import Completion, GenerationSettings, complete
from lantern.tokenizers import load_tokenizer


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `generate` and `chat`: the model and how each token is chosen."""
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                   help="a .pt checkpoint or a run directory")
    p.add_argument("--max_new_tokens", "--max_length", dest="max_new_tokens", type=int, default=200,
                   help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top_k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top_p", type=float, default=None, help="nucleus sampling mass")
    p.add_argument("--min_p", type=float, default=None,
                   help="drop tokens less likely than min_p x the most likely one")
    p.add_argument("--repetition_penalty", type=float, default=1.0,
                   help="> 1 makes tokens already in the text less likely")
    p.add_argument("--presence_penalty", type=float, default=0.0,
                   help="subtracted from the logit of every token already in the text")
    p.add_argument("--frequency_penalty", type=float, default=0.0,
                   help="subtracted once per occurrence of a token in the text")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text appears (repeatable); EOS always stops")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")
    p.add_argument("--steps_per_block", type=int, default=None,
                   help="recursion depth per block [the model's own]")
    p.add_argument("--tokenizer", default=None, help="tokenizer file [the checkpoint's own]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a trained model",
        description="Generate text from a checkpoint file or a run directory. Generation "
        "slides past the model's context; a prompt longer than the context keeps its last "
        "tokens (with a warning).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_flags(p)
    p.add_argument("--prompt", default=None, help="text to continue (default: a new document)")
    p.add_argument("--num_samples", type=int, default=1, help="independent samples")
    p.add_argument("--batch_size", type=int, default=8, help="samples generated at once")
    p.add_argument("--num_beams", type=int, default=1, help="> 1 = beam search")
    p.add_argument("--length_penalty", type=float, default=1.0,
                   help="beam score = log-prob / length^penalty (> 0 favours longer text)")
    p.add_argument("--early_stopping", action="store_true",
                   help="beam search ends once num_beams hypotheses are finished")
    p.add_argument("--output", default=None, metavar="FILE.jsonl",
                   help="write prompt, text, token count and tokens/s per sample as JSON lines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--interactive", action="store_true",
                   help="type prompts one after another (/help lists the commands)")
    add_adaptive_flags(p)
    p.set_defaults(run=run_generate)


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    """Every generation flag, checked (a bad value is one clear error)."""
    sampling = SamplingConfig(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty,
    )
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens, sampling=sampling, stop_strings=tuple(args.stop),
        num_beams=getattr(args, "num_beams", 1), length_penalty=getattr(args, "length_penalty", 1.0),
        early_stopping=getattr(args, "early_stopping", False), steps_per_block=args.steps_per_block,
    )


def load_for_generation(args: argparse.Namespace):
    device = pick_device(args.device)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    model, tokenizer, _ = load_model(args.checkpoint, device=device, tokenizer=tokenizer)
    return model, tokenizer, device


def run_generate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.num_samples <= 0:
        raise LanternError(f"--num_samples must be positive (got {args.num_samples})")
    if args.batch_size <= 0:
        raise LanternError(f"--batch_size must be positive (got {args.batch_size})")
    if args.interactive and (args.output or args.prompt is not None):
        raise LanternError("--interactive reads prompts as you type; drop --prompt and --output")
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.overwrite:
        raise LanternError(f"{output} already exists; pass --overwrite to replace it")
    model, tokenizer, device = load_for_generation(args)
    if args.interactive:
        InteractiveSession(model, tokenizer, settings, chat=False, seed=args.seed).run()
        return 0
    prompt_ids, cut = fit_context(encode_prompt(tokenizer, args.prompt),
                                  model.config.context_length)
    if cut:
        print(f"lantern: warning: the prompt is longer than the model's context "
              f"({model.config.context_length} tokens); only its last "
              f"{model.config.context_length} tokens are used", file=sys.stderr)
    if args.adaptive:
        return run_adaptive(args, model, tokenizer, prompt_ids, device)
    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed) if args.seed is not None else generator.seed()
    prefix = args.prompt or ""
    stop_ids = {tokenizer.eos_id} - {None}
    stream = args.num_samples == 1 and settings.num_beams == 1 and output is None
    if stream:
        sys.stdout.write(prefix)
        complete(model, tokenizer, [prefix], [prompt_ids], settings, stop_ids, generator,
                 on_text=lambda _row, piece: (sys.stdout.write(piece), sys.stdout.flush()))
        print()
        return 0
    results: list[Completion] = []
    with tqdm(total=args.num_samples, unit="sample", disable=args.num_samples == 1,
              file=sys.stderr, dynamic_ncols=True) as bar:
        while len(results) < args.num_samples:
            count = min(args.batch_size, args.num_samples - len(results))
            results += complete(model, tokenizer, [prefix] * count, [prompt_ids] * count,
                                settings, stop_ids, generator)
            bar.update(count)
    if output is not None:
        lines = [json.dumps({"sample": i + 1, "prompt": r.prompt, "text": r.text,
                             "num_tokens": r.num_tokens,
                             "tokens_per_second": round(r.tokens_per_second, 2),
                             "stop_reason": r.stop_reason}, ensure_ascii=False)
                 for i, r in enumerate(results)]
        atomic_write_text(output, "\n".join(lines) + "\n")
        print(f"wrote {len(results)} samples to {output}", file=sys.stderr)
        return 0
    for i, result in enumerate(results):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(prefix + result.text)
    return 0
