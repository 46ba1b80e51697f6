"""Stepwise internalization (Deng, Choi & Shieber 2024): teach a host to answer without writing
its thinking, by removing the thinking from the left a reasoning step at a time.

Stage j of K (K = the problems' reasoning steps) trains on `question <think> steps j+1..K
</think> answer <eos>`, so stage K's rows are the no-think form `question <think> </think>
answer`. Each stage starts a fresh AdamW and learning-rate schedule: the moments gathered for one
stage's rows would push the next stage's first updates the old way. With removal smoothing λ a
row removes o steps more, o ~ P(o) ∝ exp(−λ·o) capped by the steps left, so the rows of the
next stages are seen before their stage comes. No TRM and no latent slot are involved: this is
the baseline a TRM must beat at answering without thinking tokens.
"""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lantern.errors import LanternError
from lantern.fileio import check_replaceable_directory
from lantern.models.lantern_model import IGNORE_INDEX
from lantern.training.loop import RunSettings, SeededPhase, TrainingLoop, Updates, start_run
from lantern.training.optim import LRSchedule, make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection, ScheduleSection
from lantern.trm.host import LanternHost, load_host
from lantern.trm.host_training import thinking_targets
from lantern.trm.problems import STEP_SEPARATOR, Problem, read_problems
from lantern.trm.settings import InternalizeConfig

COMMAND = "lantern trm internalize"

def step_count(problems: list[Problem], path: str) -> int:
    """K, the reasoning steps every problem has; refused by name when one has none or another
    count (stage j removes the same j steps from every row)."""
    counts = [len(p.steps) for p in problems]
    for number, (p, count) in enumerate(zip(problems, counts, strict=True), 1):
        if count == 0:
            raise LanternError(f"{path}:{number}: {p.question!r} has no thinking to internalize")
        if count != counts[0]:
            raise LanternError(f"{path}: problems have different numbers of reasoning steps "
                               f"({problems[0].question!r} {counts[0]}, line {number} "
                               f"{p.question!r} {count}); internalization removes the same steps "
                               "from every problem")
    return counts[0]


def extra_removal(rng: random.Random, smoothing: float, left: int) -> int:
    """Removal smoothing's offset: o ~ P(o) ∝ exp(−λ·o), o = 0, 1, ... (a geometric draw by
    inverting its tail P(o >= k) = exp(−λ·k)), capped at the `left` steps; 0 when off."""
    if smoothing == 0 or left == 0:
        return 0
    return min(left, int(-math.log(1.0 - rng.random()) / smoothing))


def without_steps(problem: Problem, removed: int) -> Problem:
    """The problem with its first `removed` reasoning steps taken out of the thinking."""
    return Problem(problem.question, STEP_SEPARATOR.join(problem.steps[removed:]), problem.answer)


def stage_batch(host: LanternHost, problems: list[Problem], stage: int, smoothing: float,
                rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(ids, next-token targets from the first token after `<think>` on, steps removed per
    row) of stage `stage`'s rows for these problems."""
    removed = [stage + extra_removal(rng, smoothing, len(p.steps) - stage) for p in problems]
    segments = [host.segments(without_steps(p, r)) for p, r in zip(problems, removed, strict=True)]
    ids, targets = thinking_targets([s.full for s in segments], [len(s.context) for s in segments],
                                    host.tokenizer.pad_id)
    return ids, targets, removed


@torch.no_grad()
def stage_accuracy(host: LanternHost, problems: list[Problem]) -> dict[str, float]:
    """Greedy exact match prompted with `question <think>` (the host writes what thinking it
    still writes, then the answer) and with `question <think> </think>` (the no-think form)."""
    segments = [host.segments(p) for p in problems]
    room = host.context_length
    think = host.complete([s.context for s in segments], room)
    no_think = host.complete([s.context + s.close for s in segments], room)
    answers = [p.answer for p in problems]
    return {
        "accuracy": sum(host.answer_of(t) == a for t, a in zip(think, answers, strict=True))
        / len(answers),
        "generated_tokens": sum(len(t) for t in think) / len(think),
        "no_think_accuracy": sum(host.answer_of(t) == a for t, a in zip(no_think, answers,
                                                                         strict=True)) / len(answers),
    }


def starting_host(cfg: InternalizeConfig, problems: list[Problem], device: torch.device
                  ) -> LanternHost:
    """The host made by `lantern trm host`, trainable, checked to read every problem whole."""
    host = load_host(cfg.host, device)
    if not isinstance(host, LanternHost) or host.slot is None:
        raise LanternError(f"--host {cfg.host} is not a host made by `lantern trm host`")
    missing = sorted({c for p in problems for c in p.question + p.thinking + p.answer
                      if host.tokenizer.token_to_id(c) is None})
    if missing:
        raise LanternError(f"the problems use characters the host's vocabulary lacks: "
                           f"{''.join(missing)!r}")
    longest = max(len(host.segments(p).full) for p in problems)
    if longest >= host.context_length:
        raise LanternError(f"the longest problem needs {longest} tokens and one to generate; the "
                           f"host reads {host.context_length}")
    host.model.requires_grad_(True)
    return host


class StageSchedule(LRSchedule):
    """Warmup and cosine within each stage: the schedule restarts with every stage."""

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        return super().apply(optimizer, step % self.max_steps)


class InternalizePhase(SeededPhase):
    """Stepwise internalization as a phase of the training loop: `steps_per_stage` steps per
    stage, the optimizer's moments forgotten at each stage's start, the held-out accuracy
    measured before training and after each stage."""

    def __init__(self, host: LanternHost, problems: list[Problem], val: list[Problem], stages: int,
                 cfg: InternalizeConfig, precision: Precision, say: Callable[[str], None]) -> None:
        self.host, self.problems, self.val, self.stages = host, problems, val, stages
        self.cfg, self.precision, self.say = cfg, precision, say
        self.model = host.model
        self.rng = random.Random(cfg.seed)

    def step(self, index: int, updates: Updates) -> list[dict]:
        cfg, host, model = self.cfg, self.host, self.model
        records = []
        if index == 0 and self.val:
            model.eval()
            records.append({"stage": 0, "step": 0, **stage_accuracy(host, self.val)})
        stage, stage_step = index // cfg.steps_per_stage + 1, index % cfg.steps_per_stage
        if stage_step == 0:
            updates.restart_optimizer()
        model.train()
        picks = [self.problems[self.rng.randrange(len(self.problems))] for _ in range(cfg.batch_size)]
        ids, targets, removed = stage_batch(host, picks, stage, cfg.removal_smoothing, self.rng)
        device = self.precision.device
        with self.precision.autocast():
            logits = model.lm_head(host.forward(ids.to(device)))
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(),
                                   ignore_index=IGNORE_INDEX)
        updates(loss)
        record = {"stage": stage, "step": index + 1, "lr": updates.lr, "train_loss": loss.item(),
                  "mean_steps_removed": sum(removed) / len(removed)}
        if stage_step + 1 == cfg.steps_per_stage and self.val:
            model.eval()
            record.update(stage_accuracy(host, self.val))
            self.say(f"stage {stage}/{self.stages}: loss {loss.item():.4f} accuracy "
                     f"{record['accuracy']:.3f} no-think {record['no_think_accuracy']:.3f}")
        records.append(record)
        return records


