"""Recursive depth, sliding-window attention, the ring-buffer cache, depth schedules, pauses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lantern.errors import LanternError
from lantern.models.attention import window_allows
from lantern.models.lantern_model import LANTERNModel
from lantern.training.depth import DepthSchedule
from lantern.training.pause import IGNORE_INDEX, insert_pause_tokens, insert_pauses_after
from lantern.training.trainer import TrainConfig, train
from tests.conftest import tiny_config


def windowed_model(**overrides) -> LANTERNModel:
    torch.manual_seed(0)
    values = dict(context_length=64, num_blocks=1, steps_per_block=3, attention_window=8,
                  attention_sink=2, position="rope")
    values.update(overrides)
    return LANTERNModel(tiny_config(**values)).eval()


def test_depth_is_chosen_per_call_and_changes_outputs():
    model = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=2)).eval()
    x = torch.randint(0, 40, (2, 12))
    one, two, four = (model(x, steps_per_block=k)[0] for k in (1, 2, 4))
    assert torch.equal(two, model(x)[0])
    assert not torch.allclose(one, two) and not torch.allclose(two, four)


def test_window_mask_limits_what_a_query_sees():
    mask = window_allows(torch.arange(10), torch.arange(10), window=3, sink=1)
    assert mask[9].nonzero().flatten().tolist() == [0, 7, 8, 9]
    assert mask[2].nonzero().flatten().tolist() == [0, 1, 2]


def test_windowed_model_blocked_path_equals_dense_path():
    model = windowed_model()
    x = torch.randint(0, 40, (2, 50))
    blocked, _ = model(x)  # no mask: O(L * w) blocked attention
    far = x.clone()
    far[:, 5] = (far[:, 5] + 1) % 40  # outside every later window, and not a sink
    assert torch.allclose(model(far)[0][:, 30:], blocked[:, 30:], atol=1e-5)


def test_ring_cache_decoding_matches_full_forward_and_stays_bounded():
    model = windowed_model()
    x = torch.randint(0, 40, (2, 50))
    full, _ = model(x)
    cache = model.new_cache(2, 64, 3)
    outs = [model(x[:, :20], cache=cache)[0]]  # prefill longer than the window
    size = cache.nbytes()
    for i in range(20, 50):
        outs.append(model(x[:, i : i + 1], cache=cache)[0])
        assert cache.nbytes() == size
    assert cache.keys.shape[3] == 2 + 8  # sink + window slots, whatever the length
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_cache_built_deeper_serves_shallower_calls_and_fills_skipped_layers():
    model = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=3)).eval()
    x = torch.randint(0, 40, (1, 6))
    cache = model.new_cache(1, 16, 3)
    shallow, _ = model(x, steps_per_block=1, cache=cache)
    assert torch.allclose(shallow, model(x, steps_per_block=1)[0], atol=1e-5)
    # The skipped applications hold keys from the token's last state (one block: all equal).
    assert cache.keys[1, :, :, :6].abs().sum() > 0
    assert torch.equal(cache.keys[1, :, :, :6], cache.keys[2, :, :, :6])
    with pytest.raises(LanternError, match="built for 3 steps"):
        model(x, steps_per_block=4, cache=cache)


def test_prelude_and_coda_blocks_run_once_around_the_recursion():
    torch.manual_seed(0)
    config = tiny_config(num_blocks=3, prelude_blocks=1, coda_blocks=1, steps_per_block=3,
                         position="rope")
    model = LANTERNModel(config).eval()
    x = torch.randint(0, 40, (2, 10))
    t = model.transformer
    for depth in (1, 2, 5):
        # Written out: prelude once, the middle block `depth` times, coda once.
        ctx = t.prepare(10, None, None, x.device, depth)
        h = t.blocks[0](model.embed(x, torch.arange(10)[None]), rope=ctx.rope)
        for _ in range(depth):
            h = t.blocks[1](h, rope=ctx.rope)
        expected = model.head(t.norm(t.blocks[2](h, rope=ctx.rope)))
        assert torch.allclose(model(x, steps_per_block=depth)[0], expected, atol=1e-5)
    assert config.num_layers(4) == 6 and config.first_layer(2, 4) == 5
    with pytest.raises(LanternError, match="at least one of the 3 blocks"):
        tiny_config(num_blocks=3, prelude_blocks=2, coda_blocks=1)


def test_prelude_and_coda_models_decode_with_the_cache_as_without():
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(num_blocks=3, prelude_blocks=1, coda_blocks=1,
                                     steps_per_block=3, position="rope")).eval()
    x = torch.randint(0, 40, (2, 12))
    for depth in (1, 3):
        full, _ = model(x, steps_per_block=depth)
        cache = model.new_cache(2, 16, 3)
        outs = [model(x[:, :5], steps_per_block=depth, cache=cache)[0]]
        outs += [model(x[:, i:i + 1], steps_per_block=depth, cache=cache)[0] for i in range(5, 12)]
        assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_input_reinjection_has_a_trained_gate():
    model = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=3, reinject_input=True))
    x = torch.randint(0, 40, (2, 10))
    _, loss = model(x, x)
    loss.backward()
    assert model.transformer.reinject_gate.grad.abs().sum() > 0
    with torch.no_grad():
        model.transformer.reinject_gate.fill_(0.5)
    assert not torch.allclose(model(x)[0], LANTERNModel(model.config).eval()(x)[0])


def test_depth_schedules():
    torch.manual_seed(0)
    random = DepthSchedule.parse("random:1-4")
    assert {random.sample() for _ in range(200)} == {1, 2, 3, 4}
    assert DepthSchedule.parse("fixed:3").sample() == 3
    poisson = DepthSchedule.parse("poisson:3")
    draws = [poisson.sample() for _ in range(300)]
    assert min(draws) >= 1 and max(draws) <= 6 and 2.5 < sum(draws) / 300 < 3.5
    for bad in ("random:4-1", "fixed:0", "sometimes", "random:2"):
        with pytest.raises(LanternError):
            DepthSchedule.parse(bad)


def test_pause_tokens_are_inserted_with_ignored_targets():
    torch.manual_seed(0)
    seq = torch.arange(10, 31).repeat(3, 1)  # (3, 21): x and y are its shifts
    x, y = insert_pause_tokens(seq[:, :-1], seq[:, 1:], think_id=4, count=3)
    assert x.shape == y.shape == (3, 20)
    for row in range(3):
        real = x[row][x[row] != 4]
        assert torch.equal(real, seq[row, : len(real)])  # order kept, tail dropped
        assert (y[row][y[row] != IGNORE_INDEX] != 4).all()
        thinks = (x[row] == 4).nonzero().flatten()
        assert all(y[row, i - 1] == IGNORE_INDEX for i in thinks if i > 0)
    assert (x == 4).sum() >= 6


def test_pauses_after_a_marker_precede_what_followed_it():
    marker, think = 7, 4
    seq = torch.tensor([[10, 7, 11, 12, 7, 13, 14, 15, 16]])
    x, y = insert_pauses_after(seq[:, :-1], seq[:, 1:], think, marker, count=2)
    # Written out by hand: two THINK after each marker, the window cut to its length.
    assert x.tolist() == [[10, 7, 4, 4, 11, 12, 7, 4]]
    assert y.tolist() == [[7, -100, -100, 11, 12, 7, -100, -100]]
    none = torch.tensor([[10, 11, 12, 13]])
    assert torch.equal(insert_pauses_after(none[:, :-1], none[:, 1:], think, marker, 2)[0],
                       none[:, :-1])


def test_truncated_backprop_keeps_values_and_drops_early_gradients():
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=4, reinject_input=True))
    with torch.no_grad():
        model.transformer.reinject_gate.fill_(0.3)
    x = torch.randint(0, 40, (2, 10))
    full, full_loss = model(x, x)
    cut, cut_loss = model(x, x, backprop_steps=1)
    assert torch.equal(full, cut)  # the forward pass is the same
    gate = model.transformer.reinject_gate
    (full_grad,) = torch.autograd.grad(full_loss, gate)
    (cut_grad,) = torch.autograd.grad(cut_loss, gate)
    # Reference, written out: three steps without a graph, the last one with it.
    t = model.transformer
    h = model.embed(x, torch.arange(10)[None])
    ctx = t.prepare(10, None, None, x.device, 4)
    with torch.no_grad():
        state = t.apply_steps(h, h, 0, 0, 3, ctx)
    logits = model.head(t.norm(t.apply_steps(state, h, 0, 3, 4, ctx)))
    loss = F.cross_entropy(logits.view(-1, 40), x.reshape(-1))
    (reference_grad,) = torch.autograd.grad(loss, gate)
    assert torch.allclose(cut_grad, reference_grad, atol=1e-6)
    assert not torch.allclose(cut_grad, full_grad, atol=1e-4)


def test_training_with_depth_schedule_and_pause_tokens(tmp_path):
    cfg = TrainConfig(config="gpt-64", max_steps=4, batch_size=2, seq_length=32, corpus_chars=5000,
                      eval_interval=4, eval_batches=1, save_interval=4, sample_length=4,
                      num_samples=0, steps_per_block=2, depth_schedule="random:1-3",
                      pause_tokens=2, attention_window=8, output_dir=str(tmp_path / "run"))
    result = train(cfg, quiet=True)
    assert result["step"] == 4 and result["val_loss"] < 10
    with pytest.raises(LanternError, match="depth_schedule"):
        TrainConfig(depth_schedule="deep")
