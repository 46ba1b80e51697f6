"""The training loop: data -> model -> AdamW with warmup + cosine -> evals, logs, checkpoints.

Everything a run needs to continue exactly (weights, optimizer, schedule position, both RNG
states) goes into `checkpoint_step_N.pt`, so an interrupted and resumed run ends with the same
weights as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lantern.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lantern.config import LANTERNConfig, preset_config
from lantern.data.batches import WindowSampler, eval_windows
from lantern.data.stories import build_corpus
from lantern.data.text import read_text_file
from lantern.data.token_store import encode_text, is_token_file, load_tokens
from lantern.device import autocast, pick_device, pick_dtype
from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import (
    TOKENIZER_FILE,
    CharTokenizer,
    HFTokenizerAdapter,
    Tokenizer,
    resolve_tokenizer,
    tokenizer_from_json,
)
from lantern.tokenizers.base import EOS
from lantern.training.depth import DepthSchedule
from lantern.training.logs import LOG_FILE, PLOT_FILE, TrainingLog, plot_losses
from lantern.training.optim import learning_rate_at, make_optimizer
from lantern.training.pause import insert_pause_tokens

MODEL_SHAPE_FLAGS = ("hidden_size", "num_heads", "num_kv_heads", "num_blocks", "steps_per_block",
                     "mlp_hidden_size", "mlp", "norm", "position", "dropout", "attention_window",
                     "attention_sink", "reinject_input")


@dataclass
class TrainConfig:
    """Every training setting; saved in each checkpoint so a resumed run knows how it began."""

    config: str = "small"
    data_path: str | None = None
    val_data_path: str | None = None
    output_dir: str = "outputs"
    tokenizer: str = "char"
    encoding: str = "gpt2"
    vocab_size: int | None = None
    seq_length: int | None = None
    batch_size: int = 16
    learning_rate: float = 1e-3
    min_lr: float | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    max_steps: int = 400
    epochs: float | None = None
    warmup_steps: int = 50
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_interval: int = 100
    eval_batches: int = 20
    save_interval: int = 200
    log_interval: int = 25
    sample_length: int = 200
    num_samples: int = 3
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 1337
    val_fraction: float = 0.1
    corpus_chars: int = 2_000_000
    overwrite: bool = False
    resume_from: str | None = None
    # Model shape overrides (None = the preset's value).
    hidden_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    num_blocks: int | None = None
    steps_per_block: int | None = None
    mlp_hidden_size: int | None = None
    mlp: str | None = None
    norm: str | None = None
    position: str | None = None
    dropout: float | None = None
    attention_window: int | None = None
    attention_sink: int | None = None
    reinject_input: bool | None = None
    # Recursion depth per step (e.g. "random:1-4"; None = the model's depth) and THINK tokens
    # inserted per training window (pause-token training).
    depth_schedule: str | None = None
    pause_tokens: int = 0

    def __post_init__(self) -> None:
        positive = ("batch_size", "max_steps", "grad_accum", "eval_interval", "eval_batches",
                    "save_interval", "log_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise LanternError(f"--{name} must be positive (got {getattr(self, name)})")
        if self.learning_rate <= 0:
            raise LanternError(f"--learning_rate must be positive (got {self.learning_rate})")
        if self.seq_length is not None and self.seq_length < 2:
            raise LanternError(f"--seq_length must be at least 2 (got {self.seq_length})")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise LanternError("--warmup_steps, --grad_clip and --weight_decay must not be negative")
        if self.depth_schedule is not None:
            DepthSchedule.parse(self.depth_schedule)
        if self.pause_tokens < 0:
            raise LanternError(f"--pause_tokens must not be negative (got {self.pause_tokens})")
        if not 0.0 < self.val_fraction < 1.0:
            raise LanternError(f"--val_fraction must be between 0 and 1 (got {self.val_fraction})")


@dataclass
class RunData:
    tokenizer: Tokenizer
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    source: str


def builtin_corpus_text(num_chars: int, seed: int) -> str:
    """The built-in story corpus, each story closed by the end-of-sequence token."""
    return "".join(story + EOS for story in build_corpus(num_chars, seed=seed))


def make_tokenizer(cfg: TrainConfig, texts: list[str]) -> Tokenizer:
    if cfg.tokenizer == "char":
        return CharTokenizer.train(texts)
    if cfg.tokenizer == "bpe":
        return HFTokenizerAdapter.train_bpe(texts, vocab_size=cfg.vocab_size or 4096)
    if cfg.tokenizer == "tiktoken" or Path(cfg.tokenizer).exists():
        return resolve_tokenizer(cfg.tokenizer, cfg.encoding)
    raise LanternError(
        f"--tokenizer must be char, bpe, tiktoken or a tokenizer file (got {cfg.tokenizer!r})")


def prepare_data(cfg: TrainConfig, tokenizer: Tokenizer | None) -> RunData:
    """Build (or reuse) the tokenizer and the train/validation token arrays. Train and
    validation always share one vocabulary."""
    token_file = cfg.data_path is not None and is_token_file(cfg.data_path)
    known = cfg.tokenizer == "tiktoken" or Path(cfg.tokenizer).exists()
    if token_file and tokenizer is None and not known:
        raise LanternError("token files (.jsonl, .bin) need --tokenizer FILE: the tokenizer that made them")
    if cfg.data_path is None:
        text = builtin_corpus_text(cfg.corpus_chars, cfg.seed)
        tokenizer = tokenizer or make_tokenizer(cfg, [text])
        tokens = encode_text(text, tokenizer)
        source = f"built-in story corpus ({len(text):,} characters)"
    else:
        if tokenizer is None:
            texts = [] if token_file else [read_text_file(cfg.data_path)]
            if cfg.val_data_path and not is_token_file(cfg.val_data_path) and cfg.tokenizer == "char":
                texts.append(read_text_file(cfg.val_data_path))
            tokenizer = make_tokenizer(cfg, texts)
        tokens = load_tokens(cfg.data_path, tokenizer)
        source = cfg.data_path
    if cfg.val_data_path:
        val_tokens = load_tokens(cfg.val_data_path, tokenizer)
        train_tokens = tokens
    else:
        split = int(len(tokens) * (1.0 - cfg.val_fraction))
        train_tokens, val_tokens = tokens[:split], tokens[split:]
    return RunData(tokenizer, train_tokens, val_tokens, source)


def build_model_config(cfg: TrainConfig, vocab_size: int) -> LANTERNConfig:
    overrides = {name: getattr(cfg, name) for name in MODEL_SHAPE_FLAGS}
    base = preset_config(cfg.config, **overrides)
    context = cfg.seq_length or base.context_length
    return dataclasses.replace(base, vocab_size=vocab_size, context_length=context)


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


@torch.no_grad()
def evaluate(model: LANTERNModel, batches, device, dtype) -> dict[str, float]:
    """Mean loss, perplexity and next-token accuracy over fixed held-out windows."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            logits, loss = model(x, y)
        total_loss += loss.item() * y.numel()
        correct += (logits.argmax(-1) == y).sum().item()
        count += y.numel()
    model.train()
    val_loss = total_loss / count
    return {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0)),
            "val_accuracy": correct / count}


