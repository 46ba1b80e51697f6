"""`lantern trm`: the LLM-TRM pipeline (argument parsing only; the work is in lantern.trm)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lantern.cli.from_config import DefaultsFormatter, add_config_flags, typed_settings
from lantern.config import PRESET_DESCRIPTIONS
from lantern.errors import LanternError
from lantern.trm.settings import (
    FLAG_ALIASES,
    CompressorConfig,
    DatagenConfig,
    EvalConfig,
    GRPOConfig,
    HostTrainConfig,
    InternalizeConfig,
    TRMTrainConfig,
)


def _settings(args: argparse.Namespace, config_cls: type, command: str,
              fixed: tuple[str, ...] = (), prefix: str = ""):
    """The phase's settings: the flags, or with --resume_from the run's saved settings with the
    flags given now on top; the flags the step requires are refused by name when missing."""
    from lantern.training.loop import resumed_settings

    given = typed_settings(args, config_cls)
    if given.get("resume_from"):
        given = resumed_settings(given, prefix, command, fixed)
    missing = [f"--{name}" for name in args.required if not given.get(name)]
    if missing:
        resumable = "resume_from" in {f.name for f in dataclasses.fields(config_cls)}
        raise LanternError(f"`{command}` needs {', '.join(missing)}"
                           + (" (or --resume_from a run of it)" if resumable else ""))
    return config_cls(**given)


def _compressor_prefix(given: dict) -> str:
    """The stage whose checkpoints --resume_from continues: --stage, the file named, or the
    stage whose newest checkpoint in the directory was written last."""
    from lantern.checkpoint import step_checkpoints

    if given.get("stage"):
        return f"stage{given['stage']}_"
    path = Path(given["resume_from"])
    if path.is_file():
        return path.name.split("checkpoint_step_")[0]
    newest = [(found[-1][1].stat().st_mtime, prefix) for prefix in ("stage1a_", "stage1b_")
              if (found := step_checkpoints(path, prefix))]
    return max(newest)[1] if newest else "stage1a_"


def _phase(sub: argparse._SubParsersAction, name: str, help: str, cls: type,
           run: Callable[[argparse.Namespace], int], required: tuple[str, ...] = (),
           **options: Any) -> argparse.ArgumentParser:
    """A `lantern trm` step whose flags are its settings dataclass's fields. `required` flags
    say so in the help, and `_settings` refuses a run without them (after reading a resumed
    run's saved settings, which may hold them)."""
    parser = sub.add_parser(name, help=help, **options)
    add_config_flags(parser, cls, aliases=FLAG_ALIASES, required=required)
    parser.set_defaults(run=run, required=required)
    return parser


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "trm", help="LLM-TRM: answer without writing the thinking out",
        description="Reasoning problems, a host with a latent slot, a hidden-state compressor, "
        "pairs of pre/post-thinking states, a SequenceTRM, and the skip-thinking evaluation. "
        "See docs/trm.md.")
    sub = p.add_subparsers(dest="trm_command", metavar="STEP", required=True)

    q = sub.add_parser("problems", help="write synthetic reasoning problems (JSONL)",
                       formatter_class=DefaultsFormatter)
    q.add_argument("--task", choices=("add", "mul"), required=True, help="addition or multiplication")
    q.add_argument("--digits", type=int, required=True, help="digits per operand")
    q.add_argument("--num_samples", type=int, required=True, help="problems to write")
    q.add_argument("--split", choices=("train", "test"), default="train",
                   help="operand pairs of the training or the held-out part")
    q.add_argument("--reversed", dest="reverse", action="store_true",
                   help="write operands and answer least-significant digit first")
    q.add_argument("--distinct", action="store_true",
                   help="training split: distinct operand pairs while they last, then repeats "
                        "(the held-out split always draws so)")
    q.add_argument("--seed", type=int, default=0, help="sampling seed")
    q.add_argument("--output", required=True, help="JSONL file to write")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    q.set_defaults(run=run_problems)

    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_DESCRIPTIONS.items())
    _phase(sub, "host", "train a LANTERN host with <think> and a latent slot", HostTrainConfig,
           run_host, ("problems", "output_dir"), epilog=f"Presets: {presets}")
    _phase(sub, "compressor", "phase 1: train the D -> D' -> D compressor", CompressorConfig,
           run_compressor, ("host",))
    d = _phase(sub, "datagen", "pairs of pre-thinking and post-thinking states", DatagenConfig,
               run_datagen, ("host", "dataset"))
    d.add_argument("--no_auto_resume", dest="auto_resume", action="store_false", default=None,
                   help="the old spelling of --no-auto_resume")
    _phase(sub, "train", "phase 2: train the SequenceTRM", TRMTrainConfig, run_train,
           ("data", "compressor_checkpoint"))
    _phase(sub, "eval", "skip-thinking evaluation on held-out problems", EvalConfig, run_eval,
           ("host", "dataset"))
    _phase(sub, "grpo", "phase 3: GRPO of the TRM and compressor, host frozen", GRPOConfig,
           run_grpo, ("host", "trm_checkpoint", "compressor_checkpoint", "dataset"))
    _phase(sub, "internalize", "stepwise internalization: the host learns to answer without "
           "thinking, a step at a time (no TRM)", InternalizeConfig, run_internalize,
           ("host", "problems"))


