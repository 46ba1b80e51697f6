"""Causal self-attention, full or sliding-window (the decoding cache is `kv_cache.py`).

Sliding-window attention lets a query see only the `window` most recent positions (itself
included), plus optionally the first `sink` positions of the sequence ("attention sinks"). It is
computed exactly in query blocks of 64, each attending to a strided view of the `window + 64` keys
that end with its own under one band mask, so it costs O(L * window) time, and no L x L anything,
through PyTorch's fused SDPA kernel. On CPU without dropout the kernel's forward and backward ops
run directly, a chunk of blocks at a time, so training holds what full attention's fused kernel
holds (q, k, v, output, log-sum-exp); elsewhere autograd goes through SDPA on the same views.
FlexAttention would do the same, but on CPU it has no backward pass. In generation the cache
becomes a ring buffer of `sink + window` slots, so memory stays flat however long the output grows.
"""

from __future__ import annotations

from collections.abc import Iterator
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


# Query rows per block: each block reads `window + QUERY_BLOCK` keys for `window` it needs
# (1.25x the band's work at window 256); 32 measured within noise of 64 on CPU (a few percent
# faster at best) and holds 1.8x the blocked key gradients per chunk.
QUERY_BLOCK = 64
# Queries per call of the CPU kernel: bounds the blocked key gradients (each key is read by
# window / QUERY_BLOCK + 1 blocks) to a constant instead of a multiple of L.
CHUNK_QUERIES = 512


def blocked_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    sink: int = 0,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Exact sliding-window causal attention in O(L * window) time and memory.

    q: (B, H, L, D); k, v: (B, H or KV heads, L, D). The first `head_length` queries run as one
    small dense-masked attention; every later block of `QUERY_BLOCK` queries attends to the
    `window + QUERY_BLOCK` keys ending with its own (a strided view, no copy) under one band mask
    shared by all blocks, plus the sink keys, all outside its window by then. On CPU without
    dropout the flash kernel's own forward and backward run a chunk of blocks at a time
    (`CPUWindowAttention`); elsewhere autograd goes through SDPA on the same views.
    """
    heads = q.shape[1]
    if k.shape[1] != heads:  # grouped-query: share each key/value head across its query heads
        k = k.repeat_interleave(heads // k.shape[1], dim=1)
        v = v.repeat_interleave(heads // v.shape[1], dim=1)
    if q.device.type == "cpu" and dropout_p == 0.0:
        return CPUWindowAttention.apply(q, k, v, window, sink)
    batch, _, length, dim = q.shape
    head = head_length(length, window, sink)
    y_head = F.scaled_dot_product_attention(
        q[:, :, :head], k[:, :, :head], v[:, :, :head],
        attn_mask=head_mask(head, window, sink, q.device), dropout_p=dropout_p,
    )
    if head == length:
        return y_head
    block, rows = min(QUERY_BLOCK, window), batch * heads
    q_tail = q[:, :, head:].reshape(rows, -1, block, dim)
    keys, values = (
        key_windows(t[:, :, head - window :].reshape(rows, -1, dim),
                    t[:, :, :sink].reshape(rows, sink, dim), block, window)
        for t in (k, v)
    )
    mask = band_mask(block, window, sink, q.device)
    y_tail = F.scaled_dot_product_attention(q_tail, keys, values, attn_mask=mask,
                                            dropout_p=dropout_p)
    return torch.cat([y_head, y_tail.reshape(batch, heads, -1, dim)], dim=2)


def head_length(length: int, window: int, sink: int) -> int:
    """Queries taken apart at the start: from window + sink - 1 on, every sink is out of the
    window and every key in it exists; a few more make the rest whole blocks."""
    head = window + sink
    return min(length, head + (length - head) % min(QUERY_BLOCK, window))


def head_mask(head: int, window: int, sink: int, device: torch.device) -> torch.Tensor:
    """(head, head) boolean: the head is small, so its window and sinks are simply spelled out."""
    index = torch.arange(head, device=device)
    return window_allows(index, index, window, sink)


def band_mask(block: int, window: int, sink: int, device: torch.device) -> torch.Tensor:
    """(block, sink + window + block) boolean: query row r sees the sinks and key columns
    r + 1 .. r + window of its block's keys (column c lies window + r - c positions back)."""
    row = torch.arange(block, device=device)[:, None]
    col = torch.arange(window + block, device=device)
    band = (col > row) & (col <= row + window)
    return torch.cat([band.new_ones(block, sink), band], dim=1)


def key_windows(k: torch.Tensor, sink_k: torch.Tensor, block: int, window: int) -> torch.Tensor:
    """(N, blocks, sink + window + block, D) from keys k (N, blocks * block + window, D): each
    block's keys, a strided view of k (no copy) unless sink keys (N, sink, D) go in front."""
    keys = k.unfold(1, window + block, block).transpose(-1, -2)
    if sink_k.shape[1]:
        keys = torch.cat([sink_k[:, None].expand(-1, keys.shape[1], -1, -1), keys], dim=2)
    return keys


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the CPU kernel's additive one: 0 where allowed, -inf elsewhere."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, -torch.inf)


