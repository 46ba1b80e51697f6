"""One training loop for every LLM-TRM phase: what each needs and nothing phase-specific.

A phase (the compressor, the host, the TRM, GRPO, stepwise internalization) is a `Phase`: it
supplies its model, one step of work, and its own resumable state (data order and position, its
RNGs, its best-so-far). `TrainingLoop` owns the rest: counting steps toward the planned total;
Ctrl-C / SIGTERM finishing the current step, saving and naming the command that continues; a
resumable `checkpoint_step_N.pt` every `save_interval` steps (atomic, tensors and plain data
only); exact resume (weights, optimizer, schedule position, EMA, every RNG, the phase's state, the
log); a non-finite loss stopping before it reaches the weights; the refusal to write over a run;
the progress bar and the JSONL log. A step may make several optimizer updates (one per TRM
supervision step, one per GRPO iteration): each goes through `Updates`, which checks its loss on
every process before the backward pass.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from lantern.checkpoint import load_checkpoint, step_checkpoints
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text, make_output_directory
from lantern.training.checkpointer import Checkpointer
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.logs import TrainingLog
from lantern.training.optim import LRSchedule
from lantern.training.precision import Precision
from lantern.training.settings import ScheduleSection


class StopRequest:
    """Turns Ctrl-C / SIGTERM into a request the loop honours at the next step boundary;
    a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class NonFiniteLoss(Exception):
    """A loss that must not reach the weights; the loop turns it into a stop."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


class Updates:
    """The optimizer updates of a run. Each loss is checked on every process before its
    backward pass, so a NaN or infinite loss never changes a weight; `count` is the schedule's
    position (a step may make several updates, or fewer when a TRM batch halts early)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision,
                 schedule: LRSchedule, grad_clip: float, ema: EMA | None, dist: Distributed) -> None:
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.schedule, self.grad_clip, self.ema, self.dist = schedule, grad_clip, ema, dist
        self.count, self.lr = 0, 0.0

    def __call__(self, loss: torch.Tensor) -> float:
        """Check, backward, clip, step, average; returns this process's loss."""
        value = loss.item()
        if not math.isfinite(self.dist.sum([value], self.precision.device)[0]):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(value)
        self.lr = self.schedule.apply(self.optimizer, self.count)
        self.precision.backward(loss)
        self.precision.step(self.optimizer, self.model.parameters(), self.grad_clip)
        self.count += 1
        if self.ema is not None:
            self.ema.update()
        return value

    def restart_optimizer(self) -> None:
        """Forget the optimizer's moments, as a fresh one would (a new internalization stage)."""
        self.optimizer.state.clear()


class Phase(Protocol):
    """What a phase gives the loop."""

    model: nn.Module  # every weight the phase trains (what checkpoints hold)

    def step(self, index: int, updates: Updates) -> list[dict[str, Any]]:
        """Step `index` (0-based): its updates, then any evaluation due after it; returns the
        records for the JSONL log."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data: what continuing exactly needs beyond the loop's parts."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def restore_random(rng: random.Random, state: Any) -> None:
    """Set `rng` to a state saved from `rng.getstate()`: a checkpoint keeps tuples as lists."""
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


class SeededPhase:
    """A phase whose state, beyond the weights and the optimizer, is its random generator (the
    order it draws examples in): saved and restored with every checkpoint."""

    rng: random.Random

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_random(self.rng, state["rng"])


@dataclass
class RunSettings:
    """Where a phase writes, how far it goes, and how it may start there."""

    output_dir: Path
    command: str  # e.g. "lantern trm train": how the interruption message says to continue
    save_interval: int
    resume_from: str | None = None
    overwrite: bool = False
    results: tuple[str, ...] = ()  # the phase's result files: a run is there when one exists
    results_name: str | None = None  # what a refusal calls them (default: their names)
    prefix: str = ""  # before `checkpoint_step_N.pt`, for phases that share a directory
    quiet: bool = False


KEEP_CHECKPOINTS = 2  # the newest resumable checkpoints a run keeps
def read_resume(resume_from: str | Path, prefix: str, command: str) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of this phase in a directory (or the file named), read safely."""
    path = Path(resume_from)
    if path.is_dir():
        found = step_checkpoints(path, prefix)
        if not found:
            raise LanternError(f"--resume_from {path}: no {prefix}checkpoint_step_N.pt to resume "
                               "from there")
        path = found[-1][1]
    state = load_checkpoint(path)
    if state.get("phase") != command or "optimizer_state_dict" not in state:
        raise LanternError(f"--resume_from {path} is not a checkpoint of `{command}`")
    return path, state