def sample_text(model: LANTERNModel, tokenizer: Tokenizer, prompt: list[int], length: int,
                seed: int, device) -> str:
    """A short sample from a fixed prompt, with its own RNG so training randomness is untouched."""
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt], device=device)
    out = model.generate(ids, max_new_tokens=length, temperature=0.8, top_k=40,
                         eos_token_id=tokenizer.eos_id, generator=generator)
    return tokenizer.decode(out[0, len(prompt):].tolist(), skip_special_tokens=True)


def sample_prompt(data: RunData) -> list[int]:
    """Documents separated by EOS start a fresh one; other text continues a held-out line."""
    eos = data.tokenizer.eos_id
    head = np.asarray(data.train_tokens[: 1 << 20])
    if eos is not None and np.count_nonzero(head == eos) > 1:
        return [eos]
    return [int(t) for t in data.val_tokens[:16]]


def resolve_resume(cfg_overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved training settings, with the flags given now taking precedence."""
    path = Path(cfg_overrides["resume_from"])
    file = latest_checkpoint(path) if path.is_dir() else path
    state = load_checkpoint(file)
    if "optimizer_state_dict" not in state or "train_config" not in state:
        raise LanternError(f"{file} holds weights only; resume needs a checkpoint_step_N.pt file")
    saved = dict(state["train_config"])
    for name in MODEL_SHAPE_FLAGS + ("config", "tokenizer", "vocab_size"):
        saved.pop(name, None)
    merged = {**state["train_config"], **saved, **cfg_overrides,
              "resume_from": str(file), "overwrite": False}
    if "output_dir" not in cfg_overrides:
        merged["output_dir"] = str(file.parent)
    return TrainConfig(**merged), state


def train(cfg: TrainConfig, quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) a training run; returns the final metrics."""
    out = Path(cfg.output_dir)
    state = None
    if cfg.resume_from:
        path = Path(cfg.resume_from)
        state = load_checkpoint(latest_checkpoint(path) if path.is_dir() else path)
    else:
        check_output_dir(out, cfg.overwrite)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    say = (lambda *a, **k: None) if quiet else tqdm.write

    tokenizer = tokenizer_from_json(state["tokenizer"]) if state else None
    if tokenizer is None and cfg.tokenizer == "char" and cfg.vocab_size:
        say(f"note: --vocab_size {cfg.vocab_size} ignored: a character vocabulary comes from the text")
    data = prepare_data(cfg, tokenizer)
    model_config = (LANTERNConfig.from_dict(state["config"]) if state
                    else build_model_config(cfg, data.tokenizer.vocab_size))
    seq_length = model_config.context_length
    sampler = WindowSampler(data.train_tokens, seq_length, cfg.batch_size, cfg.seed)
    val_batches = eval_windows(data.val_tokens, seq_length, cfg.batch_size, cfg.eval_batches)
    tokens_per_step = cfg.batch_size * seq_length * cfg.grad_accum
    max_steps = cfg.max_steps
    if cfg.epochs is not None:
        max_steps = max(1, math.ceil(cfg.epochs * len(data.train_tokens) / tokens_per_step))

    model = LANTERNModel(model_config).to(device)
    optimizer = make_optimizer(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    step, best_val = 0, float("inf")
    if state:
        model.load_state_dict(state["model_state_dict"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        sampler.set_state(state["rng"]["batches"])
        torch.set_rng_state(state["rng"]["torch"])
        step, best_val = int(state["step"]), float(state["best_val_loss"])
    out.mkdir(parents=True, exist_ok=True)
    log = TrainingLog(out, resume_step=step if state else None)
    if not state:
        log.path.unlink(missing_ok=True)
    atomic_write_text(out / TOKENIZER_FILE, data.tokenizer.to_json())
    atomic_write_text(out / "config.json", model_config.to_json())
    min_lr = cfg.min_lr if cfg.min_lr is not None else cfg.learning_rate / 10
    prompt = sample_prompt(data)

    def payload(full: bool, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model_state_dict": model.state_dict(),
            "config": model_config.to_dict(),
            "tokenizer": data.tokenizer.to_json(),
            "step": step,
            "epoch": step * tokens_per_step / len(data.train_tokens),
            "val_loss": (metrics or {}).get("val_loss"),
            "best_val_loss": best_val,
            "train_config": dataclasses.asdict(cfg),
        }
        if full:
            record["optimizer_state_dict"] = optimizer.state_dict()
            record["rng"] = {"torch": torch.get_rng_state(), "batches": sampler.state()}
        return record

    say(f"Data: {data.source} | train {len(data.train_tokens):,} tokens | "
        f"val {len(data.val_tokens):,} tokens | vocab {data.tokenizer.vocab_size} "
        f"({data.tokenizer.kind})")
    say(f"Model: {model.num_parameters():,} parameters | {model_config.num_blocks} blocks x "
        f"{model_config.steps_per_block} steps | width {model_config.hidden_size} | "
        f"context {seq_length} | device {device.type} | dtype {str(dtype).removeprefix('torch.')}")
    if state:
        say(f"Resumed from {cfg.resume_from} at step {step}")

    depths = DepthSchedule.parse(cfg.depth_schedule) if cfg.depth_schedule else None
    think_id = data.tokenizer.think_id
    if cfg.pause_tokens and think_id is None:
        raise LanternError("--pause_tokens needs a tokenizer with a <think> token")
    metrics: dict[str, float] = {}
    start_time = time.perf_counter()
    interval_start, interval_tokens, interval_steps, interval_loss = start_time, 0, 0, 0.0
    model.train()
    bar = tqdm(total=max_steps, initial=step, unit="step", dynamic_ncols=True, disable=quiet or None,
               file=sys.stderr)
    try:
        while step < max_steps:
            lr = learning_rate_at(step, cfg.learning_rate, min_lr, cfg.warmup_steps, max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for _ in range(cfg.grad_accum):
                x, y = sampler.next_batch()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cfg.pause_tokens:
                    x, y = insert_pause_tokens(x, y, think_id, cfg.pause_tokens)
                with autocast(device, dtype):
                    _, loss = model(x, y, steps_per_block=depths.sample() if depths else None)
                (loss / cfg.grad_accum).backward()
                loss_sum += loss.item()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_loss = loss_sum / cfg.grad_accum
            interval_loss += train_loss
            interval_tokens += tokens_per_step
            interval_steps += 1
            bar.update(1)
            if step % cfg.log_interval == 0 or step == max_steps:
                now = time.perf_counter()
                rate = interval_tokens / max(now - interval_start, 1e-9)
                its = interval_steps / max(now - interval_start, 1e-9)
                mean_loss = interval_loss / interval_steps
                bar.set_postfix(loss=f"{mean_loss:.4f}", tok_s=f"{rate:,.0f}")
                say(f"Iter {step:>6}/{max_steps} | Loss: {mean_loss:.4f} | LR: {lr:.2e} | "
                    f"Speed: {its:.1f} it/s, {rate:,.0f} tok/s")
                log.write({"step": step, "epoch": step * tokens_per_step / len(data.train_tokens),
                           "train_loss": mean_loss, "learning_rate": lr,
                           "elapsed_time": now - start_time, "tokens_per_second": rate})
                interval_start, interval_tokens, interval_steps, interval_loss = now, 0, 0, 0.0
            if step % cfg.eval_interval == 0 or step == max_steps:
                metrics = evaluate(model, val_batches, device, dtype)
                sample = sample_text(model, data.tokenizer, prompt, cfg.sample_length, cfg.seed, device)
                say(f"Eval step {step} | val_loss {metrics['val_loss']:.4f} | "
                    f"perplexity {metrics['val_perplexity']:.2f} | "
                    f"accuracy {100 * metrics['val_accuracy']:.1f}%")
                say(f"  Sample: {sample[:300]!r}")
                log.write({"step": step, **metrics})
                if metrics["val_loss"] < best_val:
                    best_val = metrics["val_loss"]
                    save_checkpoint(out / "best_model.pt", payload(False, metrics))
                plot_losses(log.records(), out / PLOT_FILE)
            if step % cfg.save_interval == 0 or step == max_steps:
                save_checkpoint(out / f"checkpoint_step_{step}.pt", payload(True, metrics))
            if step % cfg.eval_interval == 0 or step % cfg.save_interval == 0:
                interval_start = time.perf_counter()  # speed excludes evals and saves
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(out / f"checkpoint_step_{step}.pt", payload(True, metrics))
        say(f"\nInterrupted: saved {out / f'checkpoint_step_{step}.pt'}; continue with "
            f"`lantern train --resume_from {out}`")
        raise
    bar.close()
    save_checkpoint(out / "final_model.pt", payload(False, metrics))
    export_weights(model, out)
    elapsed = time.perf_counter() - start_time
    say(f"Training complete: {step} steps in {elapsed:.0f}s | best val_loss {best_val:.4f} | "
        f"outputs in {out}/")
    samples = []
    for i in range(cfg.num_samples):
        samples.append(sample_text(model, data.tokenizer, prompt, cfg.sample_length, cfg.seed + i + 1,
                                   device))
        say(f"--- sample {i + 1} ---\n{samples[-1].strip()}")
    return {"step": step, "best_val_loss": best_val, **metrics, "samples": samples,
            "elapsed_time": elapsed, "output_dir": str(out)}


def export_weights(model: LANTERNModel, out: Path) -> None:
    """model.safetensors beside config.json and tokenizer.json: the portable weights."""
    from safetensors.torch import save_model

    tmp = out / ".model.safetensors.tmp"
    save_model(model, str(tmp))
    tmp.replace(out / "model.safetensors")
