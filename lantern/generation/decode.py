"""Autoregressive decoding with a KV cache that slides past the context length."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lantern.generation.sampling import next_token


def stream_tokens(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield each new (B, 1) token. The cache is allocated once; when it is full, the last
    three quarters of the context are re-encoded so the model never sees stale positions."""
    context = model.config.context_length
    keep = max(1, (3 * context) // 4)
    tokens = input_ids[:, -context:]
    cache = model.new_cache(input_ids.shape[0], max_length=context)
    logits, _ = model(tokens, cache=cache)
    for _ in range(max_new_tokens):
        token = next_token(logits[:, -1], temperature, top_k, top_p, generator)
        yield token
        tokens = torch.cat([tokens, token], dim=1)
        if cache.length >= context:
            tokens = tokens[:, -keep:]
            cache.reset()
            logits, _ = model(tokens, cache=cache)
        else:
            logits, _ = model(token, cache=cache)


@torch.no_grad()
def sample_tokens(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Prompt plus continuation (B, L + new). Rows that produced EOS are padded with EOS."""
    was_training = model.training
    model.eval()
    out = [input_ids]
    finished = torch.zeros(input_ids.shape[0], 1, dtype=torch.bool, device=input_ids.device)
    for token in stream_tokens(model, input_ids, max_new_tokens, temperature, top_k, top_p, generator):
        if eos_token_id is not None:
            token = token.masked_fill(finished, eos_token_id)
            finished |= token == eos_token_id
        out.append(token)
        if eos_token_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return torch.cat(out, dim=1)
