"""The metrics logger: JSON lines a user can plot, a progress bar, log lines, a loss curve.

Under torchrun only rank 0 has one; the other ranks get a silent logger.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text

LOG_FILE = "training_log.jsonl"
PLOT_FILE = "loss_curve.png"


class TrainingLog:
    """Appends one JSON object per line; on resume, drops lines past the resumed step.

    Appends are not fsynced one by one (`sync` flushes them at every checkpoint), so a crash can
    leave the last line half-written: reading skips such a line with a warning and keeps the rest.
    """

    def __init__(self, directory: Path, resume_step: int | None = None) -> None:
        self.path = directory / LOG_FILE
        if resume_step is not None and self.path.exists():
            kept = [record for record in self.records(warn=True)
                    if record.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def sync(self) -> None:
        """Make every line written so far durable (called before each checkpoint is written)."""
        if self.path.exists():
            with self.path.open("rb") as f:
                os.fsync(f.fileno())

    def records(self, warn: bool = False) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = [line for line in self.path.read_text(errors="replace").splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise LanternError(f"{self.path} line {number} is not JSON; the log is damaged "
                                       "beyond a half-written last line") from None
                if warn:
                    print(f"lantern: warning: the last line of {self.path} was cut off (a crash "
                          "while it was written); skipped it", file=sys.stderr)
        return records


def plot_losses(records: list[dict[str, Any]], path: Path) -> None:
    """Train and validation loss against step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


class MetricsLogger:
    """Averages the train loss over each `log_interval` steps, measures tokens/s (evaluations
    and saves excluded), and reports through the bar, the log lines and the JSONL file."""

    def __init__(self, directory: Path | None, log_interval: int, max_steps: int, start_step: int,
                 tokens_per_step: int, train_tokens: int, resumed: bool, quiet: bool) -> None:
        self.directory, self.log_interval, self.max_steps = directory, log_interval, max_steps
        self.tokens_per_step, self.train_tokens = tokens_per_step, train_tokens
        self.quiet = quiet or directory is None
        self.log = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.log = TrainingLog(directory, resume_step=start_step if resumed else None)
            if not resumed:
                self.log.path.unlink(missing_ok=True)
        self.bar = tqdm(total=max_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=self.quiet or None, file=sys.stderr)
        self.start = self.interval_start = time.perf_counter()
        self.interval_steps, self.interval_loss = 0, 0.0
        self.paused_total, self.paused_at = 0.0, None

    def say(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message)

    def epoch(self, step: int) -> float:
        return step * self.tokens_per_step / self.train_tokens

    def step(self, step: int, loss: float, lr: float) -> None:
        self.interval_steps += 1
        self.interval_loss += loss
        self.bar.update(1)
        if step % self.log_interval and step != self.max_steps:
            return
        now = time.perf_counter()
        seconds = max(now - self.interval_start, 1e-9)
        rate = self.interval_steps * self.tokens_per_step / seconds
        mean_loss = self.interval_loss / self.interval_steps
        self.bar.set_postfix(loss=f"{mean_loss:.4f}", tok_s=f"{rate:,.0f}")
        self.say(f"Iter {step:>6}/{self.max_steps} | Loss: {mean_loss:.4f} | LR: {lr:.2e} | "
                 f"Speed: {self.interval_steps / seconds:.1f} it/s, {rate:,.0f} tok/s")
        self.write({"step": step, "epoch": self.epoch(step), "train_loss": mean_loss,
                    "learning_rate": lr, "elapsed_time": now - self.start, "tokens_per_second": rate})
        self.interval_start, self.interval_steps, self.interval_loss = now, 0, 0.0

    def evaluation(self, step: int, metrics: dict[str, float], sample: str | None) -> None:
        self.say(f"Eval step {step} | val_loss {metrics['val_loss']:.4f} | "
                 f"perplexity {metrics['val_perplexity']:.2f} | "
                 f"accuracy {100 * metrics['val_accuracy']:.1f}%")
        if sample is not None:
            self.say(f"  Sample: {sample[:300]!r}")
        self.write({"step": step, **metrics, "train_time": self.train_time()})
        if self.log is not None:
            plot_losses(self.log.records(), self.log.path.parent / PLOT_FILE)

    def write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def sync(self) -> None:
        if self.log is not None:
            self.log.sync()

    @contextmanager
    def excluded(self) -> Iterator[None]:
        """Time spent in the block (evaluations, saves) does not count against the speed."""
        start = self.paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.interval_start += time.perf_counter() - start
            self.paused_total += time.perf_counter() - start
            self.paused_at = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def train_time(self) -> float:
        """Seconds this process has spent training, evaluations and saves left out: the clock
        of a time-to-quality comparison (written with each evaluation)."""
        now = self.paused_at if self.paused_at is not None else time.perf_counter()
        return now - self.start - self.paused_total

    def close(self) -> None:
        self.bar.close()
