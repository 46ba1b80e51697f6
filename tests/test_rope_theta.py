"""A RoPE base other than 10000 (Llama 3 uses 500000) survives export and import: transformers
and llama.cpp compute the same function as LANTERN on positions long enough for the base to
matter, and the importers bring the base back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT, perturbed_model
from transformers import AutoModelForCausalLM

from lantern.export.gguf_export import export_gguf
from lantern.export.gguf_import import load_gguf
from lantern.export.hf_export import export_hf
from lantern.export.hf_import import load_hf_checkpoint
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

THETA = 500_000.0
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, num_kv_heads=2)


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return CharTokenizer.train([TINY_TEXT])


@pytest.fixture(scope="module")
def model(char_tok) -> LANTERNModel:
    return perturbed_model(char_tok, rope_theta=THETA, **LLAMA)


def long_inputs(vocab_size: int) -> torch.Tensor:
    """Two rows over the whole 64-token context: far positions are where the base shows."""
    return torch.randint(0, vocab_size, (2, 64), generator=torch.Generator().manual_seed(1))


def logits(model: LANTERNModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[0]


def with_theta(model: LANTERNModel, theta: float) -> LANTERNModel:
    other = LANTERNModel(replace(model.config, rope_theta=theta)).eval()
    other.load_state_dict(model.state_dict())
    return other


def test_the_base_changes_this_models_function(model, char_tok):
    """Otherwise the comparisons below could not tell 500000 from 10000."""
    x = long_inputs(char_tok.vocab_size)
    gap = (logits(model, x) - logits(with_theta(model, 10_000.0), x)).abs().max().item()
    assert gap > 0.1


def test_transformers_export_and_import_keep_the_base(model, char_tok, tmp_path):
    export_hf(model, char_tok, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = long_inputs(char_tok.vocab_size)
    with torch.no_grad():
        theirs = hf(x).logits
    assert (logits(model, x) - theirs).abs().max().item() < 1e-4
    assert hf.config.rope_parameters["rope_theta"] == THETA
    back, _ = load_hf_checkpoint(tmp_path / "hf")
    assert back.config.rope_theta == THETA
    assert torch.equal(logits(back, x), logits(model, x))


def test_gguf_export_and_import_keep_the_base(model, char_tok, tmp_path):
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    ids = long_inputs(char_tok.vocab_size)[0].tolist()
    with LlamaCppModel(tmp_path / "m.gguf", exact=True) as gguf:
        for end in (16, 40, 63):  # llama.cpp needs room for one more token
            with torch.no_grad():
                ours = torch.log_softmax(model(torch.tensor([ids[:end]]))[0][0, -1].double(), -1)
            gap = np.abs(ours.numpy() - gguf.next_token_logprobs(ids[:end])).max()
            assert gap < 1e-3, end  # measured: llama 2e-6 with the right base
    back, _ = load_gguf(tmp_path / "m.gguf")
    assert back.config.rope_theta == THETA
    x = long_inputs(char_tok.vocab_size)
    assert torch.equal(logits(back, x), logits(model, x))
