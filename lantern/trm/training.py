"""Phase 2: train SequenceTRM on hidden-state pairs.

Differences from a plain TRM recipe, each on purpose:
- the learning-rate schedule is counted in optimizer steps (one per supervision step with
  per-step updates), so it ends where training ends instead of 8x too early;
- a validation split; its cosine is reported next to the cosine of predicting the training mean;
- the EMA weights are what validation, `best.pt` and every loader use;
- besides the state MSE, an optional answer loss: the predicted state goes through the frozen
  host's latent slot and the answer tokens' cross-entropy flows back into the TRM;
- under torchrun each process takes its share of every batch and DDP averages the gradients;
  the processes agree on halting (a batch stops only when every row on every rank has halted);
- along a trajectory (pairs of a host with K > 1 latent slots), supervision step group k is
  trained toward slot k's compressed boundary state and, through a digit head, the digits of
  step k's intermediate result; the answer loss (all K predicted slots in the host, the earlier
  ones as last predicted) runs at the last step, from `answer_loss_from` of training on; every
  step runs at evaluation (no halting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lantern.checkpoint import load_checkpoint, save_checkpoint
from lantern.errors import LanternError
from lantern.models.lantern_model import IGNORE_INDEX
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.loop import RunSettings, TrainingLoop, Updates, restore_random, start_run
from lantern.training.optim import LRSchedule, make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection, ScheduleSection
from lantern.trm.compressor import DimensionCompressor, check_compressor_fits, load_compressor
from lantern.trm.datagen import Pairs, load_pairs
from lantern.trm.host import LanternHost, load_host
from lantern.trm.host_training import thinking_targets
from lantern.trm.model import Carry, SequenceTRM, TRMConfig, halting_loss, halting_point
from lantern.trm.problems import Problem
from lantern.trm.settings import TRMTrainConfig

COMMAND = "lantern trm train"

@dataclass
class PreparedData:
    x: list[torch.Tensor]  # compressed hidden_pre, (L_i, D') each
    target: torch.Tensor  # compressed trajectory (N, K, D'); K = 1: the post-thinking state
    post: torch.Tensor  # hidden_post (N, D)
    train: list[int]
    val: list[int]
    digits: torch.Tensor | None = None  # (N, K, R) each step's result, right-aligned digits


def result_digits(results: list[list[str]]) -> torch.Tensor | None:
    """(N, K, R) digit targets, each result right-aligned and zero-padded to the longest R; None
    where a result is not a string of digits (nothing for a digit head to read)."""
    flat = [r for row in results for r in row]
    if not flat or not all(r.isdigit() for r in flat):
        return None
    width = max(len(r) for r in flat)
    return torch.tensor([[[int(c) for c in r.zfill(width)] for r in row] for row in results])


def digits_to_answer(digits: torch.Tensor, width: int) -> str:
    """A digit head's argmax (R,) as an answer of `width` characters (zero-padded numbers)."""
    text = "".join(str(int(d)) for d in digits)
    return text[-width:] if len(text) >= width else text.zfill(width)


def prepare(pairs: Pairs, comp: DimensionCompressor, val_fraction: float, seed: int) -> PreparedData:
    if len(pairs) < 2:
        raise LanternError(f"the pairs file holds {len(pairs)} pairs; at least 2 are needed "
                           "(some are held out for validation)")
    with torch.no_grad():
        x = [comp.compress(h.float()) for h in pairs.hidden_pre]
        target = comp.compress(pairs.trajectory.float())
    questions = sorted(set(pairs.problems))  # split by question: a repeated problem stays on one side
    if len(questions) < 2:
        raise LanternError("the pairs hold a single distinct problem; at least 2 are needed (some "
                           "are held out for validation)")
    random.Random(seed).shuffle(questions)
    held_out = set(questions[:max(1, int(len(questions) * val_fraction))])
    val = [i for i, q in enumerate(pairs.problems) if q in held_out]
    train = [i for i, q in enumerate(pairs.problems) if q not in held_out]
    digits = result_digits(pairs.step_results) if pairs.step_results else None
    return PreparedData(x, target, pairs.hidden_post.float(), train, val, digits)


