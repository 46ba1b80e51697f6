"""The training loop, composed of parts that each own one job (torchtitan style).

`Trainer` builds the parts from their config sections - data, model, optimizer, schedule,
precision, EMA, sampler, evaluator, checkpointer, metrics logger, distributed wrapper - and
`Trainer.fit` runs the loop. Everything a run needs to continue exactly goes into
`checkpoint_step_N.pt`, so an interrupted and resumed run ends with the same weights as one
that never stopped. Checkpoints are written at step boundaries only: Ctrl-C (or SIGTERM) asks
for a stop that takes effect once the current step, with all its micro-batches, is done.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lantern.config import LANTERNConfig
from lantern.data.batches import WindowSampler, eval_windows
from lantern.data.corpus import RunData, sample_prompt
from lantern.data.corpus import prepare_data as prepare_run_data
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text, fsync_directory, make_output_directory
from lantern.generation.adaptive.thresholds import AdaptiveDefaults, fit_thresholds
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import TOKENIZER_FILE, tokenizer_from_json
from lantern.training.builder import build_model_config, load_initial_model
from lantern.training.checkpointer import Checkpointer, read_resume_state, resume_file
from lantern.training.depth import DepthSchedule
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.evaluator import Evaluator
from lantern.training.logs import LOG_FILE, MetricsLogger
from lantern.training.loop import StopRequest
from lantern.training.lora import LoraSettings, attach_lora, merged_state_dicts, trainable_summary
from lantern.training.optim import LRSchedule, make_optimizer
from lantern.training.pause import insert_pause_tokens, insert_pauses_after
from lantern.training.precision import Precision
from lantern.training.settings import CONFIG_FILE, MODEL_SHAPE_FLAGS, TrainConfig

__all__ = ["TrainConfig", "Trainer", "prepare_data", "resolve_resume", "train"]


THRESHOLD_BATCHES = 4  # held-out batches the adaptive thresholds are fitted on


def prepare_data(cfg: TrainConfig, tokenizer=None) -> RunData:
    """The run's tokenizer and token arrays, for callers holding a whole TrainConfig."""
    return prepare_run_data(cfg.data, tokenizer, cfg.loop.seed)


def check_output_dir(directory: Path, overwrite: bool) -> None:
    """Refuse to write over another run unless asked to."""
    if overwrite or not directory.exists():
        return
    if not directory.is_dir():
        raise LanternError(f"--output_dir {directory} exists and is not a directory")
    if (directory / LOG_FILE).exists() or any(directory.glob("*.pt")):
        raise LanternError(
            f"{directory} already holds a training run; use --resume_from {directory} to continue "
            "it, --overwrite to replace it, or another --output_dir"
        )


