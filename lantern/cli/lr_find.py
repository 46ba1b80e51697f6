"""`lantern lr-find`: a learning-rate range test with `lantern train`'s model, data and
optimizer flags; prints the curve, plots it and suggests a peak learning rate."""

from __future__ import annotations

import argparse
from pathlib import Path

from lantern.cli.from_config import DefaultsFormatter, add_config_flags
from lantern.errors import LanternError
from lantern.training.lr_find import find_learning_rate, write_curve
from lantern.training.settings import (
    FLAG_ALIASES,
    FLAG_SECTION,
    DataSection,
    LoopSection,
    LoraSection,
    ModelSection,
    OptimizerSection,
    PrecisionSection,
    TrainConfig,
)

# What a range test reads of a training run; the schedule, step count, evaluation and saving
# are the test's own.
SECTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "model": (ModelSection, ()), "data": (DataSection, ()),
    "optimizer": (OptimizerSection, ("learning_rate",)),
    "loop": (LoopSection, ("max_steps", "epochs")), "precision": (PrecisionSection, ()),
    "lora": (LoraSection, ()),
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "lr-find",
        help="learning-rate range test: loss against a growing learning rate, and a suggestion",
        description="Train a throw-away copy of the model `lantern train` would build with the "
        "same flags, raising the learning rate geometrically from --start_lr to --end_lr over "
        "--find_steps steps (stopping once the loss diverges); print the curve, plot it, and "
        "suggest a peak rate: where the smoothed loss falls fastest, before its minimum.",
        formatter_class=DefaultsFormatter,
    )
    for section, (cls, skip) in SECTIONS.items():
        add_config_flags(p.add_argument_group(section), cls, skip=skip, aliases=FLAG_ALIASES)
    test = p.add_argument_group("range test")
    test.add_argument("--start_lr", type=float, default=1e-6, help="first learning rate")
    test.add_argument("--end_lr", type=float, default=1.0, help="last learning rate")
    test.add_argument("--find_steps", type=int, default=100, help="steps, one rate each")
    test.add_argument("--plot", default="lr_find.png",
                      help="where the plot goes; the curve goes beside it as .jsonl")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(args).items() if k in FLAG_SECTION and v is not None}
    plot = Path(args.plot)
    if not plot.parent.is_dir():
        raise LanternError(f"--plot {plot}: the folder {plot.parent} does not exist")
    result = find_learning_rate(TrainConfig(**given), args.start_lr, args.end_lr, args.find_steps)
    table = write_curve(result, plot)
    shown = max(1, len(result.learning_rates) // 20)
    print(f"{'learning rate':>14}{'loss':>9}{'smoothed':>10}")
    for lr, loss, smooth in list(zip(result.learning_rates, result.losses, result.smoothed,
                                     strict=True))[::shown]:
        print(f"{lr:>14.3e}{loss:>9.3f}{smooth:>10.3f}")
    stopped = len(result.learning_rates) < args.find_steps
    print(f"{len(result.learning_rates)} steps{' (stopped: the loss diverged)' if stopped else ''}; "
          f"plot: {plot}; curve: {table}")
    print(f"suggested --learning_rate {result.suggestion:.2e}")
    return 0
