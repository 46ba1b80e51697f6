"""`lantern train`: argument parsing only; the work is lantern.training.trainer.

Under torchrun every process runs this; rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import os

from lantern.cli.from_config import add_config_flags
from lantern.config import PRESET_DESCRIPTIONS
from lantern.training.distributed import run_worker
from lantern.training.settings import CONFIG_FILE, FLAG_ALIASES, FLAG_SECTION, SECTIONS, read_config_file
from lantern.training.trainer import TrainConfig, Trainer, resolve_resume


def add_parser(subparsers) -> None:
    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_DESCRIPTIONS.items())
    p = subparsers.add_parser(
        "train",
        help="train a model (built-in story corpus when no data is given)",
        description="Train a language model. With no data path it trains on the built-in "
        "procedural story corpus. Every flag's default is shown in brackets. Under torchrun "
        "(--nproc_per_node N -m lantern train) every process runs this command.",
        epilog=f"Presets: {presets}",
    )
    for section, cls in SECTIONS.items():
        add_config_flags(p.add_argument_group(section), cls, aliases=FLAG_ALIASES)
    p.add_argument("--config_file",
                   help=f"settings from a JSON or YAML file, e.g. a run's {CONFIG_FILE} (flags "
                   "given with it win)")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(args).items() if k in FLAG_SECTION and v is not None}
    quiet = int(os.environ.get("RANK", 0)) != 0  # under torchrun, rank 0 alone reports
    return run_worker(lambda: Trainer(resolve_config(args.config_file, given), quiet=quiet).fit())


def resolve_config(config_file: str | None, given: dict) -> TrainConfig:
    settings = {**(read_config_file(config_file) if config_file else {}), **given}
    if settings.get("resume_from"):
        return resolve_resume(settings)[0]
    return TrainConfig(**settings)