def batch_inputs(x: list[torch.Tensor], rows: list[int], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, L, D') inputs and their padding mask (True = no token)."""
    width = max(len(x[i]) for i in rows)
    out = torch.zeros(len(rows), width, x[rows[0]].shape[1])
    padding = torch.ones(len(rows), width, dtype=torch.bool)
    for j, i in enumerate(rows):
        out[j, :len(x[i])] = x[i]
        padding[j, :len(x[i])] = False
    return out.to(device), padding.to(device)


class AnswerLoss:
    """Cross-entropy of the answer tokens with predicted states in the frozen host's K slots."""

    def __init__(self, host: LanternHost, pairs: Pairs) -> None:
        self.host = host
        self.sequences: list[tuple[list[int], list[int]]] = []
        for q, a in zip(pairs.problems, pairs.answers, strict=True):
            self.sequences.append(host.slot_sequence(host.segments(Problem(q, "", a))))

    def logits(self, states: torch.Tensor, rows: list[int], skip: int = 1
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The host's logits with `states` ((B, D) for one slot, (B, K, D) for K) in the slots,
        and the targets: the tokens from `skip` after the last slot on (1: `</think> answer
        <eos>`; 2: `answer <eos>`)."""
        seqs = [self.sequences[i] for i in rows]
        ids, targets = thinking_targets([s for s, _ in seqs], [p[-1] + skip for _, p in seqs],
                                        self.host.tokenizer.pad_id)
        device = states.device
        index = torch.tensor([p for _, p in seqs], device=device)
        if states.dim() == 2:
            index = index[:, 0]
        logits = self.host.model.lm_head(self.host.forward(ids.to(device), states, index))
        return logits, targets.to(device)

    def __call__(self, states: torch.Tensor, rows: list[int]) -> torch.Tensor:
        logits, targets = self.logits(states, rows)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def exact(self, states: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Per row: is every answer token (and the end) the host's argmax after `</think>`?
        That is what greedy decoding from `</think>` writes, found without decoding."""
        logits, targets = self.logits(states, rows, skip=2)
        return ((logits.argmax(-1) == targets) | (targets == IGNORE_INDEX)).all(dim=1)


def selection_score(val: dict) -> tuple[float, float]:
    """What `best.pt` keeps: the held-out answer accuracy through the host when there is one
    (the figure the pipeline exists for), then the held-out cosine."""
    return val.get("val_answer_exact", -1.0), val["val_cosine"]


class SupervisionStep(nn.Module):
    """One supervision step (a deep recursion) as a module call, so that DDP sees a forward for
    every backward it must average."""

    def __init__(self, trm: SequenceTRM) -> None:
        super().__init__()
        self.trm = trm

    def forward(self, carry: Carry, slot: int = 0
                ) -> tuple[Carry, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        carry, pred, halt = self.trm.deep_recursion(carry, slot)
        digits = self.trm.digit_logits(carry, slot) if self.trm.cfg.result_digits else None
        return carry, pred, halt, digits


def check_host_matches(host: LanternHost, pairs: Pairs) -> None:
    if pairs.meta.get("host_fingerprint") != host.fingerprint:
        raise LanternError("the pairs were made by another host than --host (fingerprint "
                           f"{pairs.meta.get('host_fingerprint')} vs {host.fingerprint})")
    host.require_slot()
    if host.num_slots != pairs.num_slots:
        raise LanternError(f"--host has {host.num_slots} latent slot(s), the pairs a trajectory of "
                           f"{pairs.num_slots}")
    if int(pairs.meta.get("layer", -1)) != host.num_layers:
        raise LanternError(f"the latent slot takes the final layer ({host.num_layers}) state, but "
                           f"the pairs are from layer {pairs.meta.get('layer')}")


@torch.no_grad()
def validate(model: SequenceTRM, comp: DimensionCompressor, data: PreparedData, rows: list[int],
             batch_size: int, steps: int, halt_at: float | None, device: torch.device,
             answers: AnswerLoss | None = None, answer_texts: list[str] | None = None) -> dict:
    """Held-out state metrics (of the last slot's state); with a host, also the share of answers
    the host gets exactly right with the prediction in its slots (`val_answer_exact`). Along a
    trajectory, the cosine of each slot and, with a digit head, the share of steps whose result
    the head reads right (`val_step_digits_exact`) and of answers read from the last step's
    digits alone (`val_digits_answer_exact`: no host involved)."""
    preds, used, exact, slot_preds, step_right, digit_answers = [], [], [], [], [], []
    trajectory = model.cfg.num_slots > 1
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        x, padding = batch_inputs(data.x, chunk, device)
        if trajectory:
            result, digit_logits = model.trajectory(x, padding)
            pred, n = result.slots, torch.full((len(chunk),), model.cfg.n_supervision_steps)
        else:
            pred, n = model.predict(x, padding, steps, halt_at)
            digit_logits = None
        states = comp.decompress(pred)
        if answers is not None:
            exact.append(answers.exact(states, chunk).cpu())
        if trajectory:
            slot_preds.append(pred.cpu())
            states = states[:, -1]
        if digit_logits is not None and data.digits is not None:
            guess = digit_logits.argmax(-1).cpu()
            step_right.append((guess == data.digits[chunk]).all(-1).float())
            if answer_texts is not None:
                digit_answers.extend(digits_to_answer(g[-1], len(answer_texts[i])) == answer_texts[i]
                                     for g, i in zip(guess, chunk, strict=True))
        preds.append(states.cpu())
        used.append(n.cpu())
    pred = torch.cat(preds)
    target = data.post[rows]
    mean = data.post[data.train].mean(dim=0)
    metrics = {"val_cosine": F.cosine_similarity(pred, target, dim=-1).mean().item(),
               "val_centered_cosine": F.cosine_similarity(pred - mean, target - mean, dim=-1).mean().item(),
               "val_relative_error": ((pred - target).norm(dim=-1)
                                      / target.norm(dim=-1).clamp_min(1e-8)).mean().item(),
               "val_steps": torch.cat(used).float().mean().item()}
    if exact:
        metrics["val_answer_exact"] = torch.cat(exact).float().mean().item()
    if slot_preds:
        compressed = torch.cat(slot_preds)
        metrics["val_slot_cosine"] = F.cosine_similarity(
            compressed, data.target[rows], dim=-1).mean(dim=0).tolist()
    if step_right:
        metrics["val_step_digits_exact"] = torch.cat(step_right).mean(dim=0).tolist()
    if digit_answers:
        metrics["val_digits_answer_exact"] = sum(digit_answers) / len(digit_answers)
    return metrics


def run_settings(cfg: TRMTrainConfig, save_interval: int = 1, quiet: bool = False) -> RunSettings:
    return RunSettings(Path(cfg.output_dir), COMMAND, save_interval, cfg.resume_from,
                       cfg.overwrite, ("best.pt", "final.pt"), quiet=quiet)


def train_trm(cfg: TRMTrainConfig, quiet: bool = False) -> dict:
    """Train (or continue); writes `best.pt` and `final.pt` (EMA weights as the model) and a
    log."""
    return TRMTrainer(cfg, quiet).fit()


class TRMTrainer:
    """Phase 2 as a phase of the training loop, from the trainer's parts: optimizer, schedule,
    precision, EMA, distributed. A loop step is one batch (up to N supervision steps, each its
    own optimizer update with `per_step_updates`); each epoch ends with validation on rank 0."""

    def __init__(self, cfg: TRMTrainConfig, quiet: bool = False) -> None:
        self.cfg = cfg
        self.dist, device = Distributed.start(False, cfg.device)
        self.say = (lambda *a: None) if quiet or not self.dist.is_main else tqdm.write
        self.quiet = quiet or not self.dist.is_main
        self.resume = self._refuse_bad_setup()
        self.device = device
        self.precision = Precision(PrecisionSection(cfg.device, cfg.dtype), device)
        pairs = load_pairs(cfg.data)
        comp, comp_info = load_compressor(cfg.compressor_checkpoint)
        check_compressor_fits(comp_info, pairs.hidden_size, pairs.meta.get("host_fingerprint"),
                              pairs.meta.get("layer"), "the pairs")
        self.data = prepare(pairs, comp, cfg.val_fraction, cfg.seed)
        self._resolve_trajectory_settings(pairs.num_slots)
        self.answers = pairs.answers
        self.answer_loss = None
        if cfg.host:
            host = load_host(cfg.host, device)
            if not isinstance(host, LanternHost):
                raise LanternError("--host for the answer loss must be a LANTERN host with a latent slot")
            check_host_matches(host, pairs)
            self.answer_loss = AnswerLoss(host, pairs) if cfg.answer_loss_weight > 0 else None
        self.comp = comp.to(device).requires_grad_(False)
        torch.manual_seed(cfg.seed)
        digits = self.data.digits.shape[-1] if cfg.digit_loss_weight else 0
        trm_cfg = TRMConfig(comp.d_compressed, cfg.n_layers, cfg.n_heads, cfg.n_latent_steps,
                            cfg.n_deep_recursions, cfg.n_supervision_steps, d_hidden=cfg.d_hidden,
                            num_slots=pairs.num_slots, result_digits=digits, core=cfg.core,
                            max_length=max(len(x) for x in self.data.x) if cfg.core == "mlp" else 0)
        model = SequenceTRM(trm_cfg)
        with torch.no_grad():  # start at the mean predictor; learn what differs from it
            model.output.bias.copy_(self.data.target[self.data.train].mean(dim=0).flatten())
        self.model = model.to(device)
        self.step_module = self.dist.wrap(SupervisionStep(self.model), device, varying_graph=True)
        self.optimizer = make_optimizer(self.model, OptimizerSection(
            cfg.learning_rate, cfg.weight_decay, beta2=cfg.beta2))
        self.batches_per_epoch = math.ceil(len(self.data.train) / cfg.batch_size)
        self.planned = cfg.planned_optimizer_steps(self.batches_per_epoch)
        self.schedule = LRSchedule(ScheduleSection(cfg.warmup_steps, cfg.min_lr), cfg.learning_rate,
                                   self.planned)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.use_ema else None
        mean_post = self.data.post[self.data.train].mean(dim=0)
        self.baseline = F.cosine_similarity(mean_post[None], self.data.post[self.data.val],
                                            dim=-1).mean().item()
        self.threshold = cfg.halt_threshold
        self.rng = random.Random(cfg.seed)
        self.order: list[int] = []
        self.sums: dict[str, float] = {}
        self.best, self.record = (-2.0, -2.0), {}
        self.started = time.time()
        with torch.no_grad():
            mean_trajectory = self.comp.decompress(
                self.data.target[self.data.train].mean(dim=0).to(device)).cpu() \
                if pairs.num_slots > 1 else mean_post[None]
        self.meta = {"trm_config": trm_cfg.to_dict(), "train_config": dataclasses.asdict(cfg),
                     "mean_post": mean_post, "mean_trajectory": mean_trajectory,
                     "compressor": comp_info,
                     "host_fingerprint": pairs.meta.get("host_fingerprint"),
                     "layer": pairs.meta.get("layer"), "hidden_size": pairs.hidden_size,
                     "planned_optimizer_steps": self.planned}
        settings = run_settings(cfg, cfg.save_interval or self.batches_per_epoch, quiet)
        self.loop = TrainingLoop(self, settings, cfg.num_epochs * self.batches_per_epoch,
                                 self.optimizer, self.precision, self.schedule, cfg.grad_clip,
                                 dataclasses.asdict(cfg), self.resume, self.ema, self.dist)

    def _resolve_trajectory_settings(self, num_slots: int) -> None:
        """Defaults that depend on the pairs: halting for one slot only (a trajectory runs every
        step), a digit head along a trajectory whose results are numbers."""
        cfg = self.cfg
        if cfg.use_halting is None:
            cfg.use_halting = num_slots == 1
        if cfg.use_halting and num_slots > 1:
            raise LanternError(f"the pairs hold a trajectory of {num_slots} slots, for which every "
                               "supervision step runs; drop --use_halting")
        if cfg.digit_loss_weight is None:
            cfg.digit_loss_weight = 1.0 if num_slots > 1 and self.data.digits is not None else 0.0
        if cfg.digit_loss_weight > 0 and self.data.digits is None:
            raise LanternError("--digit_loss_weight needs intermediate results made of digits (the "
                               "text after each step's last '='); these pairs have none")

    def _refuse_bad_setup(self) -> tuple[Path, dict] | None:
        """The run to resume, or the refusal to write over one: every rank looks, and stops on
        rank 0's refusal (the gather also keeps rank 0 from writing before every rank looked)."""
        refusal, resume = None, None
        try:
            resume = start_run(run_settings(self.cfg))
        except LanternError as exc:
            refusal = str(exc)
        refusal = self.dist.gather(refusal)[0]
        if refusal:
            raise LanternError(refusal)
        if self.dist.active and self.cfg.batch_size % self.dist.world_size:
            raise LanternError(f"--batch_size {self.cfg.batch_size} must be a multiple of the "
                               f"{self.dist.world_size} processes (each takes an equal share of every batch)")
        return resume

    @property
    def halt_at(self) -> float | None:
        return halting_point(self.cfg.bce_halt_loss, self.threshold) if self.cfg.use_halting else None

    def fit(self) -> dict:
        cfg = self.cfg
        params = sum(p.numel() for p in self.model.parameters())
        self.say(f"SequenceTRM: {params:,} parameters; {len(self.data.train)} training / "
                 f"{len(self.data.val)} validation pairs; {self.planned} optimizer steps planned; "
                 f"mean-predictor validation cosine {self.baseline:.4f}")
        self.loop.run()
        summary = {**self.record, "optimizer_steps": self.loop.updates.count,
                   "planned_optimizer_steps": self.planned, "best_val_cosine": self.best[1],
                   "parameters": params}
        if self.answer_loss is not None:
            summary["best_val_answer_exact"] = self.best[0]
        if self.dist.is_main:
            self.save(Path(cfg.output_dir) / "final.pt", summary)
        self.dist.barrier()
        return summary

    def step(self, index: int, updates: Updates) -> list[dict]:
        """One batch of the epoch's order; at the epoch's last batch, its validation."""
        cfg, position = self.cfg, index % self.batches_per_epoch
        if position == 0:
            self.order = list(self.data.train)
            self.rng.shuffle(self.order)
            self.sums = {"state_loss": 0.0, "answer_loss": 0.0, "digit_loss": 0.0, "halt_loss": 0.0,
                         "cosine": 0.0, "count": 0.0}
        self.model.train()
        start = position * cfg.batch_size
        rows = self.order[start:start + cfg.batch_size][self.dist.rank::self.dist.world_size]
        if rows:  # a last batch smaller than the number of processes leaves some out
            self.train_batch(rows, self.sums, updates)
        if position + 1 < self.batches_per_epoch:
            return []
        return self.end_epoch(index // self.batches_per_epoch + 1, updates)

    def end_epoch(self, epoch: int, updates: Updates) -> list[dict]:
        cfg, sums = self.cfg, self.sums
        totals = self.dist.sum(list(sums.values()), self.device)  # every rank: the same threshold
        means = {k: v / totals[-1] for k, v in zip(list(sums)[:-1], totals[:-1], strict=True)}
        if cfg.use_halting and cfg.bce_halt_loss and cfg.adaptive_halt_threshold:
            self.threshold = max(self.threshold, 0.95 * means["cosine"])
        if not self.dist.is_main:  # rank 0 validates, logs and saves
            return []
        self.model.eval()
        with self.ema.applied() if self.ema is not None else contextlib.nullcontext():
            val = validate(self.model, self.comp, self.data, self.data.val, cfg.batch_size,
                           cfg.eval_supervision_steps or cfg.n_supervision_steps, self.halt_at,
                           self.device, self.answer_loss, self.answers)
            self.record = {"epoch": epoch, "step": updates.count,
                           "lr": self.optimizer.param_groups[0]["lr"], **means, **val,
                           "mean_predictor_val_cosine": self.baseline,
                           "halt_threshold": self.threshold, "seconds": time.time() - self.started}
            if selection_score(val) > self.best:
                self.best = selection_score(val)
                self.save(Path(cfg.output_dir) / "best.pt", self.record)
        exact = f"  answers exact {val['val_answer_exact']:.3f}" if "val_answer_exact" in val else ""
        if "val_digits_answer_exact" in val:
            exact += f"  digit head {val['val_digits_answer_exact']:.3f}"
        self.say(f"epoch {epoch}: state mse {self.record['state_loss']:.5f}  val cosine "
                 f"{val['val_cosine']:.4f} (mean predictor {self.baseline:.4f}){exact}  "
                 f"steps {val['val_steps']:.1f}")
        return [self.record]

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "order": self.order, "sums": self.sums,
                "threshold": self.threshold, "best": list(self.best), "record": self.record}

    def load_state_dict(self, state: dict) -> None:
        restore_random(self.rng, state["rng"])
        self.order, self.sums = list(state["order"]), dict(state["sums"])
        self.threshold, self.best = float(state["threshold"]), tuple(state["best"])
        self.record = dict(state["record"])

    def train_batch(self, rows: list[int], sums: dict[str, float], updates: Updates) -> None:
        """Up to N supervision steps on these rows from a detached carry; every rank of a
        batch stops at the same step (when all rows everywhere have halted). Along a trajectory
        step group k is supervised by slot k, and the answer loss runs at the last step."""
        cfg, trm_cfg = self.cfg, self.model.cfg
        x, padding = batch_inputs(self.data.x, rows, self.device)
        target = self.data.target[rows].to(self.device)
        digits = self.data.digits[rows].to(self.device) if trm_cfg.result_digits else None
        trajectory = trm_cfg.num_slots > 1
        progress = updates.count / max(1, self.planned)  # the share of planned updates taken
        answer_weight = cfg.answer_loss_weight if progress >= cfg.answer_loss_from else 0.0
        slots = target.new_zeros(target.shape)  # the latest prediction of each slot (detached)
        carry = self.model.start(x, padding)
        pending = []
        for step in range(cfg.n_supervision_steps):
            slot = trm_cfg.slot_of(step)
            last = step == cfg.n_supervision_steps - 1
            with self.precision.autocast():
                carry, pred, halt, digit_logits = self.step_module(carry, slot)
                state_loss = F.mse_loss(pred.float(), target[:, slot])
                loss = state_loss
                if digit_logits is not None:
                    d_loss = F.cross_entropy(digit_logits.flatten(0, 1).float(),
                                             digits[:, slot].flatten())
                    loss = loss + cfg.digit_loss_weight * d_loss
                    sums["digit_loss"] += d_loss.item()
                if self.answer_loss is not None and answer_weight > 0 and (last or not trajectory):
                    states = torch.cat([slots[:, :slot], pred.float()[:, None]], dim=1) \
                        if trajectory else pred.float()
                    a_loss = self.answer_loss(self.comp.decompress(states), rows)
                    loss = loss + answer_weight * a_loss
                    sums["answer_loss"] += a_loss.item()
                if cfg.use_halting:
                    h_loss = halting_loss(halt, pred, target[:, slot], cfg.bce_halt_loss, self.threshold)
                    loss = loss + cfg.halt_loss_weight * h_loss
                    sums["halt_loss"] += h_loss.item()
            slots[:, slot] = pred.detach().float()
            sums["state_loss"] += state_loss.item()
            sums["cosine"] += F.cosine_similarity(pred.float(), target[:, slot], dim=-1).mean().item()
            sums["count"] += 1
            carry = dataclasses.replace(carry, y=carry.y.detach(), z=carry.z.detach())
            if cfg.per_step_updates:
                updates(loss)
            else:
                pending.append(loss)
            if cfg.use_halting:
                running = torch.sigmoid(halt) <= self.halt_at
                if self.dist.sum([float(running.sum())], self.device)[0] == 0:
                    break
        if pending:
            updates(torch.stack(pending).mean())

    def save(self, path: Path, metrics: dict) -> None:
        """`model_state_dict` holds the EMA weights when there is an EMA (what loaders use);
        `raw_state_dict` the last optimizer weights."""
        raw = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        weights = dict(raw)
        if self.ema is not None:
            weights.update(self.ema.state_dict())
        save_checkpoint(path, {"model_state_dict": weights, "raw_state_dict": raw,
                               "ema": self.ema is not None, **self.meta, "metrics": metrics,
                               "halt_threshold": self.threshold, "halt_at": self.halt_at})


def load_trm(path: str | Path, device: str | torch.device = "cpu") -> tuple[SequenceTRM, dict]:
    """A TRM checkpoint (`best.pt`, `final.pt`, or a directory holding them), with its EMA
    weights as the model."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt" if (path / "best.pt").is_file() else path / "final.pt"
    data = load_checkpoint(path)
    if "trm_config" not in data:
        raise LanternError(f"{path} is not a SequenceTRM checkpoint")
    model = SequenceTRM(TRMConfig(**data["trm_config"]))
    model.load_state_dict(data["model_state_dict"])
    return model.to(device).eval(), data
