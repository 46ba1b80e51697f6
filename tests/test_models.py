"""The model: config validation, presets, positions, recursion, cache, loading."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from lantern.api import LLM
from lantern.config import PRESETS, LANTERNConfig, preset_config
from lantern.errors import LanternError
from lantern.models.lantern_model import LANTERNModel
from tests.conftest import tiny_config


def test_seed_000_presets_behave_as_the_guide_says():
    small, base = preset_config("small"), preset_config("base")
    assert (small.hidden_size, small.num_heads, small.num_blocks) == (256, 4, 1)
    assert (base.hidden_size, base.num_heads, base.num_blocks) == (512, 8, 2)


@pytest.mark.parametrize(
    "name, width, heads, ff, layers",
    [("gpt-64", 64, 2, 256, 2), ("gpt-128", 128, 4, 512, 2), ("gpt-256", 256, 8, 1024, 4),
     ("gpt-512", 512, 16, 2048, 6), ("lai-tiny", 384, 6, None, 8), ("lai-mini", 512, 8, None, 12),
     ("lai-small", 768, 12, None, 16), ("nano", 128, 4, None, 4)],
)
def test_seed_sizes_are_reachable_by_name(name, width, heads, ff, layers):
    cfg = preset_config(name)
    assert (cfg.hidden_size, cfg.num_heads, cfg.num_blocks) == (width, heads, layers)
    if ff is not None:
        assert cfg.ffn_size == ff


def test_every_preset_builds_a_model():
    for name in PRESETS:
        cfg = preset_config(name, vocab_size=50, hidden_size=32, num_heads=2, mlp_hidden_size=64)
        LANTERNModel(cfg)


@pytest.mark.parametrize("bad", [dict(hidden_size=30, num_heads=4), dict(mlp="relu"),
                                 dict(position="alibi"), dict(num_kv_heads=3),
                                 dict(steps_per_block=0)])
def test_invalid_configs_raise_a_clear_error(bad):
    with pytest.raises(LanternError, match="invalid model config"):
        tiny_config(**bad)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(LanternError, match="unknown preset 'huge'.*small"):
        preset_config("huge")


def test_config_json_round_trip():
    cfg = tiny_config(position="rope", norm="rmsnorm", mlp="swiglu", num_kv_heads=2)
    assert LANTERNConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("mlp,norm", [("gelu", "layernorm"), ("swiglu", "rmsnorm")])
def test_forward_loss_and_causality(position, mlp, norm):
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(position=position, mlp=mlp, norm=norm)).eval()
    x, y = torch.randint(0, 40, (2, 16)), torch.randint(0, 40, (2, 16))
    logits, loss = model(x, y)
    assert logits.shape == (2, 16, 40) and loss.item() == pytest.approx(math.log(40), abs=0.3)
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 40
    logits2, _ = model(changed)
    assert torch.allclose(logits[:, :10], logits2[:, :10], atol=1e-5)  # the future is invisible
    assert not torch.allclose(logits[:, 10:], logits2[:, 10:])


def test_ignored_targets_do_not_count():
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config())
    x = torch.randint(0, 40, (1, 8))
    y = x.clone()
    y[:, 4:] = -100
    _, partial = model(x, y)
    _, first_half = model(x[:, :4], x[:, :4])
    assert partial.item() == pytest.approx(first_half.item(), abs=1e-5)


def test_recursion_shares_weights_and_depth_is_chosen_per_call():
    torch.manual_seed(0)
    one = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=1))
    four = LANTERNModel(tiny_config(num_blocks=1, steps_per_block=4))
    assert one.num_parameters() == four.num_parameters()
    x = torch.randint(0, 40, (1, 8))
    h = four.embed(x, torch.arange(8)[None])
    assert not torch.allclose(four.transformer(h, steps_per_block=1), four.transformer(h))


def test_embeddings_are_tied_and_exposed():
    model = LANTERNModel(tiny_config())
    assert model.lm_head.weight is model.get_embedding_matrix()


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
def test_cached_decoding_matches_full_forward(position):
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(position=position, steps_per_block=2)).eval()
    x = torch.randint(0, 40, (2, 12))
    full, _ = model(x)
    cache = model.new_cache(2)
    parts = [model(x[:, :5], cache=cache)[0], model(x[:, 5:6], cache=cache)[0],
             model(x[:, 6:], cache=cache)[0]]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_generate_extends_past_the_context_and_stops_at_eos():
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(context_length=16)).eval()
    x = torch.randint(0, 40, (2, 5))
    out = LLM(model).generate(x, max_new_tokens=40, temperature=0.8, top_p=0.9)
    assert out.shape == (2, 45) and torch.equal(out[:, :5], x)
    greedy = LLM(model).generate(x, max_new_tokens=3, temperature=0)
    eos = int(greedy[0, 5])
    stopped = LLM(model).generate(x[:1], max_new_tokens=10, temperature=0, eos_token_id=eos)
    assert stopped.shape[1] == 6 and int(stopped[0, -1]) == eos


def test_the_model_imports_neither_its_loader_nor_its_sampler():
    """The loader and the decoding core import the model; `lantern.api` joins them."""
    code = ("import sys, lantern.models.lantern_model; "
            "print(sorted(m for m in sys.modules if m.startswith('lantern.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for upper in ("lantern.checkpoint", "lantern.generation", "lantern.api", "lantern.training"):
        assert f"'{upper}" not in loaded
