"""The per-token decoding step compiled into one native function (`torch.compile`, inductor).

A small model's token is mostly overhead in eager PyTorch: about 50 µs per module call and a few
µs per operator on a CPU, so a 4 x 128 model spends ~4 ms a token for ~0.2 ms of arithmetic.
Compiled, one token's whole pass (embedding, every block, the final norm and head) becomes one
generated C++ function: with freezing (inference only), the matrix products run inductor's own
kernels chosen for these exact shapes (max-autotune's C++ template), and the C++ wrapper calls
them without returning to Python. The graph only reads the cache: each query attends over the
slots it may see through a mask plus its own new key (`KVCache.plan_token`, `attend_cached`),
and the token's keys and values come back to be stored with one scatter per tensor
(`KVCache.commit_token`). So it has no host syncs and no data-dependent shapes, and it never
copies the cache (mutating a view of a graph input would copy it whole every token).

Weights changed after compiling are seen by the next step (tested): parameters stay inputs of the
graph. Prefill and the context slide stay eager: they run once per prompt or per slide.
"""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Callable

import torch

from lantern.errors import LanternError
from lantern.models.kv_cache import KVCache
from lantern.models.lantern_model import LANTERNModel

# Inductor's settings for the step; `freezing` and `max_autotune` let it use its own GEMM kernels
# at one row (a 4 x 128 model: 2.1 ms a call with none of these, 1.1 ms with all of them and
# Dynamo's guards skipped, which LANTERN does not do).
COMPILE_OPTIONS = {
    "freezing": True,
    "cpp_wrapper": True,
    "max_autotune": True,
    "max_autotune_gemm_backends": "CPP,ATEN",
}

TokenStep = Callable[[LANTERNModel, KVCache, torch.Tensor, torch.Tensor, int, int],
                     tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def token_logits(
    model: LANTERNModel, cache: KVCache, tokens: torch.Tensor, positions: torch.Tensor, steps: int,
    span: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token logits (rows, V) after one new token per row (rows, 1) at `positions`
    (rows, 1), every row already holding history in `cache` (only read, its first `span`
    slots); and the token's keys and values (layers, rows, kv heads, 1, D) for
    `KVCache.commit_token`."""
    transformer = model.transformer
    h = model.embed(tokens, positions)
    ctx = transformer.prepare(1, cache, positions, tokens.device, steps, span=span)
    h = transformer.run(h, steps, ctx)
    logits = model.head(transformer.norm(h))[:, -1].float()
    pending = [ctx.write.pending[layer] for layer in sorted(ctx.write.pending)]
    return logits, torch.stack([k for k, _ in pending]), torch.stack([v for _, v in pending])


def compiler_available() -> bool:
    """Inductor builds C++ on CPU: without a compiler the first step would fail mid-generation."""
    compiler = sysconfig.get_config_var("CXX") or "c++"
    return any(shutil.which(c) for c in (compiler.split()[0], "g++", "c++", "clang++"))


def check_compiler() -> None:
    if not compiler_available():
        raise LanternError("--compile needs a C++ compiler (g++ or clang++) on the PATH; "
                           "install one (e.g. apt install g++) or drop --compile")


def compiled_step() -> TokenStep:
    """The compiled step (one per set of options: a new `torch.compile` wrapper would make
    Dynamo compile again). Each new batch size, span or depth compiles once more."""
    check_compiler()
    key = tuple(sorted(COMPILE_OPTIONS.items()))
    if key not in _STEPS:
        _STEPS[key] = torch.compile(token_logits, fullgraph=True, dynamic=False,
                                    options=COMPILE_OPTIONS)
    return _STEPS[key]


_STEPS: dict[tuple, TokenStep] = {}
