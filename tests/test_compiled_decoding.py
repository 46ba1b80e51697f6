"""The compiled per-token step (`--compile`) against the plain model: the same logits at every
step, with history, several rows of different lengths, slides, a ring cache and recursion."""

from __future__ import annotations

import pytest
import torch

from lantern.errors import LanternError
from lantern.generation import compiled
from lantern.generation.adaptive.controller import GenerationController
from lantern.generation.core import Decoder, generate_stream
from lantern.generation.settings import GenerationConfig
from lantern.models import kv_cache
from lantern.models.lantern_model import LANTERNModel
from tests.conftest import tiny_config

needs_compiler = pytest.mark.skipif(not compiled.compiler_available(),
                                    reason="torch.compile on CPU needs a C++ compiler")


@pytest.fixture(autouse=True)
def quick_compile(monkeypatch):
    """Autotuning only chooses among GEMM kernels that compute the same product, and the C++
    wrapper only calls the same kernels from C++; together they cost a minute per model, so
    tests compile with freezing alone (which decides what the graph assumes of the weights)."""
    monkeypatch.setattr(compiled, "COMPILE_OPTIONS", {"freezing": True})


@pytest.fixture(scope="module")
def full_model() -> LANTERNModel:
    """Context 16: rows slide (re-encode their newest 11 tokens) several times in 30 steps."""
    return busy_model(context_length=16)


def busy_model(**overrides) -> LANTERNModel:
    """Weights far from their init, so attention is sharp and every position matters; one
    block (compiling costs time per layer, and every layer runs the same code)."""
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(**{"num_blocks": 1, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def dense_logits(model: LANTERNModel, ids: list[int]) -> torch.Tensor:
    """The reference: the whole sequence through the plain forward pass, no cache."""
    with torch.inference_mode():
        return model(torch.tensor([ids]))[0][0, -1]


def teacher_forced(model: LANTERNModel, prompts: list[list[int]], tokens: torch.Tensor,
                   reference) -> None:
    """Feed `tokens` (steps, rows) through a compiled decoder; after every step each row's logits
    must equal `reference(row's history, positions its cache holds)`."""
    decoder = Decoder(model, compile=True)
    decoder.add(prompts)
    calls = []  # every step must go through the compiled function
    step_function = decoder.token_step
    decoder.token_step = lambda *args: calls.append(1) or step_function(*args)
    for step in range(tokens.shape[0]):
        logits = decoder.step(tokens[step])
        for row in range(decoder.num_rows):
            held = int(decoder.cache.lengths[row])
            expected = reference(decoder.history[row], held)
            torch.testing.assert_close(logits[row], expected, atol=2e-4, rtol=1e-4,
                                       msg=f"step {step}, row {row}")
    assert len(calls) == tokens.shape[0]


@needs_compiler
def test_full_attention_rows_of_different_lengths_through_slides(full_model,
                                                                  monkeypatch):
    # Spans from 8: the step first attends to 8 of the 16 slots, then to all of them.
    monkeypatch.setattr(kv_cache, "MIN_TOKEN_SPAN", 8)
    model = full_model
    prompts = [[1, 2], [4, 5, 6], [9, 10, 11, 12, 13]]
    tokens = torch.randint(0, 40, (30, 3), generator=torch.Generator().manual_seed(1))
    teacher_forced(model, prompts, tokens,
                   lambda history, held: dense_logits(model, history[-held:]))


@needs_compiler
def test_ring_cache_window_sinks_grouped_query_and_recursion():
    # A window of 6 plus 2 sink positions: the ring's 8 slots are overwritten several times.
    model = busy_model(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, num_kv_heads=2,
                       attention_window=6, attention_sink=2, steps_per_block=2)
    prompts = [[3, 1, 4, 1, 5], [9, 2]]
    tokens = torch.randint(0, 40, (24, 2), generator=torch.Generator().manual_seed(2))
    teacher_forced(model, prompts, tokens,
                   lambda history, held: dense_logits(model, history))


@needs_compiler
def test_sampled_text_is_the_eager_text(full_model):
    # Three rows that all run to the length limit: the batch keeps the compiled shape.
    config = dict(temperature=1.0, top_k=20, max_new_tokens=40, seed=7)
    runs = [[(row, e.token) for row, e in generate_stream(
        full_model, None, [[1, 2, 3], [4, 5], [6]], GenerationConfig(**config, compile=flag))]
        for flag in (False, True)]
    assert runs[0] == runs[1]


@needs_compiler
def test_changed_weights_and_another_model_are_seen():
    """Freezing may fold weights into the compiled step as constants: new weights must never
    meet old kernels, and a second model must not run on the first one's."""
    model = busy_model(context_length=16)
    prompt, tokens = [[5, 6, 7]], torch.tensor([[8], [9], [10]])
    teacher_forced(model, prompt, tokens, lambda h, held: dense_logits(model, h))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.5)
    teacher_forced(model, prompt, tokens, lambda h, held: dense_logits(model, h))
    other = busy_model(context_length=16)  # same shapes, its own weights
    with torch.no_grad():
        other.transformer.blocks[0].mlp.up.weight.mul_(2.0)
    teacher_forced(other, prompt, tokens, lambda h, held: dense_logits(other, h))


def test_without_a_compiler_it_is_refused_in_one_line(monkeypatch, tiny_model):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(LanternError, match="needs a C\\+\\+ compiler"):
        Decoder(tiny_model, compile=True)


def test_adaptive_decoding_refuses_compile(tiny_model):
    with pytest.raises(LanternError, match="--compile has no effect on adaptive"):
        GenerationController(tiny_model, config=GenerationConfig(compile=True))


def test_the_span_a_compiled_step_attends_to():
    full = kv_cache.KVCache(1, 1, 1, 4, max_length=8192, device="cpu", dtype=torch.float32)
    assert [full.token_span(end) for end in (1, 256, 257, 512, 513, 5000, 8192)] == [
        256, 256, 512, 512, 1024, 8192, 8192]
    ring = kv_cache.KVCache(1, 1, 1, 4, max_length=8192, device="cpu", dtype=torch.float32,
                            window=64, sink=4)
    assert ring.token_span(1) == 68
