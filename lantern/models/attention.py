"""Causal self-attention, full or sliding-window (the decoding cache is `kv_cache.py`).

Sliding-window attention lets a query see only the `window` most recent positions (itself
included), plus optionally the first `sink` positions of the sequence ("attention sinks"). It is
computed in query blocks of `window` rows that attend to their own and the previous key block, so
training costs O(L * window) time and memory instead of a dense L x L mask. FlexAttention would do
the same, but on CPU it has no backward pass, and the blocked form is exact and portable, so it is
the one path on every device. In generation the cache becomes a ring buffer of `sink + window`
slots, so memory stays flat however long the output grows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.models.positions import apply_rotary

if TYPE_CHECKING:
    from lantern.models.kv_cache import CacheWrite, KVCache


def window_allows(
    query_index: torch.Tensor, key_index: torch.Tensor, window: int | None, sink: int = 0
) -> torch.Tensor:
    """Boolean (..., Q, K): causal, within `window` of the query, or one of the first `sink`."""
    q = query_index[..., :, None]
    k = key_index[..., None, :]
    allowed = (k <= q) & (k >= 0)
    if window is not None:
        allowed = allowed & ((q - k < window) | (k < sink))
    return allowed


def blocked_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    sink: int = 0,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Exact sliding-window causal attention in O(L * window) memory.

    q: (B, H, L, D); k, v: (B, H or KV heads, L, D). Queries are cut into blocks of `window` rows;
    each block attends to its own and the previous key block (2 * window keys), which holds every
    key it may see, plus the first `sink` keys, kept visible to every later query.
    """
    batch, heads, length, dim = q.shape
    if k.shape[1] != heads:  # grouped-query: share each key/value head across its query heads
        k = k.repeat_interleave(heads // k.shape[1], dim=1)
        v = v.repeat_interleave(heads // v.shape[1], dim=1)
    blocks = -(-length // window)
    pad = blocks * window - length
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    # Blocks fold into the batch dimension: 4-D inputs let SDPA use its fused (flash) kernel.
    def fold(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, heads, blocks, -1, dim).transpose(1, 2)  # (B, blocks, H, n, D)

    qb, kb, vb = fold(q), fold(k), fold(v)
    keys = torch.cat([F.pad(kb, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], kb], dim=3)
    values = torch.cat([F.pad(vb, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], vb], dim=3)
    device = q.device
    starts = torch.arange(blocks, device=device)[:, None] * window  # (blocks, 1)
    query_index = starts + torch.arange(window, device=device)  # (blocks, window)
    key_index = starts - window + torch.arange(2 * window, device=device)  # (blocks, 2w)
    mask = window_allows(query_index, key_index, window) & (key_index < length)[:, None, :]
    if sink:
        sink = min(sink, length)
        sink_index = torch.arange(sink, device=device).expand(blocks, sink)
        # A sink key already inside a query's window is seen there; never count it twice.
        sink_mask = window_allows(query_index, sink_index, None) & (
            query_index[:, :, None] - sink_index[:, None, :] >= window
        )
        keys = torch.cat([k[:, None, :, :sink].expand(-1, blocks, -1, -1, -1), keys], dim=3)
        values = torch.cat([v[:, None, :, :sink].expand(-1, blocks, -1, -1, -1), values], dim=3)
        mask = torch.cat([sink_mask, mask], dim=2)
    rows = batch * blocks
    mask = mask[None, :, None].expand(batch, -1, -1, -1, -1).reshape(rows, 1, window, -1)
    y = F.scaled_dot_product_attention(
        qb.reshape(rows, heads, window, dim),
        keys.reshape(rows, heads, -1, dim),
        values.reshape(rows, heads, -1, dim),
        attn_mask=mask,
        dropout_p=dropout_p,
    )
    y = y.view(batch, blocks, heads, window, dim).transpose(1, 2)
    return y.reshape(batch, heads, blocks * window, dim)[:, :, :length]


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal attention, full or sliding-window."""

    def __init__(self, config: LANTERNConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.kv_heads = config.kv_heads
        self.head_dim = config.head_dim
        self.window = config.attention_window
        self.sink = config.attention_sink
        qkv_width = (config.num_heads + 2 * config.kv_heads) * config.head_dim
        self.qkv = nn.Linear(config.hidden_size, qkv_width, bias=config.bias or config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def project(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (B, heads, L, D) of x (B, L, C), rotated if RoPE is used."""
        batch, length, _ = x.shape
        kv_width = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.num_heads * self.head_dim, kv_width, kv_width], dim=-1)
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            q = apply_rotary(q, *rope)
            k = apply_rotary(k, *rope)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        write: CacheWrite | None = None,
    ) -> torch.Tensor:
        """x: (B, L, C). Without a cache, or on a prefill, attention is causal over x itself
        (blocked when a window is set); with cached history it goes through `write.mask`."""
        batch, length, _ = x.shape
        q, k, v = self.project(x, rope)
        if cache is not None and write is not None:
            k, v = cache.write(layer, k, v, write)
        mask = write.mask if write is not None else None
        dropout_p = self.dropout if self.training else 0.0
        if mask is None and self.window is not None and length > self.window:
            y = blocked_window_attention(q, k, v, self.window, self.sink, dropout_p)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout_p,
                is_causal=mask is None and length > 1,
                enable_gqa=self.kv_heads != self.num_heads,
            )
        y = y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.resid_dropout(self.proj(y))

    def fill_cache(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache,
        layers: range,
        write: CacheWrite,
    ) -> None:
        """Write keys/values of x into cache layers a token skipped (adaptive depth)."""
        _, k, v = self.project(x, rope)
        for layer in layers:
            cache.write(layer, k, v, write)
