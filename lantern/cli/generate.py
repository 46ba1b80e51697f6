"""`lantern generate`: sample text from a trained model (or talk to it with --interactive)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from lantern.checkpoint import load_model
from lantern.cli.adaptive import ADAPTIVE_ONLY, adaptive_generator, add_adaptive_flags
from lantern.controller.thresholds import adaptive_defaults
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.generation.backends.gguf import LlamaCppEngine, is_gguf
from lantern.generation.engine import TextEngine, TorchEngine, fit_prompt
from lantern.generation.interactive import InteractiveSession
from lantern.generation.settings import GenerationConfig
from lantern.generation.textgen import Completion
from lantern.pretrained import model_path
from lantern.tokenizers import load_tokenizer

SAMPLING_DEFAULTS = {"temperature": 0.8, "top_k": None, "top_p": None, "min_p": None,
                     "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `generate` and `chat`: the model and how each token is chosen."""
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                   help="a .pt checkpoint, a run directory, or a .gguf file or known model name "
                   "(run by llama.cpp)")
    p.add_argument("--max_new_tokens", "--max_length", dest="max_new_tokens", type=int, default=200,
                   help="tokens to generate")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy [0.8]")
    p.add_argument("--top_k", type=int, default=None, help="keep the k most likely tokens [off]")
    p.add_argument("--top_p", type=float, default=None, help="nucleus sampling mass [off]")
    p.add_argument("--min_p", type=float, default=None,
                   help="drop tokens less likely than min_p x the most likely one [off]")
    p.add_argument("--repetition_penalty", type=float, default=None,
                   help="> 1 makes tokens already in the text less likely [1.0 = off]")
    p.add_argument("--presence_penalty", type=float, default=None,
                   help="subtracted from the logit of every token already in the text [0.0]")
    p.add_argument("--frequency_penalty", type=float, default=None,
                   help="subtracted once per occurrence of a token in the text [0.0]")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop when this text appears (repeatable); EOS always stops")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed: sample i uses seed + i, so the same seed gives the same text")
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
    p.add_argument("--num_samples", type=int, default=1,
                   help="independent samples (with --num_beams: the best hypotheses)")
    p.add_argument("--batch_size", type=int, default=None,
                   help="samples generated at once [8]")
    p.add_argument("--num_beams", type=int, default=1, help="> 1 = beam search")
    p.add_argument("--length_penalty", type=float, default=None,
                   help="beam score = log-prob / length^penalty (> 0 favours longer text) [1.0]")
    p.add_argument("--early_stopping", action="store_true",
                   help="beam search ends once num_beams hypotheses are finished")
    p.add_argument("--output", default=None, metavar="FILE.jsonl",
                   help="write prompt, text, token count and tokens/s per sample as JSON lines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--interactive", action="store_true",
                   help="type prompts one after another (/help lists the commands)")
    add_adaptive_flags(p)
    p.set_defaults(run=run_generate)


def config_from_args(args: argparse.Namespace, eos_token_id: int | None = None,
                     think_token_id: int | None = None) -> GenerationConfig:
    """Every generation flag, checked (a bad value is one clear error)."""
    sampling = {k: (getattr(args, k) if getattr(args, k) is not None else v)
                for k, v in SAMPLING_DEFAULTS.items()}
    length_penalty = getattr(args, "length_penalty", None)
    return GenerationConfig(
        max_new_tokens=args.max_new_tokens, **sampling, stop_strings=tuple(args.stop),
        eos_token_id=eos_token_id, think_token_id=think_token_id, seed=args.seed,
        num_beams=getattr(args, "num_beams", 1),
        length_penalty=1.0 if length_penalty is None else length_penalty,
        early_stopping=getattr(args, "early_stopping", False), steps_per_block=args.steps_per_block,
    )


def given(args: argparse.Namespace, *names: str) -> list[str]:
    """The flags among `names` the user typed (those whose default is None or False). Compared
    by identity: a typed 0 (`--temperature 0`) equals False, but it was given."""
    return [f"--{n}" for n in names
            if getattr(args, n, None) is not None and getattr(args, n) is not False]


def refuse_conflicts(args: argparse.Namespace) -> None:
    """Every flag works in the mode asked for, or is refused here by name."""
    def refuse(flags: list[str], reason: str) -> None:
        if flags:
            raise LanternError(f"{', '.join(flags)} {'has' if len(flags) == 1 else 'have'} no "
                               f"effect {reason}")

    beams = args.num_beams > 1
    if beams:
        refuse(given(args, *SAMPLING_DEFAULTS, "seed"), "with --num_beams (beam search is "
               "deterministic; drop --num_beams to sample)")
        refuse(given(args, "batch_size"), "with --num_beams (one search runs at a time)")
        refuse(given(args, "adaptive"), "with --num_beams (adaptive depth samples token by token)")
    else:
        refuse(given(args, "length_penalty", "early_stopping"), "without --num_beams > 1")
    if not args.adaptive:
        refuse(given(args, *ADAPTIVE_ONLY), "without --adaptive")
    if args.interactive:
        refuse(given(args, "prompt", "output", "adaptive", "batch_size")
               + (["--num_samples"] if args.num_samples != 1 else []),
               "with --interactive (it reads prompts as you type, one answer each)")
    if args.overwrite and not args.output:
        raise LanternError("--overwrite replaces an --output file; give --output too")


