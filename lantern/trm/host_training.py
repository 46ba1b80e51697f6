"""Train a LANTERN host for LLM-TRM: character tokens, `<think> ... </think>` reasoning, and K
step-aligned latent slots (Coconut style).

Each step sees every problem of the batch twice:
- full thinking, `question <think> steps </think> answer`, next-token loss after the question;
- a mixed row, `question <think> <lat>*j [steps j+1..K] </think> answer` with j drawn from 1..K,
  whose slot k carries the host's own final state at the boundary of reasoning step k (its `;`,
  or `</think>` for the last) from the first pass; loss on everything after the slots. With
  K = 1 that is `question <think> <lat> </think> answer` with the `</think>` state. The slot
  loss's gradient flows back into those states too (as Coconut trains its continuous thoughts
  end to end), so the full pass learns to gather each step's result into its boundary state,
  the states the TRM will predict; `detach_teacher_state` stops it (fixed teacher, CODI style).
Because the slots sit in the sequence, every later token attends to them. Optionally a share of
rows is also shown as `question <think> </think> answer` (no thinking), so the no-thinking
baseline is trained rather than out of distribution.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lantern.config import preset_config
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.models.lantern_model import IGNORE_INDEX, LANTERNModel
from lantern.training.loop import RunSettings, SeededPhase, TrainingLoop, Updates, start_run
from lantern.training.optim import LRSchedule, make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection, ScheduleSection
from lantern.trm.host import LanternHost, LatentSlot, Segments, host_tokenizer, load_host, pad_right
from lantern.trm.problems import Problem, read_problems
from lantern.trm.settings import HostTrainConfig

COMMAND = "lantern trm host"
SHAPE_FLAGS = ("hidden_size", "num_heads", "num_blocks", "steps_per_block", "mlp_hidden_size",
               "mlp", "norm", "position", "dropout")


def thinking_targets(sequences: list[list[int]], start: list[int], pad_id: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, targets): next-token targets from position start[i] on, -100 elsewhere."""
    ids = pad_right(sequences, pad_id)
    targets = torch.full_like(ids, IGNORE_INDEX)
    for row, (seq, first) in enumerate(zip(sequences, start, strict=True)):
        targets[row, first - 1:len(seq) - 1] = torch.as_tensor(seq[first:])
    return ids, targets


def slot_batch(rows: list[tuple[list[int], list[int]]], states: list[torch.Tensor], pad_id: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, targets, slot states (B, S, D), slot index (B, S), -1 where a row has fewer slots)
    for rows of (ids, slot positions); the loss covers every token after a row's last slot."""
    ids, targets = thinking_targets([r for r, _ in rows], [p[-1] + 1 for _, p in rows], pad_id)
    width = max(len(p) for _, p in rows)
    index = torch.full((len(rows), width), -1, dtype=torch.long)
    slot_states = states[0].new_zeros(len(rows), width, states[0].shape[-1])
    for row, ((_, positions), state) in enumerate(zip(rows, states, strict=True)):
        index[row, :len(positions)] = torch.as_tensor(positions)
        slot_states[row, :len(positions)] = state
    return ids.to(device), targets.to(device), slot_states, index.to(device)


def host_losses(host: LanternHost, batch: list[Segments], no_think: list[bool], latent_weight: float,
                device: torch.device, detach: bool = False, replaced: list[int] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """Full-thinking loss plus `latent_weight` x the mixed rows' loss; row i's mixed row has its
    first `replaced[i]` steps in slots (all K by default)."""
    pad = host.tokenizer.pad_id
    rows = [s.no_think if skip else s.full for s, skip in zip(batch, no_think, strict=True)]
    ids, targets = thinking_targets(rows, [len(s.context) for s in batch], pad)
    h = host.forward(ids.to(device))
    logits = host.model.lm_head(h)
    full_loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten(),
                                ignore_index=IGNORE_INDEX)
    metrics = {"full_loss": full_loss.item()}
    thinking_rows = [i for i, skip in enumerate(no_think) if not skip]
    if latent_weight == 0 or not thinking_rows:
        return full_loss, metrics
    mixed, states = [], []
    for i in thinking_rows:
        j = host.num_slots if replaced is None else replaced[i]
        mixed.append(host.slot_sequence(batch[i], j))
        state = h[i, torch.tensor(batch[i].boundaries[:j], device=device)]
        states.append(state.detach() if detach else state)
    # Rows with every step in slots are short: run them apart from the long ones (less padding).
    total, count = 0.0, 0
    for group in ([r for r, j in enumerate(mixed) if len(j[1]) == host.num_slots],
                  [r for r, j in enumerate(mixed) if len(j[1]) < host.num_slots]):
        if not group:
            continue
        ids, targets, slot_states, index = slot_batch([mixed[r] for r in group],
                                                      [states[r] for r in group], pad, device)
        slot_logits = host.model.lm_head(host.forward(ids, slot_states, index))
        total = total + F.cross_entropy(slot_logits.flatten(0, 1).float(), targets.flatten(),
                                        ignore_index=IGNORE_INDEX, reduction="sum")
        count += int((targets != IGNORE_INDEX).sum())
    slot_loss = total / count
    metrics["slot_loss"] = slot_loss.item()
    return full_loss + latent_weight * slot_loss, metrics


