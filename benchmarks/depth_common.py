"""Shared by the depth, adaptive-depth and uncertainty benchmarks: tiny recursive models trained
on the built-in story corpus (cached between scripts), and their held-out windows.

Model: 1 block x 4 recursive steps, width 128, 4 heads, SwiGLU, RoPE, context 64; trained
500 steps (batch 16, AdamW 2e-3, dropout 0.05) on 300k characters of the built-in corpus.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from lantern.checkpoint import load_model
from lantern.data.batches import eval_windows
from lantern.models.lantern_model import LANTERNModel
from lantern.training.trainer import TrainConfig, prepare_data, train

TRAIN_DEPTH = 4
MODELS_DIR = Path(tempfile.gettempdir()) / "lantern_bench_models"


def train_config(name: str, steps: int, **overrides) -> TrainConfig:
    values = dict(config="small", hidden_size=128, num_heads=4, mlp_hidden_size=352,
                  steps_per_block=TRAIN_DEPTH, seq_length=64, batch_size=16,
                  learning_rate=2e-3, max_steps=steps, warmup_steps=50, dropout=0.05,
                  corpus_chars=300_000, eval_interval=steps, save_interval=steps,
                  eval_batches=10, num_samples=0, sample_length=8, seed=1234,
                  output_dir=str(MODELS_DIR / f"{name}_{steps}"), overwrite=True)
    values.update(overrides)
    return TrainConfig(**values)


def trained_model(name: str, steps: int = 500, **overrides) -> tuple[LANTERNModel, TrainConfig]:
    """Train (or reuse the cached run of) one benchmark model; returns it in eval mode."""
    cfg = train_config(name, steps, **overrides)
    final = Path(cfg.output_dir) / "final_model.pt"
    if final.exists():
        model, _, state = load_model(final)
        if state.get("train_config") == cfg.to_dict():
            return model.eval(), cfg
    print(f"training {name} ({steps} steps)...", flush=True)
    train(cfg, quiet=True)
    return load_model(final)[0].eval(), cfg


RECIPE = dict(num_blocks=3, prelude_blocks=1, coda_blocks=1, depth_schedule="poisson:4")
RECIPE_NAME = "story_recipe"


def recipe_model(steps: int = 500) -> tuple[LANTERNModel, TrainConfig, dict]:
    """The depth-extrapolation recipe on the story corpus (shared by the depth benchmarks),
    with its checkpoint dict (which holds the fitted adaptive thresholds)."""
    model, cfg = trained_model(RECIPE_NAME, steps, **RECIPE)
    return model, cfg, load_model(Path(cfg.output_dir) / "final_model.pt")[2]


def held_out_windows(cfg: TrainConfig, model: LANTERNModel, count: int) -> list[tuple]:
    """`count` batches of 16 held-out windows (the run's own validation split)."""
    _, tokenizer, _ = load_model(Path(cfg.output_dir) / "final_model.pt")
    data = prepare_data(cfg, tokenizer)
    return eval_windows(data.val_tokens, model.config.context_length, 16, count)


@torch.no_grad()
def held_out_loss(model: LANTERNModel, windows: list[tuple], depth: int) -> float:
    total, count = 0.0, 0
    for x, y in windows:
        _, loss = model(x, y, steps_per_block=depth)
        total, count = total + loss.item() * y.numel(), count + y.numel()
    return total / count
