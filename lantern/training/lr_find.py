"""A learning-rate range test: one short run whose learning rate grows geometrically each step.

The loss falls slowly while the rate is too small, fastest where the rate suits the model, and
blows up once it is too large; a good peak rate sits below the loss's minimum (Smith, "Cyclical
Learning Rates", 2017). The run trains a throw-away copy of the model the run's settings build,
so nothing is written but the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text
from lantern.training.settings import TrainConfig
from lantern.training.trainer import Trainer

SMOOTHING = 0.9  # exponential average of the loss (about 10 steps), debiased: the curve to read
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its minimum


@dataclass(frozen=True)
class RangeTest:
    """The curve: learning rate, raw and smoothed loss per step; and the suggested rate."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]

    @property
    def suggestion(self) -> float:
        """The rate where the smoothed loss falls fastest against log(rate), up to its minimum:
        the model learns quickly there and is still far from diverging (the minimum itself
        lies near the edge)."""
        best = min(range(len(self.smoothed)), key=self.smoothed.__getitem__)
        if best == 0:
            return self.learning_rates[0]
        logs = [math.log(lr) for lr in self.learning_rates]
        slopes = [(self.smoothed[i + 1] - self.smoothed[i]) / (logs[i + 1] - logs[i])
                  for i in range(best)]
        return self.learning_rates[min(range(best), key=slopes.__getitem__)]

    def to_json_lines(self) -> str:
        rows = zip(self.learning_rates, self.losses, self.smoothed, strict=True)
        return "".join(f'{{"learning_rate": {lr:.6g}, "loss": {loss:.6g}, "smoothed": {s:.6g}}}\n'
                       for lr, loss, s in rows)


def rates(start: float, end: float, steps: int) -> list[float]:
    """`steps` learning rates from `start` to `end`, evenly spaced in log scale."""
    if not 0 < start < end:
        raise LanternError(f"--start_lr must be positive and below --end_lr (got {start} and {end})")
    if steps < 2:
        raise LanternError(f"--find_steps must be at least 2 (got {steps})")
    ratio = math.log(end / start) / (steps - 1)
    return [start * math.exp(ratio * i) for i in range(steps)]


def find_learning_rate(cfg: TrainConfig, start: float, end: float, steps: int,
                       quiet: bool = False) -> RangeTest:
    """Train with each of `rates(start, end, steps)` for one step in turn; stop early when the
    loss diverges."""
    schedule = rates(start, end, steps)
    if cfg.checkpoint.resume_from:
        raise LanternError("a range test starts from fresh weights; drop --resume_from")
    trainer = Trainer(cfg, quiet=True, run_directory=False)
    accum = cfg.loop.grad_accum
    tried, losses, smoothed = [], [], []
    average, lowest = 0.0, math.inf
    bar = tqdm(schedule, desc="lr-find", unit="step", disable=quiet, leave=False)
    for step, lr in enumerate(bar):
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        loss = float(sum(trainer.micro_step(sync=i == accum - 1) for i in range(accum)) / accum)
        trainer.precision.step(trainer.optimizer, trainer.model.parameters(),
                               cfg.optimizer.grad_clip)
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        value = average / (1 - SMOOTHING ** (step + 1))
        tried.append(lr)
        losses.append(loss)
        smoothed.append(value)
        lowest = min(lowest, value)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{value:.3f}")
        if value > DIVERGED * lowest:
            break
    bar.close()
    if not tried:
        raise LanternError(f"the loss was not finite at the first rate {start}; lower --start_lr")
    return RangeTest(tried, losses, smoothed)


def write_curve(result: RangeTest, plot: Path) -> Path:
    """The curve as JSON lines beside the plot (`lr_find.png` -> `lr_find.jsonl`) and the
    plot itself: smoothed loss against the learning rate on a log axis, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = plot.with_suffix(".jsonl")
    atomic_write_text(table, result.to_json_lines())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.learning_rates, result.smoothed, label="smoothed loss")
    ax.plot(result.learning_rates, result.losses, alpha=0.3, label="loss")
    ax.axvline(result.suggestion, color="tab:red", linestyle="--",
               label=f"suggested {result.suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    atomic_write(plot, lambda file: fig.savefig(file, format="png"))
    plt.close(fig)
    return table