def boundary_states(host: LanternHost, segments: list[Segments], batch_size: int = 16
                    ) -> list[torch.Tensor]:
    """Per problem, (K, D): the host's final states at its K step boundaries (one full forward
    over the gold thinking): what the slots carry in `oracle` mode and what the TRM predicts."""
    states = host.states_of([s.full for s in segments], -1, batch_size)
    return [st[s.boundaries] for st, s in zip(states, segments, strict=True)]


@torch.no_grad()
def host_accuracy(host: LanternHost, segments: list[Segments], answers: list[str],
                  max_new_tokens: int) -> dict[str, float]:
    """Exact-match accuracy thinking in full, and with the host's own states in all K slots."""
    full = host.complete([s.context for s in segments], max_new_tokens)
    full_acc = sum(host.answer_of(t) == a for t, a in zip(full, answers, strict=True))
    prompts = [host.slot_prompt(seg) for seg in segments]
    slot = host.complete([p for p, _ in prompts], max_new_tokens, boundary_states(host, segments),
                         [i for _, i in prompts])
    slot_acc = sum(host.answer_of(t) == a for t, a in zip(slot, answers, strict=True))
    return {"full_accuracy": full_acc / len(answers), "slot_accuracy": slot_acc / len(answers)}


def start_from(path: str, tokenizer, context: int, shape: dict, device: torch.device,
               slots: int = 1) -> LanternHost:
    """A trained host to continue from: same vocabulary, room for the problems, no new shape."""
    if shape:
        raise LanternError(f"--init_from keeps the shape of the host it starts from; drop "
                           f"--{', --'.join(shape)}")
    host = load_host(path, device)
    if not isinstance(host, LanternHost) or host.slot is None:
        raise LanternError(f"--init_from {path} is not a host made by `lantern trm host`")
    if host.tokenizer.to_json() != tokenizer.to_json():
        raise LanternError(f"--init_from {path} has another character vocabulary than these problems")
    if host.num_slots != slots:
        raise LanternError(f"--init_from {path} has {host.num_slots} latent slot(s); --slots is {slots}")
    if host.model.config.context_length < context:
        raise LanternError(f"--init_from {path} has context {host.model.config.context_length}; these "
                           f"problems need {context}")
    host.model.requires_grad_(True)
    host.slot.requires_grad_(True)
    return host


def steps_in_slots(rng: random.Random, slots: int, all_slots_fraction: float) -> int:
    """How many leading steps one mixed row puts in slots: all K with probability
    `all_slots_fraction` (the rows the skip-thinking answer looks like), else uniform over 1..K;
    with a zero fraction the draws are exactly those of runs made before the option."""
    if all_slots_fraction and rng.random() < all_slots_fraction:
        return slots
    return rng.randint(1, slots)


class HostPhase(SeededPhase):
    """Host training as a phase of the training loop: one step per batch of problems drawn
    with replacement, evaluated on held-out problems every `eval_interval` steps."""

    def __init__(self, host: LanternHost, problems: list[Problem], train_idx: list[int],
                 val_idx: list[int], rng: random.Random, cfg: HostTrainConfig, context: int,
                 precision: Precision, say: Callable[[str], None]) -> None:
        self.host, self.problems, self.train_idx, self.val_idx = host, problems, train_idx, val_idx
        self.rng, self.cfg, self.context, self.precision = rng, cfg, context, precision
        self.model = nn.ModuleList([host.model, host.slot])
        self.segments = [host.segments(p) for p in problems]
        self.say = say

    def step(self, index: int, updates: Updates) -> list[dict]:
        cfg, host, rng, device = self.cfg, self.host, self.rng, self.precision.device
        host.model.train()
        picks = [self.train_idx[rng.randrange(len(self.train_idx))] for _ in range(cfg.batch_size)]
        no_think = [rng.random() < cfg.no_think_fraction for _ in picks]
        replaced = ([steps_in_slots(rng, cfg.slots, cfg.all_slots_fraction) for _ in picks]
                    if cfg.slots > 1 else None)
        with self.precision.autocast():
            loss, metrics = host_losses(host, [self.segments[i] for i in picks], no_think,
                                        cfg.latent_weight, device, cfg.detach_teacher_state,
                                        replaced)
        updates(loss)
        record = {"step": index + 1, "lr": updates.lr, "train_loss": loss.item(), **metrics}
        if (index + 1) % cfg.eval_interval == 0 or index + 1 == cfg.max_steps:
            host.model.eval()
            val = self.val_idx[:cfg.eval_problems]
            with torch.no_grad(), self.precision.autocast():
                val_loss, _ = host_losses(host, [self.segments[i] for i in val], [False] * len(val),
                                          cfg.latent_weight, device)
                accuracy = host_accuracy(host, [self.segments[i] for i in val],
                                         [self.problems[i].answer for i in val], self.context)
            record.update(val_loss=val_loss.item(), **accuracy)
            self.say(f"step {index + 1}: loss {loss.item():.4f} val {val_loss.item():.4f} "
                     f"full acc {accuracy['full_accuracy']:.3f} slot acc "
                     f"{accuracy['slot_accuracy']:.3f}")
        return [record]


