"""`lantern eval --checkpoint MODEL --data FILE`: held-out loss, perplexity, bits per byte and
next-token accuracy of any model on any text or token file, per depth for recursive models."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from lantern.checkpoint import is_run_directory, load_model
from lantern.cli.data import check_output_file
from lantern.cli.from_config import DefaultsFormatter, add_config_flags, typed_settings
from lantern.data.token_store import load_tokens
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.evaluation.calibration import Calibration, plot_reliability
from lantern.evaluation.heldout import Tally, progress_bar, score_windows, score_with_llamacpp
from lantern.evaluation.settings import ScoreSettings
from lantern.evaluation.windows import Window, rolling_windows
from lantern.export.describe import gguf_summary
from lantern.export.file_kind import is_gguf_file
from lantern.fileio import atomic_write_text
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.pretrained.load import load_pretrained, model_path
from lantern.tokenizers import Tokenizer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a model on held-out text: loss, perplexity, bits per byte, accuracy",
        description="Score every token of a text (or token) file once, in windows of the model's "
        "context laid out as lm-evaluation-harness's loglikelihood_rolling does, and print the "
        "mean loss (nats per token), perplexity, bits per UTF-8 byte and next-token accuracy. "
        "For a recursive model, --depths scores it at several depths (steps per block).",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--checkpoint", required=True,
                   help="a run directory or .pt checkpoint, a transformers directory, a .gguf file "
                   "or a known model name (see `lantern pull --list`)")
    p.add_argument("--data", "--data_path", dest="data", required=True,
                   help="a text file, a .jsonl token file, or a .bin token shard or directory of shards")
    add_config_flags(p.add_argument_group("scoring"), ScoreSettings)
    p.add_argument("--calibration", metavar="PNG",
                   help="also measure calibration: fit a temperature on every other window, and on "
                   "the rest report the expected calibration error before and after it and the "
                   "AUROC of 1 - top-1 probability and of entropy for a wrong top-1 token; "
                   "the reliability diagram goes to PNG")
    p.add_argument("--output", help="also write the figures as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_eval)


def parse_depths(text: str | None) -> list[int | None]:
    if text is None:
        return [None]
    try:
        depths = [int(part) for part in text.split(",")]
    except ValueError:
        raise LanternError(f"--depths must be comma-separated whole numbers, e.g. 1,2,4 "
                           f"(got {text!r})") from None
    if any(d < 1 for d in depths):
        raise LanternError(f"--depths must all be at least 1 (got {text})")
    return depths


def check_args(args: argparse.Namespace, gguf: bool) -> None:
    for name in ("context", "max_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LanternError(f"--{name} must be at least 1 (got {value})")
    if args.engine and not gguf:
        raise LanternError("--engine chooses how a .gguf is run; this checkpoint is not a GGUF")
    if gguf and args.engine != "pytorch":
        if args.depths:
            raise LanternError("--depths needs --engine pytorch for a .gguf (llama.cpp runs the "
                               "model at the depth it was written with)")
        if args.device != "auto":
            raise LanternError("--device applies to --engine pytorch; llama.cpp runs on the CPU here")
    if args.overwrite and not (args.output or args.calibration):
        raise LanternError("--overwrite replaces an --output or --calibration file; give one")
    if args.calibration and gguf and args.engine != "pytorch":
        raise LanternError("--calibration needs every next-token distribution: use --engine pytorch "
                           "for a .gguf (llama.cpp reports only the scored token's probability)")


def load_scored_model(spec: str, device) -> tuple[Any, Tokenizer, dict]:
    """A LANTERN run or checkpoint, or a pretrained model (transformers directory, GGUF, known
    name) imported onto LANTERN's model; with the checkpoint dict where there is one."""
    path = Path(spec)
    if (path.is_file() or is_run_directory(path)) and not is_gguf_file(path):
        return load_model(path, device=device)
    model, tokenizer = load_pretrained(spec)
    return model.to(device).eval(), tokenizer, {}


def check_depths(depths: list[int | None], config, checkpoint: dict) -> None:
    """Depth is a recursive model's dial; a stack of distinct layers run once has none."""
    if depths == [None]:
        return
    trained_deeper = bool((checkpoint.get("train_config") or {}).get("loop", {}).get("depth_schedule"))
    if config.steps_per_block == 1 and not trained_deeper:
        raise LanternError(f"--depths applies to recursive models; this one has {config.num_blocks} "
                           "distinct blocks, each run once")


