"""LANTERNModel: a decoder-only transformer whose blocks can be re-applied with shared weights.

Layout (nanoGPT-style, pre-norm):

    ids -> token embedding (+ absolute positions) -> transformer -> lm_head -> logits
    transformer = [block_1 x steps, ..., block_n x steps] -> final norm

`model.transformer(h, steps_per_block=k)` runs the stack at any depth k, chosen per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.models.kv_cache import CacheWrite, KVCache
from lantern.models.layers import Block, make_norm
from lantern.models.positions import AbsolutePositions, Rotary

IGNORE_INDEX = -100


def positions_after(
    cache: KVCache | None, length: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """Position ids (B|1, L) of `length` new tokens after each row's cached ones, and one past
    the largest of them."""
    position_ids = torch.arange(length, device=device)[None]
    if cache is None or cache.batch_size == 0:
        return position_ids, length
    return cache.lengths[:, None] + position_ids, length + int(cache.lengths.max())


@dataclass
class StepContext:
    """What every block application of one forward call shares: positions, cache, its plan."""

    rope: tuple[torch.Tensor, torch.Tensor] | None
    cache: KVCache | None
    write: CacheWrite | None  # where this call's keys/values go in the cache
    stride: int  # the depth the cache was built for: cache layers per recurrent block
    positions: torch.Tensor  # (B|1, L)


class RecursiveTransformer(nn.Module):
    """The block stack plus the final norm: hidden states in, normalized hidden states out.

    With `reinject_input`, each re-application of a block adds a learned, per-channel gated copy
    of that block's input (`h <- h + gate * x`), so deep recursions keep sight of the tokens.
    """

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
        self.reinject_gate = (
            nn.Parameter(torch.zeros(config.num_blocks, config.hidden_size))
            if config.reinject_input
            else None
        )

    def prepare(
        self,
        length: int,
        cache: KVCache | None,
        position_ids: torch.Tensor | None,
        device: torch.device,
        steps: int,
        span: int | None = None,
    ) -> StepContext:
        """Positions, and the cache plan, for `length` new tokens after each row's cached ones.
        `span`: one token per row after history, attending to the first `span` slots, planned
        without host syncs and without writing the cache (a compiled step)."""
        if position_ids is None:
            position_ids = positions_after(cache, length, device)[0]
        rope = self.rotary(position_ids) if self.rotary is not None else None
        stride = steps
        write = None
        if cache is not None:
            if cache.steps_per_block is not None:
                stride = cache.steps_per_block
                if steps > stride:
                    raise LanternError(
                        f"this cache was built for {stride} steps per block; {steps} were asked"
                    )
            if span is not None:
                write = cache.plan_token(position_ids, span)
            else:
                write = cache.plan(position_ids.expand(cache.batch_size, -1))
        return StepContext(rope, cache, write, stride, position_ids)

    def finish(self, ctx: StepContext) -> None:
        """Record the call's positions in the cache, once every layer has written."""
        if ctx.cache is not None and ctx.write is not None:
            ctx.cache.advance(ctx.positions.expand(ctx.cache.batch_size, -1), ctx.write)

    def new_cache(
        self, batch_size: int, max_length: int, steps: int, like: torch.Tensor
    ) -> KVCache:
        """A cache for calls of up to `steps` steps per block, on `like`'s device and dtype."""
        cfg = self.config
        return KVCache(
            num_layers=cfg.num_layers(steps),
            batch_size=batch_size,
            kv_heads=cfg.kv_heads,
            head_dim=cfg.head_dim,
            max_length=max_length,
            device=like.device,
            dtype=like.dtype,
            window=cfg.attention_window,
            sink=cfg.attention_sink,
            steps_per_block=steps,
        )

    def reinject(
        self, h: torch.Tensor, block_input: torch.Tensor, block: int, step: int
    ) -> torch.Tensor:
        if self.reinject_gate is None or step == 0:
            return h
        return h + self.reinject_gate[block] * block_input

    def apply_steps(
        self, h: torch.Tensor, block_input: torch.Tensor, block: int, start: int, stop: int,
        ctx: StepContext,
    ) -> torch.Tensor:
        """Apply block `block` for recursion steps start..stop-1 (stop > start continues it)."""
        module = self.blocks[block]
        for step in range(start, stop):
            h = self.reinject(h, block_input, block, step)
            h = module(h, rope=ctx.rope, cache=ctx.cache,
                       layer=self.config.first_layer(block, ctx.stride) + step, write=ctx.write)
        return h

    def fill_skipped(
        self, h: torch.Tensor, block_input: torch.Tensor, block: int, depth: int, ctx: StepContext
    ) -> None:
        """Cache rule for a token run shallower than the cache: its skipped applications get
        the keys/values the block would compute from the token's last hidden state (as if it had
        reached a fixed point), so deeper tokens later always find every layer filled. This
        costs one key/value projection per block, not a block application."""
        cached = self.config.block_steps(block, ctx.stride)
        if ctx.cache is None or depth >= cached:
            return
        module = self.blocks[block]
        x = module.attn_norm(self.reinject(h, block_input, block, depth))
        first = self.config.first_layer(block, ctx.stride)
        layers = range(first + depth, first + cached)
        module.attn.fill_cache(x, ctx.rope, ctx.cache, layers, ctx.write)

    def run(
        self, h: torch.Tensor, steps: int, ctx: StepContext, backprop_steps: int | None = None
    ) -> torch.Tensor:
        """Every block at `steps` steps, within a prepared call (the cache not yet advanced).

        `backprop_steps=k` keeps gradients for each block's last k applications only (truncated
        backpropagation through the recurrence): deep draws cost the memory of k, and the early
        steps learn only through the shared weights' later uses."""
        for b in range(len(self.blocks)):
            block_input, depth = h, self.config.block_steps(b, steps)
            free = max(depth - backprop_steps, 0) if backprop_steps else 0
            with torch.no_grad():
                h = self.apply_steps(h, block_input, b, 0, free, ctx)
            h = self.apply_steps(h, block_input, b, free, depth, ctx)
            self.fill_skipped(h, block_input, b, depth, ctx)
        return h

    def forward(
        self,
        h: torch.Tensor,
        steps_per_block: int | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        backprop_steps: int | None = None,
    ) -> torch.Tensor:
        steps = steps_per_block or self.config.steps_per_block
        ctx = self.prepare(h.shape[1], cache, position_ids, h.device, steps)
        h = self.run(h, steps, ctx, backprop_steps)
        self.finish(ctx)
        return self.norm(h)