def run_problems(args: argparse.Namespace) -> int:
    from lantern.trm.problems import synthetic_problems, write_problems

    if Path(args.output).is_dir():
        raise LanternError(f"--output {args.output} is a directory; give a file path")
    if Path(args.output).exists() and not args.overwrite:  # before any work
        raise LanternError(f"{args.output} already exists; pass --overwrite to replace it")
    problems = synthetic_problems(args.task, args.digits, args.num_samples, args.split, args.reverse,
                                  args.seed, args.distinct)
    write_problems(args.output, problems)
    print(f"{len(problems)} {args.split} problems -> {args.output}")
    return 0


def run_host(args: argparse.Namespace) -> int:
    from lantern.trm.host_training import COMMAND, SHAPE_FLAGS, train_host

    fixed = ("problems", "val_problems", "val_fraction", "config", *SHAPE_FLAGS, "slots",
             "init_from", "weight_decay", "seed")
    train_host(_settings(args, HostTrainConfig, COMMAND, fixed))
    return 0


def run_compressor(args: argparse.Namespace) -> int:
    from lantern.trm.compressor import COMMAND, train_compressor

    fixed = ("host", "stage", "data", "init", "d_compressed", "batch_size", "num_samples", "layer",
             "window", "val_fraction", "seed")
    prefix = _compressor_prefix(vars(args)) if args.resume_from else ""
    cfg = _settings(args, CompressorConfig, COMMAND, fixed, prefix)
    print(json.dumps(train_compressor(cfg)))
    return 0


def run_datagen(args: argparse.Namespace) -> int:
    from lantern.training.distributed import run_worker
    from lantern.trm.datagen import generate_pairs

    cfg = _settings(args, DatagenConfig, "lantern trm datagen")
    return run_worker(lambda: generate_pairs(cfg))


def run_train(args: argparse.Namespace) -> int:
    from lantern.training.distributed import run_worker
    from lantern.trm.training import COMMAND, train_trm

    fixed = ("data", "compressor_checkpoint", "host", "batch_size", "weight_decay", "n_layers",
             "n_heads", "d_hidden", "core", "n_latent_steps", "n_deep_recursions", "n_supervision_steps",
             "per_step_updates", "use_ema", "ema_decay", "beta2", "val_fraction", "seed")

    def train() -> None:
        cfg = _settings(args, TRMTrainConfig, COMMAND, fixed)
        summary = train_trm(cfg)
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps({k: summary[k] for k in ("best_val_answer_exact", "best_val_cosine",
                                                      "mean_predictor_val_cosine", "optimizer_steps",
                                                      "planned_optimizer_steps") if k in summary}))

    return run_worker(train)


def run_eval(args: argparse.Namespace) -> int:
    from lantern.trm.evaluate import evaluate, format_table

    report = evaluate(_settings(args, EvalConfig, "lantern trm eval"))
    print(format_table(report))
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    from lantern.trm.grpo import COMMAND, train_grpo

    fixed = (*args.required, "num_samples", "problems_per_step", "group_size", "seed")
    print(json.dumps(train_grpo(_settings(args, GRPOConfig, COMMAND, fixed))))
    return 0


def run_internalize(args: argparse.Namespace) -> int:
    from lantern.trm.internalize import COMMAND, internalize

    fixed = ("host", "problems", "steps_per_stage", "batch_size", "weight_decay", "seed")
    internalize(_settings(args, InternalizeConfig, COMMAND, fixed))
    return 0
