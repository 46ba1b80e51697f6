"""The key/value cache of decoding: every block application's keys and values, per row.

Rows keep their own lengths, so they may join, leave and slide independently (continuous
batching); a sliding-window model's cache is a ring of `sink + window` slots, so memory stays
flat however long the output grows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lantern.errors import LanternError
from lantern.models.attention import window_allows

MIN_TOKEN_SPAN = 256  # the smallest span a compiled step attends to (see `token_span`)


class KVCache:
    """Keys and values of every block application, for a batch of rows that each keep their own
    length, so rows may join, leave and slide independently (continuous batching).

    A recursive model applies each block several times; each application is its own layer
    here (`layer = config.first_layer(block, steps_per_block) + step`), because each sees
    different hidden states. A cache built for depth k serves any call of depth <= k.

    Position p of a row lives in slot p; with `window` set the cache is a ring of
    `sink + window` slots instead: slot p while p < sink, else sink + (p - sink) % window, so
    memory stays flat however long the output grows. `slot_position[row, slot]` records which
    position each slot holds (-1 = empty); attention masks are built from it.

    Rows live at the front of buffers that keep spare room: a joining row is copied into place,
    and a leaving row's place is filled by the last row (`move_rows`, `truncate`), so rows come
    and go without copying the whole cache.
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
        self._keys = torch.zeros(shape, device=device, dtype=dtype)
        self._values = torch.zeros(shape, device=device, dtype=dtype)
        self._slot_position = torch.full((batch_size, self.capacity), -1, device=device,
                                         dtype=torch.long)
        self._lengths = torch.zeros(batch_size, device=device, dtype=torch.long)
        self.rows = batch_size
        self.steps_per_block = steps_per_block

    @property
    def keys(self) -> torch.Tensor:
        """(layers, rows, kv heads, slots, head dim): the rows in use."""
        return self._keys[:, : self.rows]

    @property
    def values(self) -> torch.Tensor:
        return self._values[:, : self.rows]

    @property
    def slot_position(self) -> torch.Tensor:
        return self._slot_position[: self.rows]

    @property
    def lengths(self) -> torch.Tensor:
        """(rows,) positions each row has seen, i.e. its next position."""
        return self._lengths[: self.rows]

    @property
    def is_ring(self) -> bool:
        return self.window is not None

    @property
    def batch_size(self) -> int:
        return self.rows

    def nbytes(self) -> int:
        """Bytes allocated for keys and values (spare room for joining rows included)."""
        return self._keys.nbytes + self._values.nbytes

    def is_empty(self) -> bool:
        return not bool(self.lengths.any())

    def slot_of(self, positions: torch.Tensor) -> torch.Tensor:
        """The slot each position is stored in."""
        if not self.is_ring:
            return positions
        return torch.where(positions < self.sink, positions,
                           self.sink + (positions - self.sink) % self.window)

    def plan(self, positions: torch.Tensor) -> CacheWrite:
        """How one forward call of new positions (B, L) reads and writes this cache.

        Empty rows (a prefill) attend to their own fresh keys (causal, or the blocked window
        path) and keep only the positions that survive in the cache. Rows with history write
        first, then attend over the slots through a mask; a ring cache takes one token at a
        time there, since a later token of the same call could overwrite a slot an earlier one
        still needs.
        """
        length = positions.shape[1]
        if self.is_empty():
            keep = torch.ones(length, dtype=torch.bool, device=positions.device)
            if self.is_ring:
                index = torch.arange(length, device=positions.device)
                keep = (index < self.sink) | (index >= length - self.window)
            elif length > self.capacity:
                raise LanternError(f"{length} positions do not fit a cache of {self.capacity}")
            return CacheWrite(fresh=True, keep=keep, slots=self.slot_of(positions[0, keep]),
                              mask=None, span=self.capacity)
        if self.is_ring and length > 1:
            raise LanternError("a ring (sliding-window) cache continues one token per call")
        first = positions[:, 0]
        if bool((first == first[0]).all()):  # every row at the same position: slice writes
            return self._uniform_plan(positions)
        slots = self.slot_of(positions)
        if not self.is_ring and int(slots.max()) >= self.capacity:
            raise LanternError(f"position {int(slots.max())} is beyond this cache's "
                               f"{self.capacity} slots")
        held = self.slot_position.clone()
        held.scatter_(1, slots, positions)
        span = self.capacity if self.is_ring else int(slots.max()) + 1
        held = held[:, :span]
        mask = window_allows(positions, held, self.window, self.sink)  # (B, L, span)
        return CacheWrite(fresh=False, keep=None, slots=slots, mask=mask[:, None], span=span)

    def plan_token(self, positions: torch.Tensor, span: int) -> CacheWrite:
        """The plan of one new token per row (B, 1) for a compiled step: no host syncs, and the
        cache is only read. Each query attends over the slots it may see as they are now (the
        slot its token will take holds nothing it may see: empty, or a position out of the
        window) plus its own new key; the new keys/values wait in `pending` for `commit_token`,
        so the compiled graph never copies the cache to mutate it. The caller keeps positions
        inside the cache (the decoder slides a full row first) and below `span`, the slots
        attended (a step compiles once per span: see `token_span`)."""
        mask = window_allows(positions, self.slot_position[:, :span], self.window, self.sink)
        return CacheWrite(fresh=False, keep=None, slots=self.slot_of(positions),
                          mask=mask[:, None], span=span, pending={})

    def token_span(self, end: int) -> int:
        """Slots a compiled step attends to when every position is below `end`: a power of two
        from 256 up (a ring: all of it), so a long output compiles a handful of times, and a
        short one never reads a mostly empty 8k-slot cache."""
        if self.is_ring:
            return self.capacity
        return min(self.capacity, max(MIN_TOKEN_SPAN, 1 << (end - 1).bit_length()))

    def commit_token(self, positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store a compiled step's keys and values (layers, B, kv heads, 1, D) of the tokens at
        `positions` (B, 1), every layer in one scatter, and advance the rows."""
        slots = self.slot_of(positions)
        index = slots[None, :, None, :, None].expand(keys.shape[0], -1, keys.shape[2], -1,
                                                      keys.shape[4])
        self.keys.scatter_(3, index, keys)
        self.values.scatter_(3, index, values)
        self.slot_position.scatter_(1, slots, positions)
        self.lengths.copy_(positions[:, -1] + 1)

    def _uniform_plan(self, positions: torch.Tensor) -> CacheWrite:
        """The common case (one prompt, or samples of one prompt): contiguous slots, and no
        mask at all for a single new token of a full-attention cache."""
        length, start = positions.shape[1], int(positions[0, 0])
        slot = int(self.slot_of(positions[:1, :1]))
        if self.is_ring:
            held = self.slot_position[:1].clone()
            held[0, slot] = start
            mask = window_allows(positions[:1], held, self.window, self.sink)[:, None]
            return CacheWrite(False, None, positions, mask, self.capacity, start=slot)
        end = start + length
        if end > self.capacity:
            raise LanternError(f"position {end - 1} is beyond this cache's {self.capacity} slots")
        mask = None
        if length > 1:
            mask = window_allows(positions[:1], torch.arange(end, device=positions.device)[None],
                                 None)[:, None]
        return CacheWrite(False, None, positions, mask, end, start=slot)

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, plan: CacheWrite
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's keys/values (B, H, L, D); return what its queries attend to."""
        if plan.start is not None:
            end = plan.start + k.shape[2]
            self.keys[layer][:, :, plan.start : end] = k
            self.values[layer][:, :, plan.start : end] = v
            return self.keys[layer][:, :, : plan.span], self.values[layer][:, :, : plan.span]
        if plan.fresh:
            self.keys[layer][:, :, plan.slots] = k[:, :, plan.keep]
            self.values[layer][:, :, plan.slots] = v[:, :, plan.keep]
            return k, v
        index = plan.slots[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        self.keys[layer].scatter_(2, index, k)
        self.values[layer].scatter_(2, index, v)
        return self.keys[layer][:, :, : plan.span], self.values[layer][:, :, : plan.span]

    def advance(self, positions: torch.Tensor, plan: CacheWrite) -> None:
        """Called once per forward pass, after every layer has stored its new positions."""
        if plan.start is not None:
            self.slot_position[:, plan.start : plan.start + positions.shape[1]] = positions
        elif plan.fresh:
            self.slot_position[:, plan.slots] = positions[0, plan.keep]
        else:
            self.slot_position.scatter_(1, plan.slots, positions)
        self.lengths.copy_(positions[:, -1] + 1)

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder, or repeat) batch rows: the beams that survive."""
        self._keys, self._values = self.keys[:, rows], self.values[:, rows]
        self._slot_position, self._lengths = self.slot_position[rows], self.lengths[rows]
        self.rows = len(rows)

    def extend(self, other: KVCache) -> None:
        """Append `other`'s rows (same model, depth and size) after this cache's rows."""
        need = self.rows + other.rows
        if need > self._keys.shape[1]:  # grow the spare room geometrically
            extra = max(need, 2 * self._keys.shape[1]) - self._keys.shape[1]
            self._keys = torch.cat([self._keys, self._keys.new_zeros(
                (self._keys.shape[0], extra, *self._keys.shape[2:]))], dim=1)
            self._values = torch.cat([self._values, self._values.new_zeros(
                (self._values.shape[0], extra, *self._values.shape[2:]))], dim=1)
            self._slot_position = torch.cat([self._slot_position, self._slot_position.new_full(
                (extra, self.capacity), -1)])
            self._lengths = torch.cat([self._lengths, self._lengths.new_zeros(extra)])
        new = slice(self.rows, need)
        self._keys[:, new], self._values[:, new] = other.keys, other.values
        self._slot_position[new], self._lengths[new] = other.slot_position, other.lengths
        self.rows = need

    def replace_rows(self, rows: torch.Tensor, other: KVCache) -> None:
        """Overwrite `rows` with `other`'s rows (a row re-encoded after a slide)."""
        self.keys[:, rows] = other.keys
        self.values[:, rows] = other.values
        self.slot_position[rows] = other.slot_position
        self.lengths[rows] = other.lengths

    def move_rows(self, source: list[int], target: list[int]) -> None:
        """Copy rows `source` over rows `target` (filling the places of rows that left)."""
        if source:
            self._keys[:, target] = self._keys[:, source]
            self._values[:, target] = self._values[:, source]
            self._slot_position[target] = self._slot_position[source]
            self._lengths[target] = self._lengths[source]

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` rows; the room behind them stays allocated for later rows."""
        self.rows = rows


@dataclass
class CacheWrite:
    """Where one forward call's new keys/values go, and the mask its queries attend through."""

    fresh: bool  # the rows were empty: attend to the call's own keys
    keep: torch.Tensor | None  # (L,) which new positions a fresh call stores
    slots: torch.Tensor  # (kept,) for fresh calls, else (B, L)
    mask: torch.Tensor | None  # (B|1, 1, L, span) True = may attend; None = causal (window)
    span: int  # slots attended to
    start: int | None = None  # every row writes slots start..start+L-1 (a slice)
    # A compiled step's new keys/values by layer, kept out of the cache until `commit_token`.
    pending: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