class LANTERNModel(nn.Module):
    """Token embedding, recursive transformer, and a language-model head (tied by default).

    Loading and sampling live above the model, which imports neither: `lantern.api.LLM`
    (`from_pretrained`, `generate`) joins it to `lantern.checkpoint` and the decoding core."""

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
        depth = config.num_layers()
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

    @property
    def positions_unbounded(self) -> bool:
        """Whether positions past the context can be computed (RoPE, sinusoidal), so a
        sliding-window model can generate on with its ring cache and never re-encode."""
        return self.config.position in ("rope", "sinusoidal")

    def embed(
        self, idx: torch.Tensor, position_ids: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token (or given) embeddings plus absolute positions, as the blocks take them."""
        h = self.embed_tokens(idx) if inputs_embeds is None else inputs_embeds
        if self.positions is not None:
            h = h + self.positions(position_ids)
        return self.embed_dropout(h)

    def cover_positions(self, end: int) -> None:
        """Make positions 0..end-1 computable (RoPE and sinusoidal tables grow past the
        context; a learned table cannot, and a model that has one slides instead)."""
        if self.positions is not None:
            self.positions.cover(end)
        if self.transformer.rotary is not None:
            self.transformer.rotary.cover(end)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits from normalized hidden states (the transformer's output)."""
        return self.lm_head(h)

    def hidden(
        self,
        idx: torch.Tensor,
        steps_per_block: int | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        backprop_steps: int | None = None,
    ) -> torch.Tensor:
        """Normalized final hidden states (B, L, C) of `idx`, continuing `cache` if given."""
        position_ids, end = positions_after(cache, idx.shape[1], idx.device)
        self.cover_positions(end)
        h = self.embed(idx, position_ids, inputs_embeds)
        return self.transformer(h, steps_per_block=steps_per_block, cache=cache,
                                position_ids=position_ids, backprop_steps=backprop_steps)

    def new_cache(
        self, batch_size: int, max_length: int | None = None, steps_per_block: int | None = None
    ) -> KVCache:
        """A KV cache for calls of up to `steps_per_block` steps; sized for `max_length`
        positions, or a ring of `attention_sink + attention_window` slots for windowed models."""
        steps = steps_per_block or self.config.steps_per_block
        length = max_length or self.config.context_length
        return self.transformer.new_cache(batch_size, length, steps, self.embed_tokens.weight)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        steps_per_block: int | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        backprop_steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean next-token loss when targets are given.

        Targets equal to -100 are ignored (padding, THINK positions). `inputs_embeds` (B, L, C)
        replaces the token embeddings (e.g. a latent slot); `idx` still gives the shape.
        `backprop_steps` truncates backpropagation to each block's last applications.
        """
        logits = self.head(self.hidden(idx, steps_per_block, cache, inputs_embeds, backprop_steps))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, loss