def resolve_resume(overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved training settings, with the flags given now taking precedence. The model comes
    from the checkpoint, so a shape flag that disagrees with it is refused, not ignored."""
    # the settings, from a sharded copy's small plain-data part where there is one
    file, state = read_resume_state(overrides["resume_from"], sharded=True)
    saved = TrainConfig(**state["train_config"]).flat()
    fixed = (*MODEL_SHAPE_FLAGS, "seq_length", "tokenizer", "vocab_size", "init_from", "lora_rank",
             "lora_alpha", "lora_targets")
    changed = [f"--{name}" for name in fixed if name in overrides and overrides[name] != saved.get(name)]
    if changed:
        raise LanternError(f"{', '.join(changed)} cannot change when resuming: the model and "
                           f"its tokenizer come from {file}")
    merged = {**saved, **overrides, "overwrite": False}
    merged["resume_from"] = str(resume_file(overrides["resume_from"], sharded=bool(merged["fsdp"])))
    if "output_dir" not in overrides:
        merged["output_dir"] = str(file.parent)
    return TrainConfig(**merged), state


class Trainer:
    """One run's parts, each built from its own config section."""

    def __init__(self, cfg: TrainConfig, quiet: bool = False, run_directory: bool = True) -> None:
        """`run_directory=False` builds the parts without touching the output directory (a
        learning-rate range test trains a throw-away copy)."""
        self.cfg = cfg
        self.dist, device = Distributed.start(cfg.distributed.fsdp, cfg.precision.device)
        self.precision = Precision(cfg.precision, device, sharded=self.dist.fsdp)
        self.out = Path(cfg.checkpoint.output_dir)
        state = None
        if cfg.checkpoint.resume_from:  # every rank resumes from the file rank 0 picked
            chosen = resume_file(cfg.checkpoint.resume_from, sharded=self.dist.fsdp)
            self.resume_path, state = read_resume_state(self.dist.gather(str(chosen))[0])
        elif run_directory:
            check_output_dir(self.out, cfg.checkpoint.overwrite)
        self.build_data_and_model(state)
        self.build_optimization()
        self.build_evaluation_and_saving()
        self.step, self.best_val, self.metrics = 0, float("inf"), {}
        if state:
            self.restore(state)
        self.dist.barrier()  # every rank has checked the output directory before rank 0 writes
        writes = self.dist.is_main and run_directory
        self.log = MetricsLogger(self.out if writes else None, cfg.metrics.log_interval,
                                 self.max_steps, self.step, self.tokens_per_step,
                                 len(self.data.train_tokens), resumed=state is not None, quiet=quiet)
        if writes:
            make_output_directory(self.out, "run")
            self.checkpointer.remove_stale_leftovers()
            atomic_write_text(self.out / TOKENIZER_FILE, self.data.tokenizer.to_json())
            atomic_write_text(self.out / "config.json", self.model_config.to_json())
            cfg.save(self.out / CONFIG_FILE)
        self._announce(state)

    def build_data_and_model(self, state: dict[str, Any] | None) -> None:
        """Data, tokenizer and model: the same on every rank (one seed for the initial weights)."""
        cfg, device = self.cfg, self.precision.device
        torch.manual_seed(cfg.loop.seed)
        initial: LANTERNModel | None = None
        tokenizer = tokenizer_from_json(state["tokenizer"]) if state else None
        if cfg.model.init_from and not state:
            initial, tokenizer = load_initial_model(cfg.model, cfg.data.seq_length)
        if tokenizer is None and cfg.data.tokenizer == "char" and cfg.data.vocab_size:
            raise LanternError(f"--vocab_size {cfg.data.vocab_size} does not apply to --tokenizer "
                               "char: a character vocabulary comes from the text")
        self.data = prepare_run_data(cfg.data, tokenizer, cfg.loop.seed)
        self.data.tokenizer.note_training_tokens(self.data.train_tokens)
        if state:
            self.model_config = LANTERNConfig.from_dict(state["config"])
        elif initial is not None:
            self.model_config = initial.config
        else:
            self.model_config = build_model_config(cfg.model, self.data.tokenizer.vocab_size,
                                                   cfg.data.seq_length)
        self.model = initial if initial is not None else LANTERNModel(self.model_config)
        self.lora = LoraSettings.from_section(cfg.lora)
        if self.lora:  # before a resumed state, which holds the adapters
            attach_lora(self.model, self.lora)
        if state and "model_state_dict" in state:  # a sharded copy loads after wrapping (restore)
            self.model.load_state_dict(state["model_state_dict"])
        self.window = cfg.data.seq_length or self.model_config.context_length
        self.model.to(device).train()  # an imported model comes in eval mode
        torch.manual_seed(cfg.loop.seed + self.dist.rank)  # dropout and pause tokens differ per rank
        self.wrapped = self.dist.wrap(self.model, device, varying_graph=bool(cfg.loop.depth_schedule))

    def build_optimization(self) -> None:
        cfg, loop = self.cfg, self.cfg.loop
        seq_length = self.window
        self.tokens_per_step = loop.batch_size * seq_length * loop.grad_accum
        self.max_steps = loop.max_steps
        if loop.epochs is not None:
            passes = loop.epochs * len(self.data.train_tokens) / self.tokens_per_step
            self.max_steps = max(1, math.ceil(passes))
        self.optimizer = make_optimizer(self.model, cfg.optimizer)
        self.schedule = LRSchedule(cfg.schedule, cfg.optimizer.learning_rate, self.max_steps)
        self.ema = EMA(self.model, cfg.ema.ema_decay) if cfg.ema.ema_decay else None
        self.sampler = WindowSampler(self.data.train_tokens, seq_length, loop.batch_size, loop.seed,
                                     self.dist.rank, self.dist.world_size)
        self.depths = DepthSchedule.parse(loop.depth_schedule) if loop.depth_schedule else None
        self.depth_generator = torch.Generator().manual_seed(loop.seed)
        if loop.pause_tokens and self.data.tokenizer.think_id is None:
            raise LanternError("--pause_tokens needs a tokenizer with a <think> token")
        self.pause_marker = None
        if loop.pause_after is not None:
            marker = self.data.tokenizer.encode(loop.pause_after)
            if len(marker) != 1:
                raise LanternError(f"--pause_after {loop.pause_after!r} is {len(marker)} tokens "
                                   "for this tokenizer; it must be exactly one")
            self.pause_marker = marker[0]

    def build_evaluation_and_saving(self) -> None:
        cfg = self.cfg
        val_batches = eval_windows(self.data.val_tokens, self.window,
                                   cfg.loop.batch_size, cfg.eval.eval_batches)
        self.evaluator = Evaluator(cfg.eval, val_batches, self.precision, self.data.tokenizer,
                                   sample_prompt(self.data), cfg.loop.seed)
        self.threshold_batches = val_batches[:THRESHOLD_BATCHES]
        self.adaptive: AdaptiveDefaults | None = None
        metadata = {"config": self.model_config.to_dict(), "tokenizer": self.data.tokenizer.to_json(),
                    "train_config": cfg.to_dict()}
        self.checkpointer = Checkpointer(self.out, self.dist, metadata, sharded=cfg.distributed.fsdp)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue where the checkpoint stopped: optimizer, scaler, EMA, RNGs, data position."""
        self.checkpointer.restore(state, self.model, self.optimizer, self.precision, self.ema,
                                  source=self.resume_path)
        self.sampler.set_state(state["rng"]["batches"])
        if "depth" in state["rng"]:
            self.depth_generator.set_state(state["rng"]["depth"])
        self.step, self.best_val = int(state["step"]), float(state["best_val_loss"])
        self.checkpointer.last_saved = self.resume_path
        if self.world_size_changed(state):
            torch.manual_seed(self.cfg.loop.seed + self.dist.rank + 7919 * self.step)

    def _announce(self, state: dict[str, Any] | None) -> None:
        data, loop, say = self.data, self.cfg.loop, self.log.say
        say(f"Data: {data.source} | train {len(data.train_tokens):,} tokens | "
            f"val {len(data.val_tokens):,} tokens | vocab {data.tokenizer.vocab_size} "
            f"({data.tokenizer.kind})")
        shape = self.model_config
        say(f"Model: {self.model.num_parameters():,} parameters | {shape.num_blocks} blocks x "
            f"{shape.steps_per_block} steps | width {shape.hidden_size} | context "
            f"{shape.context_length} | device {self.precision.device.type} | dtype {self.precision.name}")
        per_rank = loop.batch_size // self.dist.world_size
        mode = "FSDP2" if self.dist.fsdp else "DDP" if self.dist.active else "1 process"
        say(f"Batch: {loop.batch_size} sequences x {loop.grad_accum} micro-batches = "
            f"{self.tokens_per_step:,} tokens per step | {mode}, {self.dist.world_size} process(es) x "
            f"{per_rank} sequences")
        if self.lora is not None:
            say(trainable_summary(self.model, self.lora))
        if self.ema is not None:
            say(f"EMA: decay {self.ema.decay}; evaluating and saving the "
                f"{'averaged' if self.cfg.ema.eval_ema else 'live'} weights")
        if state:
            say(f"Resumed from {self.resume_path} at step {self.step}")
            if self.world_size_changed(state):
                say("note: the number of processes changed; dropout noise is reseeded")

    def world_size_changed(self, state: dict[str, Any]) -> bool:
        return len(state.get("rng_per_rank") or [None]) != self.dist.world_size

    def insert_pauses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """THINK tokens of `--pause_tokens`: at random, or after each `--pause_after` token."""
        loop, think_id = self.cfg.loop, self.data.tokenizer.think_id
        if not loop.pause_tokens:
            return x, y
        if self.pause_marker is not None:
            return insert_pauses_after(x, y, think_id, self.pause_marker, loop.pause_tokens)
        return insert_pause_tokens(x, y, think_id, loop.pause_tokens)

    def micro_step(self, sync: bool) -> torch.Tensor:
        """Forward and backward on one micro-batch; returns its (unscaled) loss."""
        x, y = self.sampler.next_batch()
        device = self.precision.device
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x, y = self.insert_pauses(x, y)
        depth = self.depths.sample(self.depth_generator) if self.depths else None
        with self.dist.sync_gradients(self.wrapped, sync), self.precision.autocast():
            _, loss = self.wrapped(x, y, steps_per_block=depth,
                                   backprop_steps=self.cfg.loop.backprop_steps)
            self.precision.backward(loss / self.cfg.loop.grad_accum)
        return loss.detach().float()

    def fit(self) -> dict[str, Any]:
        """Run (or continue) training to max_steps; returns the final metrics."""
        accum, skipped = self.cfg.loop.grad_accum, 0
        with StopRequest() as stop:
            while self.step < self.max_steps:
                lr = self.schedule.apply(self.optimizer, self.step)
                loss = sum(self.micro_step(sync=i == accum - 1) for i in range(accum)) / accum
                total, stops = self.dist.sum([loss.item(), float(stop.requested)], self.precision.device)
                train_loss = total / self.dist.world_size
                if not math.isfinite(train_loss):
                    skipped += 1
                    self.refuse_nonfinite(train_loss, skipped)
                    continue
                self.precision.step(self.optimizer, self.model.parameters(), self.cfg.optimizer.grad_clip)
                if self.ema is not None:
                    self.ema.update()
                self.step += 1
                self.log.step(self.step, train_loss, lr)
                with self.log.excluded():
                    if self.evaluator.due(self.step, self.max_steps):
                        self.evaluate()
                    if self.step % self.cfg.checkpoint.save_interval == 0 or self.step == self.max_steps:
                        self.save_checkpoint()
                if stops:
                    self.stop_here()
        self.log.close()
        return self.finish()

    def refuse_nonfinite(self, loss: float, skipped: int) -> None:
        """A non-finite loss never reaches the weights: skip the batch (up to --skip_nonfinite
        times) or stop with the step and the last good checkpoint named."""
        self.optimizer.zero_grad(set_to_none=True)
        allowed = self.cfg.loop.skip_nonfinite
        if skipped <= allowed:
            self.log.say(f"warning: loss is {loss} at step {self.step + 1}; skipped that batch "
                         f"({skipped}/{allowed})")
            self.log.write({"step": self.step + 1, "skipped_nonfinite": skipped})
            return
        last = self.checkpointer.last_saved
        self.log.close()
        raise LanternError(
            f"loss became {loss} at step {self.step + 1}"
            + (f" after skipping {allowed} bad batch(es)" if allowed else "")
            + f"; nothing was saved after it; last good checkpoint: {last or 'none'}")

    def evaluate(self) -> None:
        with self.ema.applied() if self.cfg.ema.eval_ema else contextlib.nullcontext():
            self.metrics = self.evaluator.evaluate(self.model)
            sample = self.sample(0)
        self.log.evaluation(self.step, self.metrics, sample)
        if self.metrics["val_loss"] < self.best_val:
            self.best_val = self.metrics["val_loss"]
            self.save_weights("best_model.pt")

    def sample(self, offset: int) -> str | None:
        """A sample on rank 0 (under FSDP from a gathered copy of the weights)."""
        if self.cfg.eval.sample_length <= 0:
            return None
        model = self.plain_model()
        return self.evaluator.sample(model, offset) if model is not None else None

    def plain_model(self) -> nn.Module | None:
        """An unsharded, unwrapped model on rank 0 (collective under FSDP); None elsewhere."""
        if not self.dist.fsdp:
            return self.model if self.dist.is_main else None
        weights = self.dist.model_state(self.model)
        if not self.dist.is_main:
            return None
        plain = LANTERNModel(self.model_config)
        plain.load_state_dict(weights)
        return plain.to(self.precision.device)

    def extra(self) -> dict[str, Any]:
        extra = {"epoch": self.log.epoch(self.step), "val_loss": self.metrics.get("val_loss"),
                 "best_val_loss": self.best_val}
        if self.adaptive is not None:
            extra["adaptive"] = self.adaptive.to_checkpoint()
        return extra

    def save_weights(self, name: str) -> None:
        with merged_state_dicts(self.model, self.lora):  # LoRA adapters merged: a plain model
            self.checkpointer.save(name, self.step, self.model, self.extra(), ema=self.ema,
                                   use_ema=self.cfg.ema.eval_ema)

    def save_checkpoint(self) -> Path:
        rng = {"batches": self.sampler.state(), "depth": self.depth_generator.get_state()}
        self.log.sync()  # the log up to this step is on disk before the checkpoint that resumes it
        return self.checkpointer.save(f"checkpoint_step_{self.step}.pt", self.step, self.model,
                                      {**self.extra(), "rng": rng}, self.optimizer, self.precision,
                                      self.ema)

    def stop_here(self) -> None:
        saved = self.checkpointer.last_saved
        if saved is None or saved.name != f"checkpoint_step_{self.step}.pt":
            saved = self.save_checkpoint()
        self.log.close()
        self.log.say(f"\nInterrupted: saved {saved}; continue with "
                     f"`lantern train --resume_from {self.out}`")
        raise KeyboardInterrupt

    def fit_adaptive_thresholds(self) -> None:
        """Thresholds for `--adaptive` from the final weights' own uncertainty on held-out
        windows (`lantern.generation.adaptive.thresholds`), saved with the final model."""
        with self.ema.applied() if self.cfg.ema.eval_ema else contextlib.nullcontext():
            model = self.plain_model()
            if model is not None:
                device = self.precision.device
                windows = [(x.to(device), y.to(device)) for x, y in self.threshold_batches]
                with self.precision.autocast():  # in the precision the model was evaluated in
                    self.adaptive = fit_thresholds(model, windows, bool(self.cfg.loop.pause_tokens))

    def finish(self) -> dict[str, Any]:
        self.fit_adaptive_thresholds()
        self.save_weights("final_model.pt")
        samples = []
        with self.ema.applied() if self.cfg.ema.eval_ema else contextlib.nullcontext():
            model = self.plain_model()
            if model is not None:
                with merged_state_dicts(model, self.lora):
                    export_weights(model, self.out)
                for i in range(self.cfg.eval.num_samples):
                    samples.append(self.evaluator.sample(model, i + 1))
                    self.log.say(f"--- sample {i + 1} ---\n{samples[-1].strip()}")
        self.log.say(f"Training complete: {self.step} steps in {self.log.elapsed():.0f}s | "
                     f"best val_loss {self.best_val:.4f} | outputs in {self.out}/")
        self.dist.barrier()
        return {"step": self.step, "best_val_loss": self.best_val, **self.metrics, "samples": samples,
                "elapsed_time": self.log.elapsed(), "output_dir": str(self.out)}


def export_weights(model: nn.Module, out: Path) -> None:
    """model.safetensors beside config.json and tokenizer.json: the portable weights."""
    from safetensors.torch import save_model

    tmp = out / ".model.safetensors.tmp"
    save_model(model, str(tmp))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(out / "model.safetensors")
    fsync_directory(out)


def train(cfg: TrainConfig, quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) a training run; returns the final metrics. Gradients are on whatever
    the caller's context (a `torch.no_grad()` around it would silently break every step)."""
    with torch.enable_grad():
        return Trainer(cfg, quiet).fit()

