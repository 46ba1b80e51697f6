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
from lantern.cli.from_config import DefaultsFormatter, add_config_flags, typed_settings
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.generation.adaptive.thresholds import adaptive_defaults
from lantern.generation.backends.gguf import LlamaCppEngine, is_gguf
from lantern.generation.backends.llamacpp import sampling_payload
from lantern.generation.engine import TextEngine, TorchEngine, fit_prompt
from lantern.generation.interactive import InteractiveSession
from lantern.generation.sampling import sampler_fields
from lantern.generation.settings import FLAG_ALIASES, GenerationConfig
from lantern.generation.textgen import Completion
from lantern.pretrained import model_path
from lantern.tokenizers import load_tokenizer

# Where the command deliberately differs from GenerationConfig (whose defaults the server and
# the Python API keep): livelier text than temperature 1, longer samples than 100 tokens.
COMMAND_DEFAULTS = {"temperature": 0.8, "max_new_tokens": 200}
BEAM_FIELDS = ("num_beams", "length_penalty", "early_stopping")  # beam search: `generate` only
MODEL_FIELDS = ("eos_token_id", "think_token_id")  # read from the model, never typed
BATCH_SIZE = 8  # samples at once unless --batch_size says (None tells --num_beams it was not typed)
SAMPLER_NAMES = tuple(f.name for f in sampler_fields())


def add_model_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = BEAM_FIELDS) -> None:
    """Flags shared by `generate` and `chat`: the model and how each token is chosen."""
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                   help="a .pt checkpoint, a run directory, or a .gguf file or known model name "
                   "(run by llama.cpp)")
    add_config_flags(p, GenerationConfig, skip=(*MODEL_FIELDS, *skip), aliases=FLAG_ALIASES,
                     defaults=COMMAND_DEFAULTS)
    p.add_argument("--tokenizer", help="tokenizer file [the checkpoint's own]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a trained model",
        description="Generate text from a checkpoint file or a run directory. Generation "
        "slides past the model's context; a prompt longer than the context keeps its last "
        "tokens (with a warning).",
        formatter_class=DefaultsFormatter,
    )
    add_model_flags(p, skip=())
    p.add_argument("--prompt", help="text to continue [a new document]")
    p.add_argument("--num_samples", type=int, default=1,
                   help="independent samples (with --num_beams: the best hypotheses)")
    p.add_argument("--batch_size", type=int,
                   help=f"samples generated at once [{BATCH_SIZE}]")
    p.add_argument("--output", default=None, metavar="FILE.jsonl",
                   help="write prompt, text, token count and tokens/s per sample as JSON lines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--interactive", action="store_true",
                   help="type prompts one after another (/help lists the commands)")
    add_adaptive_flags(p)
    p.set_defaults(run=run_generate)


def config_from_args(args: argparse.Namespace, eos_token_id: int | None = None,
                     think_token_id: int | None = None) -> GenerationConfig:
    """Every generation flag, checked (a bad value is one clear error): the values typed, the
    command's own defaults, then GenerationConfig's."""
    return GenerationConfig(**{**COMMAND_DEFAULTS, **typed_settings(args, GenerationConfig)},
                            eos_token_id=eos_token_id, think_token_id=think_token_id)


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

    beams = (args.num_beams or 1) > 1
    if beams:
        refuse(given(args, *SAMPLER_NAMES, "seed"), "with --num_beams (beam search is "
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
    if getattr(args, "num_beams", None) not in (None, 1):
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
        sampling_payload(config_from_args(args))  # a sampler llama.cpp lacks: refused by name
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
    batch_size = args.batch_size if args.batch_size is not None else BATCH_SIZE
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
