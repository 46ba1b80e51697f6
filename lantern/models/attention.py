"""Causal self-attention (full or sliding-window) and the key/value cache used for decoding.

Sliding-window attention lets a query see only the `window` most recent positions (itself
included), plus optionally the first `sink` positions of the sequence ("attention sinks"). It is
computed in query blocks of `window` rows that attend to their own and the previous key block, so
training costs O(L * window) time and memory instead of a dense L x L mask. FlexAttention would do
the same, but on CPU it has no backward pass, and the blocked form is exact and portable, so it is
the one path on every device. In generation the cache becomes a ring buffer of `sink + window`
slots, so memory stays flat however long the output grows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lantern.config import LANTERNConfig
from lantern.models.positions import apply_rotary


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


class KVCache:
    """Keys and values of every block application, allocated once.

    A recursive model applies each block several times; each application is its own layer
    here (`layer = block_index * steps_per_block + step`), because each sees different hidden
    states. A cache built for depth k serves any call of depth <= k.

    With `window` set it is a ring buffer of `sink + window` slots: position i lives in slot i
    while i < sink, else in slot sink + (i - sink) % window; `slot_index` records which position
    each slot holds (-1 = empty), so attention masks can be built from it.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        kv_heads: int,
        head_dim: int,
        max_length: int,
        device: torch.device | str,
        dtype: torch.dtype,
        window: int | None = None,
        sink: int = 0,
        steps_per_block: int | None = None,
    ) -> None:
        self.window = window
        self.sink = sink if window is not None else 0
        self.capacity = max_length if window is None else self.sink + window
        shape = (num_layers, batch_size, kv_heads, self.capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.slot_index = torch.full((self.capacity,), -1, device=device, dtype=torch.long)
        self.length = 0
        self.max_length = max_length
        self.steps_per_block = steps_per_block

    @property
    def is_ring(self) -> bool:
        return self.window is not None

    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def _slots(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ring slots for positions start..start+count-1, keeping only those that survive."""
        index = torch.arange(start, start + count, device=self.keys.device)
        keep = (index < self.sink) | (index >= start + count - (self.capacity - self.sink))
        index = index[keep]
        slots = torch.where(index < self.sink, index, self.sink + (index - self.sink) % self.window)
        return keep, slots

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values (B, H, L, D) and return every key/value to attend to.

        A ring cache returns its slots as they were before this call, followed by the new
        positions; `attention_mask` describes exactly that layout.
        """
        if not self.is_ring:
            end = self.length + k.shape[2]
            self.keys[layer, :, :, self.length : end] = k
            self.values[layer, :, :, self.length : end] = v
            return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        keys = torch.cat([self.keys[layer], k], dim=2)
        values = torch.cat([self.values[layer], v], dim=2)
        keep, slots = self._slots(self.length, k.shape[2])
        self.keys[layer][:, :, slots] = k[:, :, keep]
        self.values[layer][:, :, slots] = v[:, :, keep]
        return keys, values

    def attention_mask(
        self, query_length: int, key_padding: torch.Tensor | None
    ) -> torch.Tensor:
        """Boolean (B|1, 1, L, capacity + L) mask for a ring cache's `update` layout."""
        device = self.keys.device
        query_index = torch.arange(self.length, self.length + query_length, device=device)
        key_index = torch.cat([self.slot_index, query_index])
        mask = window_allows(query_index, key_index, self.window, self.sink)[None, None]
        if key_padding is not None:
            visible = key_padding[:, key_index.clamp(min=0)] & (key_index >= 0)
            mask = mask & visible[:, None, None, :]
        return mask

    def advance(self, num_tokens: int) -> None:
        """Called once per forward pass, after every layer has stored its new positions."""
        if self.is_ring:
            keep, slots = self._slots(self.length, num_tokens)
            index = torch.arange(self.length, self.length + num_tokens, device=slots.device)
            self.slot_index[slots] = index[keep]
        self.length += num_tokens

    def reset(self) -> None:
        self.length = 0
        self.slot_index.fill_(-1)

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder) batch rows, e.g. to follow surviving beams."""
        self.keys = self.keys[:, rows]
        self.values = self.values[:, rows]


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
        self.qkv = nn.Linear(config.hidden_size, qkv_width, bias=config.bias)
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
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, L, C). attn_mask: boolean (B, 1, L, keys), True = may attend; None = causal
        (within the window, when the model has one)."""
        batch, length, _ = x.shape
        q, k, v = self.project(x, rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None and self.window is not None and length > self.window:
            y = blocked_window_attention(q, k, v, self.window, self.sink, dropout_p)
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=attn_mask is None and length > 1,
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
    ) -> None:
        """Write keys/values of x into cache layers a token skipped (adaptive depth)."""
        _, k, v = self.project(x, rope)
        for layer in layers:
            cache.update(layer, k, v)
