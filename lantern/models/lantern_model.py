"""LANTERNModel: a decoder-only transformer whose blocks can be re-applied with shared weights.

Layout (nanoGPT-style, pre-norm):

    ids -> token embedding (+ absolute positions) -> transformer -> lm_head -> logits
    transformer = [block_1 x steps, ..., block_n x steps] -> final norm

`model.transformer(h, steps_per_block=k)` runs the stack at any depth k, chosen per call.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.models.attention import KVCache
from lantern.models.layers import Block, make_norm
from lantern.models.positions import AbsolutePositions, Rotary

IGNORE_INDEX = -100


def causal_mask(
    query_length: int,
    past_length: int,
    key_padding: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Boolean (B|1, 1, L, past+L) mask, or None where SDPA's own causal flag is exact."""
    if key_padding is None and (past_length == 0 or query_length == 1):
        return None
    total = past_length + query_length
    rows = torch.arange(past_length, total, device=device)[:, None]
    mask = (torch.arange(total, device=device)[None, :] <= rows)[None, None]
    if key_padding is not None:
        mask = mask & key_padding[:, None, None, :total]
    return mask


class RecursiveTransformer(nn.Module):
    """The block stack plus the final norm: hidden states in, normalized hidden states out."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_blocks))
        self.norm = make_norm(config)
        self.rotary = (
            Rotary(config.head_dim, config.context_length, config.rope_theta)
            if config.position == "rope"
            else None
        )

    def forward(
        self,
        h: torch.Tensor,
        steps_per_block: int | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        steps = steps_per_block or self.config.steps_per_block
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + h.shape[1], device=h.device)[None]
        rope = self.rotary(position_ids) if self.rotary is not None else None
        mask = causal_mask(h.shape[1], past, key_padding, h.device)
        for b, block in enumerate(self.blocks):
            for step in range(steps):
                h = block(h, rope=rope, cache=cache, layer=b * steps + step, attn_mask=mask)
        if cache is not None:
            cache.advance(h.shape[1])
        return self.norm(h)


class LANTERNModel(nn.Module):
    """Token embedding, recursive transformer, and a language-model head (tied by default)."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = (
            AbsolutePositions(config.position, config.context_length, config.hidden_size)
            if config.position in ("learned", "sinusoidal")
            else None
        )
        self.embed_dropout = nn.Dropout(config.dropout)
        self.transformer = RecursiveTransformer(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init_weights)
        # Scaled init of the residual projections (GPT-2), by the effective depth.
        depth = config.num_blocks * config.steps_per_block
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, mean=0.0, std=config.init_std / math.sqrt(2 * depth))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        elif isinstance(module, AbsolutePositions) and module.kind == "learned":
            nn.init.normal_(module.table, mean=0.0, std=self.config.init_std)

    def get_embedding_matrix(self) -> torch.Tensor:
        """The (vocab, hidden) token embedding table, e.g. for semantic-dispersion signals."""
        return self.embed_tokens.weight

    def num_parameters(self) -> int:
        """Unique trainable parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, idx: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(idx)
        if self.positions is not None:
            h = h + self.positions(position_ids)
        return self.embed_dropout(h)

    def new_cache(
        self, batch_size: int, max_length: int | None = None, steps_per_block: int | None = None
    ) -> KVCache:
        """A KV cache sized for `max_length` positions at the given recursion depth."""
        cfg = self.config
        steps = steps_per_block or cfg.steps_per_block
        param = self.embed_tokens.weight
        return KVCache(
            num_layers=cfg.num_blocks * steps,
            batch_size=batch_size,
            kv_heads=cfg.kv_heads,
            head_dim=cfg.head_dim,
            max_length=max_length or cfg.context_length,
            device=param.device,
            dtype=param.dtype,
        )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        steps_per_block: int | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean next-token loss when targets are given.

        Targets equal to -100 are ignored (padding, THINK positions).
        """
        past = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + idx.shape[1], device=idx.device)[None]
        h = self.embed(idx, position_ids)
        h = self.transformer(
            h,
            steps_per_block=steps_per_block,
            cache=cache,
            position_ids=position_ids,
            key_padding=key_padding,
        )
        logits = self.lm_head(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a continuation of `input_ids` (B, L) with the KV cache; returns (B, L + new)."""
        from lantern.generation.decode import sample_tokens

        return sample_tokens(
            self,
            input_ids,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=eos_token_id,
            generator=generator,
        )

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu"
    ) -> LANTERNModel:
        """Load a model from a checkpoint file or a run directory; its config travels with it."""
        from lantern.checkpoint import load_model

        return load_model(path, device=device)[0]