def resumed_settings(given: dict[str, Any], prefix: str, command: str,
                     fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings saved with the checkpoint `given["resume_from"]` names, the flags given now
    taking precedence; a flag in `fixed` (it shaped the weights) may not change."""
    if given.get("overwrite"):
        raise LanternError("--overwrite starts afresh and --resume_from continues; give one")
    file, state = read_resume(given["resume_from"], prefix, command)
    saved = dict(state["train_config"])
    changed = [name for name in fixed if name in given and given[name] != saved.get(name)]
    if changed:
        was = ", ".join(f"--{name} {saved.get(name)}" for name in changed)
        raise LanternError(f"--{', --'.join(changed)} cannot change when resuming: the weights in "
                           f"{file} were made with {was}")
    merged = {**saved, **given, "resume_from": str(file), "overwrite": False}
    if "output_dir" not in given:
        merged["output_dir"] = str(file.parent)
    return merged


def start_run(settings: RunSettings) -> tuple[Path, dict[str, Any]] | None:
    """Before any work: the checkpoint to resume (its path and contents), or the refusal to
    write over a run. Under torchrun every rank calls it, then they agree (rank 0 writes only
    once the loop runs)."""
    out = settings.output_dir
    if settings.resume_from:
        return read_resume(settings.resume_from, settings.prefix, settings.command)
    if out.exists() and not out.is_dir():
        raise LanternError(f"--output_dir {out} exists and is not a directory")
    results = [name for name in settings.results if (out / name).exists()]
    found = (settings.results_name or ", ".join(results)) if results else None
    if step_checkpoints(out, settings.prefix):
        found = found or f"an interrupted run ({settings.prefix}checkpoint_step_N.pt)"
    if found and not settings.overwrite:
        raise LanternError(f"{out} already holds {found}; pass "
                           f"--overwrite to replace it, --resume_from {out} to continue it, or "
                           "pick another --output_dir")
    return None


class TrainingLoop:
    """Runs a phase to `planned_steps`, from its start or from the checkpoint `resume` names."""

    def __init__(self, phase: Phase, settings: RunSettings, planned_steps: int,
                 optimizer: torch.optim.Optimizer, precision: Precision, schedule: LRSchedule,
                 grad_clip: float, train_config: dict[str, Any],
                 resume: tuple[Path, dict[str, Any]] | None, ema: EMA | None = None,
                 dist: Distributed | None = None) -> None:
        self.phase, self.settings, self.planned = phase, settings, planned_steps
        self.dist = dist or Distributed()
        self.updates = Updates(phase.model, optimizer, precision, schedule, grad_clip, ema, self.dist)
        self.checkpointer = Checkpointer(settings.output_dir, self.dist,
                                         {"train_config": train_config, "phase": settings.command})
        self.say = (lambda *a: None) if settings.quiet or not self.dist.is_main else tqdm.write
        self.step, self.records, self.resumed = 0, 0, resume is not None
        if resume is not None:
            self.restore(*resume)

    def restore(self, file: Path, state: dict[str, Any]) -> None:
        self.phase.model.load_state_dict(state["model_state_dict"])
        self.checkpointer.restore(state, self.phase.model, self.updates.optimizer,
                                  self.updates.precision, self.updates.ema)
        self.phase.load_state_dict(state["phase_state"])
        self.step, self.records = int(state["step"]), int(state["log_records"])
        self.updates.count = int(state["updates"])
        self.checkpointer.last_saved = file

    def open_log(self) -> TrainingLog | None:
        """Rank 0's log: fresh, or cut back to the lines the resumed checkpoint had written (and
        the run's checkpoints past it removed)."""
        out = self.settings.output_dir
        if not self.dist.is_main:
            return None
        log = TrainingLog(out)
        if not self.resumed:
            log.path.unlink(missing_ok=True)
            for _, path in step_checkpoints(out, self.settings.prefix):  # an --overwrite'n run's
                path.unlink()
        else:
            kept = log.records(warn=True)[:self.records]
            atomic_write_text(log.path, "".join(json.dumps(r) + "\n" for r in kept))
            for step, path in step_checkpoints(out, self.settings.prefix):
                if step > self.step:  # a later state of the run, given up by resuming before it
                    path.unlink()
        return log

    def run(self) -> None:
        """Train to the planned step; raises KeyboardInterrupt after saving on Ctrl-C, and
        LanternError on a non-finite loss."""
        if self.dist.is_main:
            kind = self.settings.command.removeprefix("lantern ").replace(" ", "-")
            make_output_directory(self.settings.output_dir, kind)
            self.checkpointer.remove_stale_leftovers()
        log = self.open_log()
        if self.resumed:
            self.say(f"Resumed from {self.checkpointer.last_saved} at step {self.step}")
        quiet = self.settings.quiet or not self.dist.is_main
        bar = tqdm(total=self.planned, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=quiet or None, file=sys.stderr)
        try:
            with StopRequest() as stop:
                while self.step < self.planned:
                    try:
                        records = self.phase.step(self.step, self.updates)
                    except NonFiniteLoss as exc:
                        raise self.nonfinite(exc.value) from None
                    self.step += 1
                    self.write(log, records, bar)
                    if self.step % self.settings.save_interval == 0 or self.step == self.planned:
                        self.save(log)
                    if self.dist.sum([float(stop.requested)], self.updates.precision.device)[0]:
                        self.stop_here(log, bar)
        finally:
            bar.close()

    def write(self, log: TrainingLog | None, records: list[dict[str, Any]], bar: tqdm) -> None:
        bar.update(1)
        for record in records:
            loss = record.get("train_loss", record.get("loss"))
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.4f}")
            if log is not None:
                log.write(record)
                self.records += 1

    def save(self, log: TrainingLog | None) -> Path:
        """A resumable checkpoint of this step. Only the newest KEEP_CHECKPOINTS stay (a run of
        hundreds of epochs, a checkpoint each, would otherwise fill the disk)."""
        if log is not None:
            log.sync()  # the log up to this step is on disk before the checkpoint that resumes it
        path = self.checkpointer.save(
            f"{self.settings.prefix}checkpoint_step_{self.step}.pt", self.step, self.phase.model,
            {"phase_state": self.phase.state_dict(), "updates": self.updates.count,
             "log_records": self.records, "planned_steps": self.planned},
            self.updates.optimizer, self.updates.precision, self.updates.ema)
        if self.dist.is_main:
            found = step_checkpoints(self.settings.output_dir, self.settings.prefix)
            for _, old in found[:-KEEP_CHECKPOINTS]:
                old.unlink()
        return path

    def nonfinite(self, value: float) -> LanternError:
        last = self.checkpointer.last_saved
        return LanternError(f"loss became {value} at step {self.step + 1}; nothing was saved "
                            f"after it; last good checkpoint: {last or 'none'}")

    def stop_here(self, log: TrainingLog | None, bar: tqdm) -> None:
        saved = self.checkpointer.last_saved
        if saved is None or saved.name != f"{self.settings.prefix}checkpoint_step_{self.step}.pt":
            saved = self.save(log)
        bar.close()
        self.say(f"\nInterrupted: saved {saved}; continue with "
                 f"`{self.settings.command} --resume_from {self.settings.output_dir}`")
        raise KeyboardInterrupt


def constant_schedule(learning_rate: float) -> LRSchedule:
    """A schedule that holds the learning rate (for phases trained at one rate)."""
    return LRSchedule(ScheduleSection(0, learning_rate), learning_rate, 1)
