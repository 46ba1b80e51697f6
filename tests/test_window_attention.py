"""Blocked sliding-window attention against a written-out dense reference: values, gradients."""

from __future__ import annotations

import pytest
import torch

import lantern.models.attention as attention
from lantern.models.attention import blocked_window_attention
from lantern.models.lantern_model import LANTERNModel
from tests.conftest import tiny_config

# A dropout so small that no element is ever dropped (keep probability rounds to 1, scale to 1):
# the same values as none, through the path that dropout takes (SDPA under autograd).
NEVER_DROPS = 1e-30


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
              sink: int) -> torch.Tensor:
    """An explicit L x L band: query i sees key j <= i when i - j < window, or j < sink."""
    length = q.shape[2]
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    allowed = (j <= i) & ((i - j < window) | (j < sink))
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return weights @ v


@pytest.mark.parametrize("dropout_p", [0.0, NEVER_DROPS], ids=["cpu-kernel", "sdpa-autograd"])
@pytest.mark.parametrize(
    "length,window,sink,kv_heads",
    [
        (37, 8, 0, 2),  # not a multiple of the block; grouped-query
        (37, 8, 3, 4),  # sinks
        (38, 8, 0, 2),  # the tail starts right at window + sink
        (41, 8, 3, 4),
        (300, 100, 0, 2),  # the block (64) does not divide the window
        (300, 100, 5, 1),  # one key/value head, sinks
        (250, 70, 2, 4),
        (129, 64, 0, 4),
        (8, 8, 0, 4),  # window = L
        (5, 8, 1, 4),  # window > L
    ],
)
def test_blocked_window_attention_equals_written_out_reference(
    monkeypatch, length, window, sink, kv_heads, dropout_p
):
    monkeypatch.setattr(attention, "CHUNK_QUERIES", 64)  # several chunks per row
    torch.manual_seed(length + window + sink)
    q = torch.randn(2, 4, length, 16, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, kv_heads, length, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, kv_heads, length, 16, dtype=torch.float64, requires_grad=True)
    out = blocked_window_attention(q, k, v, window, sink, dropout_p)
    expected = reference(q, k, v, window, sink)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-10)


def test_windowed_model_equals_the_model_on_the_written_out_reference(monkeypatch):
    """Inside the model (RoPE before, grouped-query heads): logits and every parameter's
    gradient are those of the dense reference."""
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(context_length=160, num_blocks=1, position="rope",
                                     num_kv_heads=2, attention_window=32, attention_sink=2))
    x = torch.randint(0, 40, (2, 150))
    logits, loss = model(x, x)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    monkeypatch.setattr(attention, "blocked_window_attention",
                        lambda q, k, v, window, sink, dropout_p: reference(q, k, v, window, sink))
    expected_logits, expected_loss = model(x, x)
    expected_grads = torch.autograd.grad(expected_loss, list(model.parameters()))
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