def refuse_pytorch_only(args: argparse.Namespace) -> None:
    """Flags only LANTERN's PyTorch engine has, refused by name for a .gguf model."""
    flags = [f"--{n}" for n in ("adaptive", "steps_per_block", "tokenizer", "batch_size")
             if getattr(args, n, None) is not None and getattr(args, n) is not False]  # 0 is given
    if getattr(args, "num_beams", 1) != 1:
        flags.append("--num_beams")
    if flags:
        raise LanternError(f"{', '.join(flags)}: not available for a .gguf model (llama.cpp runs it); "
                           "use the run directory or .pt checkpoint")
    if getattr(args, "device", "auto") not in ("auto", "cpu"):
        raise LanternError(f"--device {args.device}: a .gguf model runs on the CPU through llama.cpp")


def load_for_generation(args: argparse.Namespace):
    """(model, tokenizer, device, the checkpoint's adaptive-decoding defaults)."""
    device = pick_device(args.device)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    model, tokenizer, state = load_model(args.checkpoint, device=device, tokenizer=tokenizer)
    return model, tokenizer, device, adaptive_defaults(state)


@contextmanager
def open_engine(args: argparse.Namespace) -> Iterator[TextEngine]:
    """The model behind `--checkpoint`: a LANTERN run or checkpoint, or a GGUF (a file or a known
    model name) for llama.cpp."""
    path = model_path(args.checkpoint)
    if is_gguf(path):
        refuse_pytorch_only(args)
        engine: TextEngine = LlamaCppEngine(path)
    else:
        model, tokenizer, _, defaults = load_for_generation(args)
        sampler = (adaptive_generator(args, model, tokenizer, defaults)
                   if getattr(args, "adaptive", False) else None)
        engine = TorchEngine(model, tokenizer, sampler)
    try:
        yield engine
    finally:
        engine.close()


def run_generate(args: argparse.Namespace) -> int:
    refuse_conflicts(args)
    if args.num_samples <= 0:
        raise LanternError(f"--num_samples must be positive (got {args.num_samples})")
    batch_size = args.batch_size if args.batch_size is not None else 8
    if batch_size <= 0:
        raise LanternError(f"--batch_size must be positive (got {batch_size})")
    config_from_args(args)  # check every value before loading anything
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.overwrite:
        raise LanternError(f"{output} already exists; pass --overwrite to replace it")
    with open_engine(args) as engine:
        config = config_from_args(args, engine.eos_id, engine.think_id)
        if args.interactive:
            InteractiveSession(engine, config, chat=False, seed=args.seed).run()
            return 0
        results = generate_samples(engine, args, config, batch_size, stream=output is None)
    if output is not None:
        lines = [json.dumps({"sample": i + 1, "prompt": r.prompt, "text": r.text,
                             "num_tokens": r.num_tokens,
                             "tokens_per_second": round(r.tokens_per_second, 2),
                             "stop_reason": r.stop_reason}, ensure_ascii=False)
                 for i, r in enumerate(results)]
        atomic_write_text(output, "\n".join(lines) + "\n")
        print(f"wrote {len(results)} samples to {output}", file=sys.stderr)
    return 0


def generate_samples(engine: TextEngine, args: argparse.Namespace, config: GenerationConfig,
                     batch_size: int, stream: bool) -> list[Completion]:
    """`--num_samples` completions of the prompt; one sample streams to the terminal, several
    print once done (with `stream`), or are only returned (for --output)."""
    prompt_ids = fit_prompt(engine.encode(args.prompt), engine.context_length)
    prefix = args.prompt or ""
    stop_ids = engine.stop_ids(chat=False)
    live = stream and args.num_samples == 1 and config.num_beams == 1
    on_text = None
    if live:
        sys.stdout.write(prefix)
        on_text = lambda _row, piece: (sys.stdout.write(piece), sys.stdout.flush())  # noqa: E731
    if config.num_beams > 1:
        results = engine.best_beams(prefix, prompt_ids, config, stop_ids, args.num_samples)
    else:
        results = []
        with tqdm(total=args.num_samples, unit="sample", disable=args.num_samples == 1,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            while len(results) < args.num_samples:
                count = min(batch_size, args.num_samples - len(results))
                results += engine.complete([prefix] * count, [prompt_ids] * count, config,
                                           stop_ids, on_text, first_row=len(results))
                bar.update(count)
    if live:
        print()
    elif stream:
        for i, result in enumerate(results):
            if args.num_samples > 1:
                print(f"--- sample {i + 1} ---")
            print(prefix + result.text)
    return results
