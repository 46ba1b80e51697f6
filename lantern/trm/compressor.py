"""Phase 1: a weight-tied linear compressor of a host's hidden states, D -> D' -> D.

`compress(x) = (x - b) W^T`, `decompress(c) = c W + b` with one matrix W (D' x D) and one bias b.
The best such map is the top-D' principal subspace of the states (PCA), which gives the tests an
independent reference. Stage 1a trains on plain text, stage 1b continues on thinking
trajectories from a 1a checkpoint. A checkpoint is `<name>.safetensors` (W, b) plus
`<name>.json` (sizes, host fingerprint, layer, metrics).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from tqdm import tqdm

from lantern.data.stories import build_corpus
from lantern.data.text import read_text_file
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text
from lantern.training.loop import RunSettings, TrainingLoop, Updates, constant_schedule, start_run
from lantern.training.optim import make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection
from lantern.trm.host import Host, load_host
from lantern.trm.outputs import damage_reason, paired_files
from lantern.trm.problems import read_problems
from lantern.trm.settings import DEFAULT_WINDOW, CompressorConfig


class DimensionCompressor(nn.Module):
    def __init__(self, hidden_size: int, d_compressed: int) -> None:
        super().__init__()
        if not 0 < d_compressed <= hidden_size:
            raise LanternError(f"--d_compressed must be in 1..{hidden_size} (got {d_compressed})")
        self.weight = nn.Parameter(torch.empty(d_compressed, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        nn.init.orthogonal_(self.weight)

    @property
    def hidden_size(self) -> int:
        return self.weight.shape[1]

    @property
    def d_compressed(self) -> int:
        return self.weight.shape[0]

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.bias) @ self.weight.T

    def decompress(self, c: torch.Tensor) -> torch.Tensor:
        return c @ self.weight + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decompress(self.compress(x))


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """Mean cosine similarity and mean relative error ||x_hat - x|| / ||x|| over rows."""
    cosine = F.cosine_similarity(x_hat, x, dim=-1).mean().item()
    relative = ((x_hat - x).norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-8)).mean().item()
    return {"cosine": cosine, "relative_error": relative}


def save_compressor(path_stem: Path, comp: DimensionCompressor, info: dict) -> None:
    tensors = {"weight": comp.weight.detach().cpu().contiguous(),
               "bias": comp.bias.detach().cpu().contiguous()}
    atomic_write(path_stem.with_suffix(".safetensors"), lambda f: f.write(save_safetensors(tensors)))
    meta = {**info, "hidden_size": comp.hidden_size, "d_compressed": comp.d_compressed}
    atomic_write_text(path_stem.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def load_compressor(path: str | Path) -> tuple[DimensionCompressor, dict]:
    """A `.safetensors` file (with its `.json` beside it), or the stem of the pair."""
    weights, meta = paired_files(path, "compressor checkpoint")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        comp = DimensionCompressor(int(info["hidden_size"]), int(info["d_compressed"]))
        state = load_safetensors(weights.read_bytes())
    except (ValueError, KeyError, TypeError, SafetensorError) as exc:  # JSON, Unicode, fields
        raise LanternError(f"cannot read compressor checkpoint {weights}: it is damaged "
                           f"({damage_reason(exc)})") from None
    try:
        comp.load_state_dict(state)
    except RuntimeError as exc:
        raise LanternError(f"{weights} does not match {meta}: {str(exc).splitlines()[0]}") from None
    return comp.eval(), info


def check_compressor_fits(info: dict, hidden_size: int, fingerprint: str | None, layer: int | None,
                          what: str) -> None:
    """Refuse a compressor made for another hidden size (or another host / layer)."""
    if int(info["hidden_size"]) != hidden_size:
        raise LanternError(f"the compressor is for hidden size {info['hidden_size']}, not "
                           f"{hidden_size} (the hidden size of {what})")
    if fingerprint and info.get("host_fingerprint") and info["host_fingerprint"] != fingerprint:
        raise LanternError(f"the compressor was trained on another host than {what} "
                           f"(fingerprint {info['host_fingerprint']} vs {fingerprint})")
    if layer is not None and info.get("layer") is not None and int(info["layer"]) != layer:
        raise LanternError(f"the compressor is for layer {info['layer']}, but {what} is from "
                           f"layer {layer}")


COMMAND = "lantern trm compressor"


def stage_sequences(host: Host, cfg: CompressorConfig, say: Callable[[str], None]
                    ) -> list[list[int]]:
    """Token sequences: text windows (1a) or full thinking trajectories (1b)."""
    if cfg.stage == "1b":
        if cfg.data is None:
            raise LanternError("stage 1b needs --data: a problems JSONL file with worked steps")
        return [host.segments(p).full for p in read_problems(cfg.data)[:cfg.num_samples]]
    window = text_window(host, cfg.window, say)
    text = read_text_file(cfg.data) if cfg.data else "\n".join(build_corpus(
        cfg.num_samples * window + window))
    ids = host.encode(text)
    windows = [ids[i:i + window] for i in range(0, len(ids) - window + 1, window)]
    if not windows:
        raise LanternError(f"the text is shorter than one window of {window} tokens")
    return windows[:cfg.num_samples]


def text_window(host: Host, window: int | None, say: Callable[[str], None]) -> int:
    """--window, or DEFAULT_WINDOW clamped (with a note) to a host that reads fewer tokens; a
    --window longer than the host's context is refused by name."""
    context = getattr(host, "context_length", None)
    if window is not None:
        if context is not None and window > context:
            raise LanternError(f"--window {window} is longer than the host's {context}-token "
                               f"context; give --window {context} or less")
        return window
    if context is not None and context < DEFAULT_WINDOW:
        say(f"note: the host reads {context} tokens, fewer than the default --window "
            f"{DEFAULT_WINDOW}; using windows of {context}")
        return context
    return DEFAULT_WINDOW