def score_file(args: argparse.Namespace) -> tuple[dict[str, Any], list[tuple[str, Tally]]]:
    spec = model_path(args.checkpoint)
    gguf = is_gguf_file(spec)
    check_args(args, gguf)
    depths = parse_depths(args.depths)
    for output in (args.output, args.calibration):
        if output:
            check_output_file(output, args.overwrite)
    data = Path(args.data)
    if not data.is_file() and not data.is_dir():
        raise LanternError(f"data file not found: {data}")
    if gguf and args.engine != "pytorch":
        # llama.cpp's server reports the next token's probabilities only for prompts shorter
        # than the context, so its windows are one token shorter than the model's context.
        context = int(gguf_summary(spec)["context_length"]) - 1
        with LlamaCppModel(spec, exact=True) as llm:
            if not data.is_file() or data.suffix in (".jsonl", ".bin"):
                raise LanternError("llama.cpp scores text files; give a text file, or --engine pytorch")
            tokens = llm.tokenize(data.read_text(encoding="utf-8"))[:args.max_tokens]
            plan = ScoringPlan(tokens, window_length(args, context),
                               first_known(llm.info.get("bos_id"), llm.eos_id))
            bar = progress_bar(len(plan.windows), "window", args.quiet)
            tally = score_with_llamacpp(llm, plan.windows, bar.update)
            bar.close()
            return plan.describe(spec, data, "llama.cpp", llm.detokenize), [("model", tally)]
    device = pick_device(args.device)
    model, tokenizer, checkpoint = load_scored_model(spec, device)
    check_depths(depths, model.config, checkpoint)
    tokens = load_tokens(data, tokenizer, quiet=args.quiet)[:args.max_tokens]
    plan = ScoringPlan(tokens, window_length(args, model.config.context_length),
                       first_known(tokenizer.bos_id, tokenizer.eos_id))
    if args.calibration and len(plan.windows) < 2:
        raise LanternError("--calibration needs at least two windows (one fits the temperature, "
                           "one reports); give more text or a shorter --context")
    calibrations = [Calibration() for _ in depths] if args.calibration else None
    bar = progress_bar(len(plan.windows), "window", args.quiet)
    tallies = score_windows(model, plan.windows, depths, args.batch_size, device, bar.update,
                            calibrations)
    bar.close()
    labels = ["model" if d is None else f"depth {d}" for d in depths]
    if calibrations is not None:
        plot_reliability(dict(zip(labels, calibrations, strict=True)), args.calibration)
        for tally, calibration in zip(tallies, calibrations, strict=True):
            tally.extra = calibration.figures()
    return plan.describe(spec, data, "pytorch", tokenizer.decode), list(zip(labels, tallies, strict=True))


def window_length(args: argparse.Namespace, model_context: int) -> int:
    if args.context and args.context > model_context:
        raise LanternError(f"--context {args.context} is longer than the model's "
                           f"{model_context}-token context")
    return args.context or model_context


def first_known(*ids: int | None) -> int | None:
    return next((i for i in ids if i is not None), None)


class ScoringPlan:
    """The token ids, the windows they are scored in, and what the report says about them."""

    def __init__(self, tokens, context: int, prefix: int | None) -> None:
        self.tokens = [int(t) for t in tokens]
        self.context, self.prefix = context, prefix
        self.windows: list[Window] = list(rolling_windows(self.tokens, context, prefix))
        if not self.windows:
            raise LanternError("the data holds too few tokens to score (at least 2 are needed "
                               "when the tokenizer has no BOS or EOS token)")

    def describe(self, spec: str, data: Path, engine: str, decode) -> dict[str, Any]:
        """The settings, with the UTF-8 bytes of the text scored (what bits per byte divide by)."""
        scored = self.tokens if self.prefix is not None else self.tokens[1:]
        return {"checkpoint": spec, "data": str(data), "engine": engine, "context": self.context,
                "windows": len(self.windows), "prefix_token": self.prefix,
                "first_token_scored": self.prefix is not None,
                "bytes": len(decode(scored).encode("utf-8"))}


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'':<10} {'tokens':>9} {'loss':>8} {'ppl':>10} {'bits/byte':>10} {'accuracy':>9}"]
    for row in rows:
        lines.append(f"{row['label']:<10} {row['tokens']:>9,} {row['loss']:>8.4f} "
                     f"{row['perplexity']:>10.3f} {row['bits_per_byte']:>10.4f} {row['accuracy']:>9.4f}")
    if rows and "ece" in rows[0]:
        lines.append(f"\n{'':<10} {'ECE':>7} {'T':>6} {'ECE at T':>9} {'AUROC 1-top1':>13} "
                     f"{'AUROC entropy':>14}   (wrong top-1 token; held-out half)")
        for row in rows:
            lines.append(f"{row['label']:<10} {row['ece']:>7.4f} {row['temperature']:>6.2f} "
                         f"{row['ece_after_temperature']:>9.4f} {row['auroc_wrong_1_minus_top1']:>13.4f} "
                         f"{row['auroc_wrong_entropy']:>14.4f}")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    settings = ScoreSettings(**typed_settings(args, ScoreSettings))  # untyped flags: its defaults
    info, tallies = score_file(argparse.Namespace(**{**vars(args), **dataclasses.asdict(settings)}))
    rows = [{"label": label, **tally.figures(info["bytes"]), **tally.extra} for label, tally in tallies]
    print(format_table(rows))
    if not info["first_token_scored"]:
        print("note: the tokenizer has no BOS or EOS token, so the first token is read, not scored",
              file=sys.stderr)
    if args.output:
        atomic_write_text(args.output, json.dumps({**info, "results": rows}, indent=2) + "\n")
    return 0
