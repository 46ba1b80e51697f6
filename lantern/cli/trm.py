"""`lantern trm`: the LLM-TRM pipeline (argument parsing only; the work is in lantern.trm)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from lantern.config import PRESET_DESCRIPTIONS
from lantern.errors import LanternError

BOOL = argparse.BooleanOptionalAction


def _given(args: argparse.Namespace, config_cls: type) -> dict:
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def _add_resume_flags(parser: argparse.ArgumentParser, interval: str) -> None:
    parser.add_argument("--save_interval", type=int,
                        help=f"steps between resumable checkpoints [{interval}]")
    parser.add_argument("--resume_from", help="continue the run in this directory (or from one "
                        "of its checkpoint_step_N.pt files) exactly where it stopped; its "
                        "settings are kept, flags given now override them")


def _settings(args: argparse.Namespace, config_cls: type, command: str, required: tuple[str, ...],
              fixed: tuple[str, ...], prefix: str = ""):
    """The phase's settings: the flags, or with --resume_from the run's saved settings with the
    flags given now on top; what the run needs is refused by name when missing."""
    from lantern.training.loop import resumed_settings

    given = _given(args, config_cls)
    if given.get("resume_from"):
        given = resumed_settings(given, prefix, command, fixed)
    missing = [f"--{name}" for name in required if not given.get(name)]
    if missing:
        raise LanternError(f"`{command}` needs {', '.join(missing)} (or --resume_from a run of it)")
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


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "trm", help="LLM-TRM: answer without writing the thinking out",
        description="Reasoning problems, a host with a latent slot, a hidden-state compressor, "
        "pairs of pre/post-thinking states, a SequenceTRM, and the skip-thinking evaluation. "
        "See docs/trm.md.")
    sub = p.add_subparsers(dest="trm_command", metavar="STEP", required=True)

    q = sub.add_parser("problems", help="write synthetic reasoning problems (JSONL)",
                       argument_default=None)
    q.add_argument("--task", choices=("add", "mul"), required=True, help="addition or multiplication")
    q.add_argument("--digits", type=int, required=True, help="digits per operand")
    q.add_argument("--num_samples", type=int, required=True, help="problems to write")
    q.add_argument("--split", choices=("train", "test"), default="train",
                   help="operand pairs of the training or the held-out part [train]")
    q.add_argument("--reversed", dest="reverse", action="store_true", default=False,
                   help="write operands and answer least-significant digit first")
    q.add_argument("--distinct", action="store_true", default=False,
                   help="training split: distinct operand pairs while they last, then repeats "
                        "(the held-out split always draws so)")
    q.add_argument("--seed", type=int, default=0, help="sampling seed [0]")
    q.add_argument("--output", required=True, help="JSONL file to write")
    q.add_argument("--overwrite", action="store_true", default=False,
                   help="replace an existing --output")
    q.set_defaults(run=run_problems)

    h = sub.add_parser("host", help="train a LANTERN host with <think> and a latent slot",
                       argument_default=None)
    h.add_argument("--problems", help="problems JSONL (with worked steps) [required]")
    h.add_argument("--output_dir", help="run directory to write [required]")
    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_DESCRIPTIONS.items())
    h.add_argument("--config", "--preset", dest="config", help=f"model preset [gpt-128]. {presets}")
    for name in ("hidden_size", "num_heads", "num_blocks", "steps_per_block", "mlp_hidden_size"):
        h.add_argument(f"--{name}", type=int, help="model shape override [preset]")
    h.add_argument("--mlp", choices=("gelu", "swiglu"), help="[preset]")
    h.add_argument("--norm", choices=("layernorm", "rmsnorm"), help="[preset]")
    h.add_argument("--position", choices=("learned", "sinusoidal", "rope"), help="[preset]")
    h.add_argument("--dropout", type=float, help="[preset]")
    for name, kind, text in (("batch_size", int, "problems per step [32]"),
                             ("learning_rate", float, "peak learning rate [1e-3]"),
                             ("min_lr", float, "final learning rate [learning_rate / 10]"),
                             ("weight_decay", float, "AdamW decay [0.1]"),
                             ("max_steps", int, "optimizer steps [2000]"),
                             ("warmup_steps", int, "warmup steps [100]"),
                             ("grad_clip", float, "gradient-norm clip, 0 = off [1.0]"),
                             ("latent_weight", float, "weight of the slot sequences' loss [1.0]"),
                             ("slots", int, "K latent slots, one per reasoning step (steps are "
                              "separated by ';' in the thinking); 1 = the whole thinking [1]"),
                             ("no_think_fraction", float,
                              "share of rows also shown without thinking [0]"),
                             ("all_slots_fraction", float, "share of mixed rows with every step "
                              "in slots; the rest put the first j in 1..K there [0: j uniform]"),
                             ("val_fraction", float, "held-out share of the problems [0.05]"),
                             ("val_problems", str,
                              "held-out problems file for validation instead of a share [none]"),
                             ("eval_interval", int, "steps between evaluations [250]"),
                             ("eval_problems", int, "held-out problems per evaluation [200]"),
                             ("seed", int, "[1337]")):
        h.add_argument(f"--{name}", type=kind, help=text)
    h.add_argument("--device", help="auto, cpu, cuda, mps [auto]")
    h.add_argument("--dtype", help="auto, float32, bfloat16, float16 [auto]")
    h.add_argument("--init_from", help="continue from a host trained before (same vocabulary) [fresh]")
    h.add_argument("--detach_teacher_state", action="store_true", default=None,
                   help="no gradient from the slot loss into the </think> state [off]")
    h.add_argument("--overwrite", action="store_true", default=None, help="replace a trained host")
    _add_resume_flags(h, "every --eval_interval steps")
    h.set_defaults(run=run_host)

    c = sub.add_parser("compressor", help="phase 1: train the D -> D' -> D compressor",
                       argument_default=None)
    c.add_argument("--host", help="LANTERN run directory or local HF model directory [required]")
    c.add_argument("--output_dir", help="where stage<S>_best/final go [trm_compressor]")
    c.add_argument("--stage", choices=("1a", "1b"), help="1a: text; 1b: thinking trajectories [1a]")
    c.add_argument("--d_compressed", type=int, help="compressed size D' [256]")
    c.add_argument("--batch_size", type=int, help="hidden-state rows per step [512]")
    c.add_argument("--num_epochs", type=int, help="[10]")
    c.add_argument("--learning_rate", type=float, help="[1e-3]")
    c.add_argument("--num_samples", type=int, help="text windows (1a) or problems (1b) [2000]")
    c.add_argument("--data", help="1a: a text file [built-in story corpus]; 1b: problems JSONL")
    c.add_argument("--init", help="start from this checkpoint (1b: the 1a best) [fresh]")
    c.add_argument("--layer", type=int, help="hidden-state layer, -1 = final [-1]")
    c.add_argument("--window", type=int,
                   help="tokens per 1a text window [64, or the host's context if shorter]")
    c.add_argument("--seed", type=int, help="[0]")
    c.add_argument("--device", help="[cpu]")
    c.add_argument("--overwrite", action="store_true", default=None,
                   help="replace this stage's checkpoints in --output_dir")
    _add_resume_flags(c, "every epoch")
    c.set_defaults(run=run_compressor)

    d = sub.add_parser("datagen", help="pairs of pre-thinking and post-thinking states",
                       argument_default=None)
    d.add_argument("--host", required=True, help="LANTERN run directory or local HF model directory")
    d.add_argument("--dataset", required=True, help="problems JSONL, or gsm8k/aime/humaneval/mbpp/apps")
    d.add_argument("--output_dir", help="[trm_pairs]")
    d.add_argument("--num_samples", type=int, help="problems to use [1000]")
    d.add_argument("--batch_size", type=int, help="[16]")
    d.add_argument("--max_new_tokens", type=int, help="thinking budget in generate mode [512]")
    d.add_argument("--checkpoint_every", type=int, help="problems per saved chunk [100]")
    d.add_argument("--mode", choices=("teacher", "generate"),
                   help="teacher: gold steps, one forward; generate: the host's own, correct only "
                   "[teacher]")
    d.add_argument("--layer", type=int, help="[-1 = final]")
    d.add_argument("--no_auto_resume", dest="auto_resume", action="store_false", default=None,
                   help="start afresh (with --overwrite when a run is already there)")
    d.add_argument("--overwrite", action="store_true", default=None,
                   help="discard a datagen run already in --output_dir")
    d.add_argument("--device", help="[cpu]")
    d.set_defaults(run=run_datagen)

    t = sub.add_parser("train", help="phase 2: train the SequenceTRM", argument_default=None)
    t.add_argument("--data", help="hidden_pairs file or the datagen directory [required]")
    t.add_argument("--compressor_checkpoint", help="stage1a/1b checkpoint [required]")
    t.add_argument("--host", help="LANTERN host for the answer loss through its latent slot [none]")
    t.add_argument("--output_dir", help="[trm_model]")
    for name, kind, text in (("batch_size", int, "[32]"), ("num_epochs", int, "[100]"),
                             ("learning_rate", float, "[1e-4]"), ("weight_decay", float, "[0]"),
                             ("warmup_steps", int, "in optimizer steps [0]"),
                             ("min_lr", float, "[learning_rate / 10]"),
                             ("grad_clip", float, "[1.0]"), ("n_layers", int, "[2]"),
                             ("n_heads", int, "[4]"),
                             ("d_hidden", int, "the network's width, projected from and to D' [D']"),
                             ("n_latent_steps", int, "n [6]"),
                             ("n_deep_recursions", int, "T [3]"),
                             ("n_supervision_steps", int, "N_sup [8]"),
                             ("eval_supervision_steps", int, "at validation [N_sup]"),
                             ("halt_threshold", float, "[0.7]"),
                             ("halt_loss_weight", float, "[0.5]"), ("ema_decay", float, "[0.999]"),
                             ("answer_loss_weight", float, "[1 with --host, else 0]"),
                             ("answer_loss_from", float,
                              "share of training before the answer loss starts [0]"),
                             ("digit_loss_weight", float, "the digit head on each step's result "
                              "[1 along a trajectory of slots, else 0]"),
                             ("beta2", float, "AdamW beta2 [0.99]"),
                             ("val_fraction", float, "[0.1]"), ("seed", int, "[0]")):
        t.add_argument(f"--{name}", type=kind, help=text)
    t.add_argument("--core", choices=("attention", "mlp"),
                   help="the network: a transformer encoder, or an MLP-mixer over the question's "
                   "positions (TRM-MLP, for short fixed-length questions) [attention]")
    t.add_argument("--use_halting", action=BOOL,
                   help="train the halting head [on for one slot; a trajectory runs every step]")
    t.add_argument("--adaptive_halt_threshold", action=BOOL,
                   help="raise the BCE threshold to 0.95 x training cosine each epoch [on]")
    t.add_argument("--bce_halt_loss", action=BOOL, help="BCE instead of MSE-to-cosine [off]")
    t.add_argument("--per_step_updates", action=BOOL, help="an update per supervision step [on]")
    t.add_argument("--use_ema", action=BOOL, help="EMA weights for validation and saving [on]")
    t.add_argument("--device", help="[auto]")
    t.add_argument("--dtype", help="auto, float32, bfloat16 [auto]")
    t.add_argument("--overwrite", action="store_true", default=None,
                   help="replace best.pt / final.pt in --output_dir")
    _add_resume_flags(t, "every epoch")
    t.set_defaults(run=run_train)

    e = sub.add_parser("eval", help="skip-thinking evaluation on held-out problems",
                       argument_default=None)
    e.add_argument("--host", required=True, help="LANTERN host with a latent slot")
    e.add_argument("--dataset", required=True, help="held-out problems JSONL")
    e.add_argument("--trm_checkpoint", help="best.pt / final.pt or their directory")
    e.add_argument("--compressor_checkpoint", help="the compressor the TRM was trained with")
    e.add_argument("--output", help="report.json (a .png plot goes beside it) [report.json]")
    e.add_argument("--modes", help="comma-separated subset [all; trm_digits when the TRM has a digit head]")
    e.add_argument("--num_samples", type=int, help="[200]")
    e.add_argument("--max_new_tokens", type=int, help="[256]")
    e.add_argument("--batch_size", type=int, help="[64]")
    e.add_argument("--eval_supervision_steps", type=int, help="TRM steps at most [its N_sup]")
    e.add_argument("--bootstrap", type=int, help="bootstrap resamples [1000]")
    e.add_argument("--seed", type=int, help="[0]")
    e.add_argument("--overwrite", action="store_true", default=None,
                   help="replace an existing --output report and its plot")
    e.add_argument("--device", help="[cpu]")
    e.set_defaults(run=run_eval)

    g = sub.add_parser("grpo", help="phase 3: GRPO of the TRM and compressor, host frozen",
                       argument_default=None)
    g.add_argument("--host", help="LANTERN host with a latent slot [required]")
    g.add_argument("--trm_checkpoint", help="phase 2 best.pt / final.pt [required]")
    g.add_argument("--compressor_checkpoint", help="the compressor it was trained with [required]")
    g.add_argument("--dataset", help="training problems JSONL [required]")
    g.add_argument("--output_dir", help="trm.pt and compressor.* go here [trm_grpo]")
    for name, kind, text in (("num_samples", int, "problems [256]"), ("num_epochs", int, "[1]"),
                             ("group_size", int, "answers sampled per problem, G [8]"),
                             ("problems_per_step", int, "[8]"),
                             ("iterations", int, "updates per sampled batch [2]"),
                             ("learning_rate", float, "[1e-5]"), ("clip", float, "ratio clip [0.2]"),
                             ("kl_coef", float, "KL penalty to the starting policy [0]"),
                             ("temperature", float, "sampling temperature [1.0]"),
                             ("max_new_tokens", int, "answer budget [32]"), ("seed", int, "[0]")):
        g.add_argument(f"--{name}", type=kind, help=text)
    g.add_argument("--device", help="[cpu]")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="replace trm.pt / compressor.* in --output_dir")
    _add_resume_flags(g, "8")
    g.set_defaults(run=run_grpo)

    n = sub.add_parser("internalize", help="stepwise internalization: the host learns to answer "
                       "without thinking, a step at a time (no TRM)", argument_default=None)
    n.add_argument("--host", help="a host made by `lantern trm host` to start from [required]")
    n.add_argument("--problems",
                   help="problems JSONL, every one with the same number of ';'-separated steps "
                   "[required]")
    n.add_argument("--output_dir", help="run directory to write [trm_internalized]")
    for name, kind, text in (("val_problems", str,
                              "held-out problems JSONL for accuracy after each stage [none]"),
                             ("steps_per_stage", int, "optimizer steps per removed step [500]"),
                             ("batch_size", int, "problems per step [32]"),
                             ("learning_rate", float, "peak learning rate of each stage [5e-4]"),
                             ("min_lr", float, "final learning rate of each stage "
                              "[learning_rate / 10]"),
                             ("weight_decay", float, "AdamW decay [0.1]"),
                             ("warmup_steps", int, "warmup steps at the start of each stage [20]"),
                             ("grad_clip", float, "gradient-norm clip, 0 = off [1.0]"),
                             ("removal_smoothing", float,
                              "lambda: a row removes o steps more, P(o) ~ exp(-lambda o); "
                              "0 = off [4]"),
                             ("eval_problems", int, "of --val_problems, per evaluation [200]"),
                             ("seed", int, "[1337]")):
        n.add_argument(f"--{name}", type=kind, help=text)
    n.add_argument("--device", help="auto, cpu, cuda, mps [auto]")
    n.add_argument("--dtype", help="auto, float32, bfloat16, float16 [auto]")
    n.add_argument("--overwrite", action="store_true", default=None,
                   help="replace what --output_dir holds")
    _add_resume_flags(n, "at the end of each stage")
    n.set_defaults(run=run_internalize)


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
    from lantern.trm.host_training import COMMAND, SHAPE_FLAGS, HostTrainConfig, train_host

    fixed = ("problems", "val_problems", "val_fraction", "config", *SHAPE_FLAGS, "slots",
             "init_from", "weight_decay", "seed")
    train_host(_settings(args, HostTrainConfig, COMMAND, ("problems", "output_dir"), fixed))
    return 0


def run_compressor(args: argparse.Namespace) -> int:
    from lantern.trm.compressor import COMMAND, CompressorConfig, train_compressor

    fixed = ("host", "stage", "data", "init", "d_compressed", "batch_size", "num_samples", "layer",
             "window", "val_fraction", "seed")
    prefix = _compressor_prefix(vars(args)) if args.resume_from else ""
    cfg = _settings(args, CompressorConfig, COMMAND, ("host",), fixed, prefix)
    print(json.dumps(train_compressor(cfg)))
    return 0


def run_datagen(args: argparse.Namespace) -> int:
    from lantern.training.distributed import run_worker
    from lantern.trm.datagen import DatagenConfig, generate_pairs

    return run_worker(lambda: generate_pairs(DatagenConfig(**_given(args, DatagenConfig))))


def run_train(args: argparse.Namespace) -> int:
    from lantern.training.distributed import run_worker
    from lantern.trm.training import COMMAND, TRMTrainConfig, train_trm

    fixed = ("data", "compressor_checkpoint", "host", "batch_size", "weight_decay", "n_layers",
             "n_heads", "d_hidden", "core", "n_latent_steps", "n_deep_recursions", "n_supervision_steps",
             "per_step_updates", "use_ema", "ema_decay", "beta2", "val_fraction", "seed")

    def train() -> None:
        cfg = _settings(args, TRMTrainConfig, COMMAND, ("data", "compressor_checkpoint"), fixed)
        summary = train_trm(cfg)
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps({k: summary[k] for k in ("best_val_answer_exact", "best_val_cosine",
                                                      "mean_predictor_val_cosine", "optimizer_steps",
                                                      "planned_optimizer_steps") if k in summary}))

    return run_worker(train)


def run_eval(args: argparse.Namespace) -> int:
    from lantern.trm.evaluate import EvalConfig, evaluate, format_table

    report = evaluate(EvalConfig(**_given(args, EvalConfig)))
    print(format_table(report))
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    from lantern.trm.grpo import COMMAND, GRPOConfig, train_grpo

    required = ("host", "trm_checkpoint", "compressor_checkpoint", "dataset")
    fixed = (*required, "num_samples", "problems_per_step", "group_size", "seed")
    print(json.dumps(train_grpo(_settings(args, GRPOConfig, COMMAND, required, fixed))))
    return 0


def run_internalize(args: argparse.Namespace) -> int:
    from lantern.trm.internalize import COMMAND, InternalizeConfig, internalize

    fixed = ("host", "problems", "steps_per_stage", "batch_size", "weight_decay", "seed")
    internalize(_settings(args, InternalizeConfig, COMMAND, ("host", "problems"), fixed))
    return 0