class CPUWindowAttention(torch.autograd.Function):
    """`blocked_window_attention` through the CPU flash kernel's forward and backward ops, a
    chunk of `CHUNK_QUERIES` queries at a time: it saves only q, k, v, output and log-sum-exp,
    and sums each key's gradient over the blocks that read it straight into one buffer."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        window: int,
        sink: int,
    ) -> torch.Tensor:
        batch, heads, length, dim = q.shape
        head = head_length(length, window, sink)
        out = q.new_empty(batch, length, heads, dim).transpose(1, 2)  # as SDPA lays it out
        mask = additive(head_mask(head, window, sink, q.device), q.dtype)
        y, lse_head = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q[:, :, :head], k[:, :, :head], v[:, :, :head], attn_mask=mask
        )
        out[:, :, :head] = y
        lse = lse_head.new_empty(batch, heads, length)
        lse[:, :, :head] = lse_head
        band = additive(band_mask(min(QUERY_BLOCK, window), window, sink, q.device), q.dtype)
        for row, start, stop, queries, keys, values in chunks(q, k, v, window, sink):
            y, lse_chunk = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                queries, keys, values, attn_mask=band
            )
            out[row, :, start:stop] = y.flatten(1, 2)
            lse[row, :, start:stop] = lse_chunk.flatten(1, 2)
        ctx.save_for_backward(q, k, v, out, lse, mask, band)
        ctx.window, ctx.sink = window, sink
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse, mask, band = ctx.saved_tensors
        window, sink = ctx.window, ctx.sink
        length = q.shape[2]
        head, block = head_length(length, window, sink), min(QUERY_BLOCK, window)
        flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        grad_q = torch.zeros_like(q)
        # Slack of one block: when block does not divide window, the last piece of the last
        # block's keys reaches past the end (into masked columns).
        grad_k, grad_v = (q.new_zeros(*q.shape[:2], length + block, q.shape[3]) for _ in range(2))
        parts = flash_backward(
            grad_out[:, :, :head], q[:, :, :head], k[:, :, :head], v[:, :, :head],
            out[:, :, :head], lse[:, :, :head], 0.0, False, attn_mask=mask,
        )
        for grad, part in zip((grad_q, grad_k, grad_v), parts, strict=True):
            grad[:, :, :head] += part
        span = window + block
        for row, start, stop, queries, keys, values in chunks(q, k, v, window, sink):
            blocks = (stop - start) // block
            dq, dk, dv = flash_backward(
                grad_out[row, :, start:stop].unflatten(1, (blocks, block)), queries, keys,
                values, out[row, :, start:stop].unflatten(1, (blocks, block)),
                lse[row, :, start:stop].unflatten(1, (blocks, block)), 0.0, False,
                attn_mask=band,
            )
            grad_q[row, :, start:stop] = dq.flatten(1, 2)
            for grad, part in ((grad_k, dk), (grad_v, dv)):
                grad[row, :, :sink] += part[:, :, :sink].sum(dim=1)
                for first in range(0, span, block):  # key row `first` on, of every block at once
                    width = min(block, span - first)
                    offset = start - window + first
                    target = grad[row, :, offset : offset + blocks * block]
                    target.unflatten(1, (blocks, block))[:, :, :width] += (
                        part[:, :, sink + first : sink + first + width])
        return grad_q, grad_k[:, :, :length], grad_v[:, :, :length], None, None


def chunks(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, sink: int
) -> Iterator[tuple[int, int, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(batch row, first query, end query, queries, keys, values) of each chunk of whole query
    blocks after the head, as views: queries (H, blocks, block, D), keys and values
    (H, blocks, sink + window + block, D)."""
    length = q.shape[2]
    block = min(QUERY_BLOCK, window)
    step = max(1, CHUNK_QUERIES // block) * block
    for row in range(q.shape[0]):
        for start in range(head_length(length, window, sink), length, step):
            stop = min(length, start + step)
            queries = q[row, :, start:stop].unflatten(1, (-1, block))
            keys, values = (key_windows(t[row, :, start - window : stop], t[row, :, :sink],
                                        block, window) for t in (k, v))
            yield row, start, stop, queries, keys, values


def attend_cached(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    allowed: torch.Tensor,
) -> torch.Tensor:
    """One query per row (B, H, 1, D) over cached keys/values (B, KV heads, S, D) where
    `allowed` (B, 1, 1, S), plus its own new key/value (B, KV heads, 1, D): one softmax over
    both score sets, the cache only read (a compiled step then never copies it). Query heads
    share their key/value head in groups, as `repeat_interleave` pairs them, without a copy."""
    batch, heads, _, dim = q.shape
    groups = keys.shape[1]
    q = q.reshape(batch, groups, heads // groups, dim) * dim**-0.5
    old = (q @ keys.transpose(-1, -2)).masked_fill(~allowed.view(batch, 1, 1, -1), float("-inf"))
    new = (q * k).sum(dim=-1, keepdim=True)  # (B, groups, per group, 1)
    probs = torch.cat([old, new], dim=-1).softmax(dim=-1)
    y = probs[..., :-1] @ values + probs[..., -1:] * v
    return y.reshape(batch, heads, 1, dim)


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
        if cache is not None and write is not None and write.pending is None:
            k, v = cache.write(layer, k, v, write)
        mask = write.mask if write is not None else None
        dropout_p = self.dropout if self.training else 0.0
        if cache is not None and write is not None and write.pending is not None:
            write.pending[layer] = (k, v)  # stored after the compiled step (`commit_token`)
            keys, values = (t[layer][:, :, : write.span] for t in (cache.keys, cache.values))
            y = attend_cached(q, keys, values, k, v, mask)
        elif mask is None and self.window is not None and length > self.window:
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
