"""Mixed precision against float32 references: float16 loss scaling keeps gradients that would
underflow, clipping acts on the true (unscaled) gradients, and bfloat16 training follows the
float32 loss curve while really computing in bfloat16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lantern.training.precision import Precision
from lantern.training.settings import PrecisionSection
from lantern.training.trainer import TrainConfig, Trainer

# float16's smallest subnormal is about 6e-8: gradients of this size flush to zero without scaling.
TINY_GRADIENT = 1e-8


def inputs() -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.rand(8, 16) + 0.5).half().float()  # exactly representable in float16


def reference_gradient(factor: float = TINY_GRADIENT) -> torch.Tensor:
    """The float32 gradient of the loss `float16_step` takes a step on."""
    layer = nn.Linear(16, 4, bias=False)
    nn.init.zeros_(layer.weight)
    (layer(inputs()).sum() * factor).backward()
    return layer.weight.grad


def float16_step(clip: float, factor: float = TINY_GRADIENT) -> torch.Tensor:
    """The weight after one float16 SGD step (lr 1) from zero weights, i.e. minus the gradient
    the step applied, on a loss whose float16 gradients are ~`factor`."""
    precision = Precision(PrecisionSection(device="cpu", dtype="float16"), torch.device("cpu"))
    layer = nn.Linear(16, 4, bias=False)
    nn.init.zeros_(layer.weight)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    with precision.autocast():
        out = layer(inputs())
    assert out.dtype == torch.float16  # the forward really ran in float16
    precision.backward(out.float().sum() * factor)
    precision.step(optimizer, layer.parameters(), clip)
    return layer.weight.detach()


def test_float16_gradients_below_its_range_survive_through_loss_scaling():
    """Without the scaler, float16 gradients of ~1e-8 are exactly zero and nothing learns."""
    assert torch.tensor(TINY_GRADIENT).half() == 0  # the underflow this test is about
    gradient = reference_gradient()
    assert gradient.min() > 2e-8
    torch.testing.assert_close(-float16_step(clip=0.0), gradient, rtol=2e-3, atol=0.0)


def test_clipping_acts_on_unscaled_gradients():
    """Clipping before unscaling would compare the norm scaled by 65536 with the limit: a clip
    that should not bite would, and one that should bite would shrink 65536 times too much.
    (Gradients of ~1e-3 here: torch's clip adds 1e-6 to the norm, which would blur ~1e-8.)"""
    gradient = reference_gradient(1e-3)
    norm = float(gradient.norm())
    torch.testing.assert_close(-float16_step(10 * norm, 1e-3), gradient, rtol=2e-3, atol=0.0)
    weight = float16_step(norm / 4, 1e-3)
    assert float(weight.norm()) == pytest.approx(norm / 4, rel=1e-3)  # clipped to the limit
    torch.testing.assert_close(-weight, gradient / 4, rtol=2e-3, atol=0.0)


BF16_RUN = dict(config="nano", hidden_size=32, num_heads=2, num_blocks=2, seq_length=16,
                batch_size=8, corpus_chars=20_000, eval_batches=1, sample_length=0, num_samples=0,
                log_interval=5, max_steps=50, eval_interval=50, save_interval=50,
                learning_rate=3e-3, warmup_steps=5, device="cpu")


def losses(out: Path, dtype: str, seen_dtypes: set[torch.dtype]) -> list[float]:
    trainer = Trainer(TrainConfig(output_dir=str(out), dtype=dtype, **BF16_RUN), quiet=True)
    layer = trainer.model.transformer.blocks[0].mlp.up
    layer.register_forward_hook(lambda _m, _i, output: seen_dtypes.add(output.dtype))
    trainer.fit()
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in records if "train_loss" in r]


def test_bfloat16_training_follows_the_float32_loss_curve(tmp_path):
    """50 steps under CPU bfloat16 autocast, as the trainer runs them, against float32."""
    seen32: set[torch.dtype] = set()
    seen16: set[torch.dtype] = set()
    full = losses(tmp_path / "fp32", "float32", seen32)
    half = losses(tmp_path / "bf16", "bfloat16", seen16)
    assert seen32 == {torch.float32} and seen16 == {torch.bfloat16}
    assert len(full) == len(half) == 10
    assert full[-1] < full[0] - 0.5  # the run learns, so the curves say something
    assert half != full  # bfloat16 rounding shows in the losses ...
    assert half == pytest.approx(full, abs=0.01)  # ... and stays close to float32 throughout