def run_settings(cfg: InternalizeConfig, quiet: bool = False) -> RunSettings:
    return RunSettings(Path(cfg.output_dir), COMMAND, cfg.save_interval or cfg.steps_per_stage,
                       cfg.resume_from, cfg.overwrite, ("final_model.pt",), "a trained host",
                       quiet=quiet)


def refuse_output_dir(cfg: InternalizeConfig) -> None:
    """The output may not be the host's own directory, nor a directory holding anything unless
    --overwrite (the run replaces it whole) or --resume_from (it continues the run there)."""
    out = Path(cfg.output_dir)
    source = Path(cfg.host).resolve()
    host_dir = source if source.is_dir() else source.parent
    if out.resolve() == host_dir or out.resolve() in host_dir.parents:
        raise LanternError(f"--output_dir {out} holds the --host it starts from; choose another "
                           "directory")
    if out.exists() and not out.is_dir():
        raise LanternError(f"--output_dir {out} is a file")
    if cfg.resume_from:
        return
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        held = "a trained host" if (out / "final_model.pt").exists() else "files"
        raise LanternError(f"{out} already holds {held}; pass --overwrite to replace it, "
                           f"--resume_from {out} to continue it, or pick another --output_dir")
    check_replaceable_directory(out)


def internalize(cfg: InternalizeConfig, quiet: bool = False) -> Path:
    """Run (or continue) every stage and write a run directory `load_host` and `lantern trm
    eval` accept."""
    out = Path(cfg.output_dir)
    refuse_output_dir(cfg)
    resume = start_run(run_settings(cfg))
    problems = read_problems(cfg.problems)
    stages = step_count(problems, cfg.problems)
    val = read_problems(cfg.val_problems)[:cfg.eval_problems or 200] if cfg.val_problems else []
    precision = Precision(PrecisionSection(cfg.device, cfg.dtype))
    host = starting_host(cfg, problems + val, precision.device)
    torch.manual_seed(cfg.seed)
    say = (lambda *a: None) if quiet else tqdm.write
    say(f"internalizing {stages} reasoning steps, {cfg.steps_per_stage} steps per stage, "
        f"{len(problems)} problems, removal smoothing {cfg.removal_smoothing}")
    phase = InternalizePhase(host, problems, val, stages, cfg, precision, say)
    optimizer = make_optimizer(host.model, OptimizerSection(cfg.learning_rate, cfg.weight_decay))
    schedule = StageSchedule(ScheduleSection(cfg.warmup_steps, cfg.min_lr), cfg.learning_rate,
                             cfg.steps_per_stage)
    if resume is None and out.is_dir() and any(out.iterdir()):  # --overwrite, checked above
        shutil.rmtree(out)
    started = time.time()
    TrainingLoop(phase, run_settings(cfg, quiet), stages * cfg.steps_per_stage, optimizer, precision,
                 schedule, cfg.grad_clip, dataclasses.asdict(cfg), resume).run()
    host.model.eval()
    host.save_run(out, dataclasses.asdict(cfg), stages * cfg.steps_per_stage)
    say(f"internalized host saved to {out} ({time.time() - started:.0f}s)")
    return out
