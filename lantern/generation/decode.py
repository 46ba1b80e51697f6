"""Autoregressive decoding with a KV cache that is allocated once and slides past the context.

Prompts of different lengths are left-padded: each row gets its own position ids and a
key-padding mask, so a padded row decodes exactly as it would alone. When the window reaches
the context length, the last three quarters of it are re-encoded from scratch (fresh positions,
fresh keys and values), so generation runs on indefinitely and never attends to stale entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from lantern.errors import LanternError
from lantern.generation.sampling import SamplingConfig, choose

KEEP_FRACTION = 0.75  # of the context, re-encoded when the window is full


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, valid) of shape (B, longest): prompts right-aligned, `valid` False on padding."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise LanternError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        valid[row, width - len(prompt):] = True
    return ids.to(device), valid.to(device)


class Decoder:
    """The tokens in view (B, <= context), their KV cache, and one forward per new token."""

    def __init__(
        self,
        model,
        input_ids: torch.Tensor,
        valid: torch.Tensor | None = None,
        steps_per_block: int | None = None,
    ) -> None:
        self.model = model
        self.steps_per_block = steps_per_block
        self.context = model.config.context_length
        self.keep = max(1, int(self.context * KEEP_FRACTION))
        batch = input_ids.shape[0]
        device = input_ids.device
        self.padded = valid is not None and not bool(valid.all())
        self.tokens = torch.zeros((batch, self.context), dtype=torch.long, device=device)
        self.valid = torch.ones((batch, self.context), dtype=torch.bool, device=device)
        self.positions = torch.zeros((batch, self.context), dtype=torch.long, device=device)
        self.cache = model.new_cache(batch, max_length=self.context, steps_per_block=steps_per_block)
        self.length = 0
        self.last_logits = self._prefill(input_ids, valid)

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    def _prefill(self, ids: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        ids = ids[:, -self.context:]
        length = ids.shape[1]
        self.tokens[:, :length] = ids
        if valid is not None:
            self.valid[:, :length] = valid[:, -self.context:]
        self.length = length
        return self._encode_window()

    def _encode_window(self) -> torch.Tensor:
        """Forget the cache and encode everything in view (prompt, or the slid window)."""
        self.cache.reset()
        length = self.length
        if self.padded:
            valid = self.valid[:, :length]
            self.positions[:, :length] = (valid.cumsum(dim=1) - 1).clamp(min=0)
        else:
            self.positions[:, :length] = torch.arange(length, device=self.tokens.device)
        return self._forward(0, length)

    def _forward(self, start: int, end: int) -> torch.Tensor:
        logits, _ = self.model(
            self.tokens[:, start:end],
            cache=self.cache,
            steps_per_block=self.steps_per_block,
            position_ids=self.positions[:, start:end] if self.padded else self.positions[:1, start:end],
            key_padding=self.valid[:, :end] if self.padded else None,
        )
        return logits[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Append one token per row (B, 1); return the next-token logits (B, V)."""
        if self.length == self.context:
            shift = self.context - (self.keep - 1)
            self.tokens[:, : self.keep - 1] = self.tokens[:, shift:].clone()
            self.valid[:, : self.keep - 1] = self.valid[:, shift:].clone()
            self.length = self.keep
            self.tokens[:, self.length - 1] = token[:, 0]
            self.last_logits = self._encode_window()
            return self.last_logits
        position = self.positions[:, self.length - 1] + 1
        self.tokens[:, self.length] = token[:, 0]
        self.positions[:, self.length] = position
        self.length += 1
        self.last_logits = self._forward(self.length - 1, self.length)
        return self.last_logits

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) batch rows, e.g. to follow the surviving beams."""
        self.tokens = self.tokens[rows]
        self.valid = self.valid[rows]
        self.positions = self.positions[rows]
        self.last_logits = self.last_logits[rows]
        self.cache.select(rows)


def token_counts(input_ids: torch.Tensor, valid: torch.Tensor | None, vocab_size: int) -> torch.Tensor:
    """(B, V) occurrences of each token in each prompt, padding excluded."""
    counts = torch.zeros((input_ids.shape[0], vocab_size), dtype=torch.long, device=input_ids.device)
    ones = torch.ones_like(input_ids) if valid is None else valid.long()
    return counts.scatter_add_(1, input_ids, ones)


@torch.inference_mode()
def stream_tokens(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    valid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    steps_per_block: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield each new (B, 1) token of every row. `valid` marks left padding (False)."""
    sampling = sampling or SamplingConfig()
    rules = sampling.rules()
    counts = None
    if any(rule.needs_counts for rule in rules):
        counts = token_counts(input_ids, valid, model.config.vocab_size)
    decoder = Decoder(model, input_ids, valid, steps_per_block)
    logits = decoder.last_logits
    for i in range(max_new_tokens):
        token = choose(logits, rules, sampling.greedy, counts, generator)
        if counts is not None:
            counts.scatter_add_(1, token, torch.ones_like(token))
        yield token
        if i + 1 < max_new_tokens:
            logits = decoder.step(token)


@torch.inference_mode()
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
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    out = [input_ids]
    finished = torch.zeros(input_ids.shape[0], 1, dtype=torch.bool, device=input_ids.device)
    for token in stream_tokens(model, input_ids, max_new_tokens, sampling, generator=generator):
        if eos_token_id is not None:
            token = token.masked_fill(finished, eos_token_id)
            finished |= token == eos_token_id
        out.append(token)
        if eos_token_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return torch.cat(out, dim=1)