def run_settings(cfg: HostTrainConfig, quiet: bool = False) -> RunSettings:
    return RunSettings(Path(cfg.output_dir), COMMAND, cfg.save_interval or cfg.eval_interval,
                       cfg.resume_from, cfg.overwrite, ("final_model.pt",), "a trained host",
                       quiet=quiet)


def train_host(cfg: HostTrainConfig, quiet: bool = False) -> Path:
    """Train (or continue), evaluate on held-out problems, and write a run directory a `--host`
    flag accepts."""
    out = Path(cfg.output_dir)
    resume = start_run(run_settings(cfg))
    problems = read_problems(cfg.problems)
    if len(problems) < 2:
        raise LanternError("a host needs at least 2 problems (some are held out for validation)")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = list(range(len(problems)))
    rng.shuffle(order)
    n_val = max(1, int(len(problems) * (cfg.val_fraction or 0.05)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if cfg.val_problems:  # e.g. held-out operand pairs, which a random share of the file is not
        held_out = read_problems(cfg.val_problems)
        val_idx, train_idx = list(range(len(problems), len(problems) + len(held_out))), order
        problems = problems + held_out
    if cfg.slots > 1:
        counts = sorted({len(p.steps) for p in problems})
        if counts != [cfg.slots]:
            raise LanternError(f"--slots {cfg.slots} needs problems of {cfg.slots} reasoning steps "
                               f"(separated by ';' in the thinking); these have {counts}")
    tokenizer = host_tokenizer(problems)
    precision = Precision(PrecisionSection(cfg.device, cfg.dtype))
    device = precision.device
    shape = {k: getattr(cfg, k) for k in ("config", *SHAPE_FLAGS) if getattr(cfg, k) is not None}
    # <think>, </think> and <eos> around the characters, and room for one generated token more.
    context = max(len(p.question) + len(p.thinking) + len(p.answer) for p in problems) + 4
    if cfg.init_from:
        host = start_from(cfg.init_from, tokenizer, context, shape, device, cfg.slots)
    else:
        preset = shape.pop("config", "gpt-128")
        model_cfg = preset_config(preset, vocab_size=tokenizer.vocab_size, context_length=context,
                                  **shape)
        host = LanternHost(LANTERNModel(model_cfg).to(device), tokenizer,
                           LatentSlot(model_cfg.hidden_size, model_cfg.hidden_size).to(device),
                           cfg.slots)
    say = (lambda *a: None) if quiet else tqdm.write
    phase = HostPhase(host, problems, train_idx, val_idx, rng, cfg, context, precision, say)
    optimizer = make_optimizer(phase.model, OptimizerSection(cfg.learning_rate, cfg.weight_decay))
    schedule = LRSchedule(ScheduleSection(cfg.warmup_steps, cfg.min_lr), cfg.learning_rate,
                          cfg.max_steps)
    say(f"host: {host.model.num_parameters():,} parameters, {len(train_idx)} training / "
        f"{len(val_idx)} held-out problems, context {context}")
    started = time.time()
    TrainingLoop(phase, run_settings(cfg, quiet), cfg.max_steps, optimizer, precision, schedule,
                 cfg.grad_clip, dataclasses.asdict(cfg), resume).run()
    host.model.eval()
    host.save_run(out, dataclasses.asdict(cfg), cfg.max_steps)
    atomic_write_text(out / "val_problems.jsonl",
                      "".join(json.dumps(problems[i].to_dict()) + "\n" for i in val_idx))
    say(f"host saved to {out} ({time.time() - started:.0f}s)")
    return out