class CompressorPhase:
    """Stage 1a or 1b as a phase of the training loop: one step per batch of states, evaluated
    and kept as `stage<S>_best` when the held-out cosine improves at each epoch's end."""

    def __init__(self, comp: DimensionCompressor, train: torch.Tensor, val: torch.Tensor,
                 cfg: CompressorConfig, info: dict, say: Callable[[str], None]) -> None:
        self.model, self.train, self.val, self.cfg, self.info, self.say = comp, train, val, cfg, info, say
        self.out = Path(cfg.output_dir)
        self.per_epoch = math.ceil(len(train) / cfg.batch_size)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.order = torch.arange(len(train))
        self.total, self.best, self.metrics = 0.0, -2.0, {}
        self.started = time.time()

    def step(self, index: int, updates: Updates) -> list[dict]:
        position = index % self.per_epoch
        if position == 0:
            self.order = torch.randperm(len(self.train), generator=self.generator)
            self.total, self.started = 0.0, time.time()
        x = self.train[self.order[position * self.cfg.batch_size:(position + 1) * self.cfg.batch_size]]
        self.total += updates(F.mse_loss(self.model(x), x)) * len(x)
        if position + 1 < self.per_epoch:
            return []
        epoch = index // self.per_epoch + 1
        with torch.no_grad():
            self.metrics = {f"val_{k}": v for k, v in
                            reconstruction_metrics(self.val, self.model(self.val)).items()}
        record = {"epoch": epoch, "train_loss": self.total / len(self.train), **self.metrics,
                  "seconds": time.time() - self.started}
        self.say(f"epoch {epoch}: train mse {record['train_loss']:.5f}  held-out cosine "
                 f"{self.metrics['val_cosine']:.4f}  relative error "
                 f"{self.metrics['val_relative_error']:.4f}")
        if self.metrics["val_cosine"] > self.best:
            self.best = self.metrics["val_cosine"]
            save_compressor(self.out / f"stage{self.cfg.stage}_best", self.model,
                            {**self.info, **self.metrics, "epoch": epoch})
        return [record]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "total": self.total,
                "best": self.best, "metrics": self.metrics}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.total = state["order"], float(state["total"])
        self.best, self.metrics = float(state["best"]), dict(state["metrics"])


def run_settings(cfg: CompressorConfig, per_epoch: int = 1, quiet: bool = False) -> RunSettings:
    """Where a stage writes; its checkpoints are `stage<S>_checkpoint_step_N.pt` (both stages
    may share a directory)."""
    return RunSettings(Path(cfg.output_dir), COMMAND, cfg.save_interval or per_epoch,
                       cfg.resume_from, cfg.overwrite,
                       tuple(f"stage{cfg.stage}_{kind}.{ext}" for kind in ("best", "final")
                             for ext in ("safetensors", "json")),
                       prefix=f"stage{cfg.stage}_", quiet=quiet)


def train_compressor(cfg: CompressorConfig, quiet: bool = False) -> dict:
    """Train (or continue) and write `stage<S>_best` and `stage<S>_final`; returns the final
    metrics."""
    resume = start_run(run_settings(cfg))
    say = (lambda *a: None) if quiet else tqdm.write
    host = load_host(cfg.host, pick_device(cfg.device))
    layer = host.resolve_layer(cfg.layer)
    sequences = stage_sequences(host, cfg, say)
    if len(sequences) < 2:
        raise LanternError("the compressor needs at least 2 sequences (some are held out)")
    random.Random(cfg.seed).shuffle(sequences)
    n_val = max(1, int(len(sequences) * cfg.val_fraction))
    states = host.states_of(sequences, layer)
    val = torch.cat(states[:n_val])
    train = torch.cat(states[n_val:])
    torch.manual_seed(cfg.seed)
    if cfg.init:
        comp, info = load_compressor(cfg.init)
        check_compressor_fits(info, host.hidden_size, host.fingerprint, layer, "this host")
        if comp.d_compressed != cfg.d_compressed:
            raise LanternError(f"--init has d_compressed {comp.d_compressed}, but --d_compressed is "
                               f"{cfg.d_compressed}")
    else:
        comp = DimensionCompressor(host.hidden_size, cfg.d_compressed)
        with torch.no_grad():
            comp.bias.copy_(train.mean(dim=0))
    optimizer = make_optimizer(comp, OptimizerSection(cfg.learning_rate, weight_decay=0.0))
    info = {"stage": cfg.stage, "layer": layer, "host_fingerprint": host.fingerprint,
            "config": asdict(cfg), "parameters": sum(p.numel() for p in comp.parameters())}
    say(f"compressor {host.hidden_size} -> {cfg.d_compressed}: {len(train)} training states, "
        f"{len(val)} held-out")
    phase = CompressorPhase(comp, train, val, cfg, info, say)
    loop = TrainingLoop(phase, run_settings(cfg, phase.per_epoch, quiet),
                        cfg.num_epochs * phase.per_epoch, optimizer,
                        Precision(PrecisionSection("cpu", "float32")),
                        constant_schedule(cfg.learning_rate), 0.0, asdict(cfg), resume)
    loop.run()
    save_compressor(Path(cfg.output_dir) / f"stage{cfg.stage}_final", comp,
                    {**info, **phase.metrics, "epoch": cfg.num_epochs})
    return {**phase.metrics, "best_val_cosine": phase.best, "parameters": info["parameters"]}
