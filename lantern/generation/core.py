"""The decoding core: the one loop every generator runs on.

`Decoder` owns the model's side of decoding: prefill, the per-token step, the KV cache and the
context slide. Each row keeps its own length and positions, so rows can join and leave a running
batch at any step (the server's continuous batching) and prompts of different lengths need no
padding. `RowPolicy` owns one sequence's side: its logits rules and random generator, its stop
tokens and strings, its text as it becomes final. Sampling (`generate_stream`), beam search and
the adaptive controller (`adaptive/`) are policies over these two; the command line, interactive sessions,
chat, the server and the Python `LLM` (`lantern.api`) are fronts on those policies.

The context slide: a sliding-window model whose positions can be computed anywhere (RoPE,
sinusoidal) keeps a ring-buffer cache and never re-encodes. Any other model, when a row reaches
the context length, re-encodes that row's newest three quarters with fresh positions (so no
position is ever stale) and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lantern.errors import LanternError
from lantern.generation import sampling
from lantern.generation.compiled import compiled_step
from lantern.generation.settings import GenerationConfig
from lantern.generation.streaming import TextStream
from lantern.models.kv_cache import KVCache
from lantern.models.lantern_model import LANTERNModel, StepContext
from lantern.tokenizers import Tokenizer

KEEP_FRACTION = 0.75  # of the context, re-encoded when a row's window is full

# forward(h, ctx) -> (rows, V) logits: a policy's own way of running the blocks for one token
# (the adaptive controller); the default runs every block at the decoder's depth.
StepForward = Callable[[torch.Tensor, StepContext], torch.Tensor]


class Decoder:
    """Rows of a running batch: each with its own tokens, positions and KV-cache slots."""

    def __init__(
        self, model: LANTERNModel, steps_per_block: int | None = None, compile: bool = False
    ) -> None:
        """`compile`: plain steps run the compiled one-graph step (`compiled.py`); prefill,
        slides and a policy's own `forward` stay eager."""
        self.model = model
        self.token_step = compiled_step() if compile else None
        self.steps = steps_per_block or model.config.steps_per_block
        self.context = model.config.context_length
        window = model.config.attention_window
        # A ring cache with computable positions never needs re-encoding.
        self.limit = None if window is not None and model.positions_unbounded else self.context
        self.keep = max(1, int(self.context * KEEP_FRACTION))
        self.cache: KVCache | None = None
        self.handles: list[int] = []
        self.history: list[list[int]] = []
        self.prompt_logits: dict[int, torch.Tensor] = {}  # of the rows the last `add` scored
        self._logits: torch.Tensor | None = None
        self._next_handle = 0
        self.device = model.get_embedding_matrix().device

    @property
    def logits(self) -> torch.Tensor:
        """(rows, V) next-token logits of the active rows, in batch order."""
        if self._logits is None:
            raise LanternError("the decoder has no rows")
        return self._logits

    @property
    def num_rows(self) -> int:
        return len(self.handles)

    def _new_cache(self, rows: int) -> KVCache:
        return self.model.new_cache(rows, max_length=self.context, steps_per_block=self.steps)

    @torch.inference_mode()
    def _encode(
        self, prompts: Sequence[Sequence[int]], embeds: torch.Tensor | None = None
    ) -> tuple[KVCache, torch.Tensor]:
        """Prefill rows of equal length into a fresh cache; their hidden states (rows, L, C)."""
        cache = self._new_cache(len(prompts))
        ids = torch.tensor([list(p) for p in prompts], dtype=torch.long, device=self.device)
        return cache, self.model.hidden(ids, self.steps, cache, inputs_embeds=embeds)

    @torch.inference_mode()
    def add(
        self,
        prompts: Sequence[Sequence[int]],
        inputs_embeds: Sequence[torch.Tensor | None] | None = None,
        score: Collection[int] = (),
    ) -> list[int]:
        """Prefill new rows (prompts of one length are encoded together) and append them to the
        batch; returns their handles, in prompt order (`handles` gives the batch order).
        `inputs_embeds[i]` (L_i, C) replaces prompt i's token embeddings (a latent slot); a
        later slide re-embeds that row from its token ids. For each prompt index in `score`,
        `prompt_logits[handle]` then holds its logits at every position (L, V), from the same
        prefill (the head runs on every position of those rows only)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise LanternError("every prompt needs at least one token")
        embeds = list(inputs_embeds) if inputs_embeds is not None else [None] * len(prompts)
        prompts = [list(p) for p in prompts]
        if self.limit is not None:
            for i, p in enumerate(prompts):
                if len(p) > self.limit:
                    prompts[i] = p[-self.limit:]
                    embeds[i] = None if embeds[i] is None else embeds[i][-self.limit:]
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault((len(p), embeds[i] is not None), []).append(i)
        handles = list(range(self._next_handle, self._next_handle + len(prompts)))
        self._next_handle += len(prompts)
        self.prompt_logits = {}
        for (_, embedded), members in groups.items():
            stacked = torch.stack([embeds[i] for i in members]) if embedded else None
            cache, h = self._encode([prompts[i] for i in members], stacked)
            logits = self.model.head(h[:, -1]).float()
            for row, i in enumerate(members):
                if i in score:
                    self.prompt_logits[handles[i]] = self.model.head(h[row]).float()
            if self.cache is None or self.num_rows == 0:
                self.cache, self._logits = cache, logits
            else:
                self.cache.extend(cache)
                self._logits = torch.cat([self.logits, logits])
            self.handles += [handles[i] for i in members]
            self.history += [prompts[i] for i in members]
        return handles

    @torch.inference_mode()
    def remove(self, handles: Collection[int]) -> None:
        """Rows leave the batch at once; the last rows move into their places, so only the
        moved rows are copied."""
        gone = {row for row, h in enumerate(self.handles) if h in set(handles)}
        if not gone or self.cache is None or self._logits is None:
            return
        keep = self.num_rows - len(gone)
        holes = sorted(row for row in gone if row < keep)
        movers = [row for row in range(keep, self.num_rows) if row not in gone]
        self.cache.move_rows(movers, holes)
        self.cache.truncate(keep)
        index = torch.arange(self.num_rows, device=self.device)
        index[holes] = torch.tensor(movers, dtype=torch.long, device=self.device)
        self._logits = self._logits[index[:keep]]
        for hole, mover in zip(holes, movers, strict=True):
            self.handles[hole], self.history[hole] = self.handles[mover], self.history[mover]
        del self.handles[keep:], self.history[keep:]

    @torch.inference_mode()
    def reorder(self, rows: Sequence[int]) -> None:
        """Keep (and reorder, or repeat) batch rows, e.g. to follow the surviving beams."""
        if list(rows) == list(range(self.num_rows)):
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.handles = [self.handles[r] for r in rows]
        self.history = [list(self.history[r]) for r in rows]
        if self.cache is not None and self._logits is not None:
            self.cache.select(index)
            self._logits = self._logits[index]

    @torch.inference_mode()
    def _slide(self) -> None:
        """Re-encode, with fresh positions, the newest tokens of every row whose window is full."""
        if self.limit is None or self.cache is None:
            return
        full = (self.cache.lengths >= self.limit).nonzero().flatten().tolist()
        if not full:
            return
        kept = [self.history[r][-(self.keep - 1):] for r in full] if self.keep > 1 else None
        rows = torch.tensor(full, dtype=torch.long, device=self.device)
        if kept is None:  # a context of one token: start over empty
            self.cache.lengths[rows] = 0
            self.cache.slot_position[rows] = -1
            return
        cache, _ = self._encode(kept)
        self.cache.replace_rows(rows, cache)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, forward: StepForward | None = None) -> torch.Tensor:
        """Append one token per active row (rows,); return the new next-token logits."""
        if self.cache is None or self.num_rows == 0:
            raise LanternError("the decoder has no rows")
        tokens = tokens.reshape(-1, 1).to(self.device)
        self._slide()
        positions = self.cache.lengths[:, None].clone()
        end = int(positions.max()) + 1
        self.model.cover_positions(end)
        if forward is None and self.token_step is not None:
            logits, keys, values = self.token_step(self.model, self.cache, tokens, positions,
                                                   self.steps, self.cache.token_span(end))
            self.cache.commit_token(positions, keys, values)
        else:
            logits = self._eager_step(tokens, positions, forward)
        for row, token in zip(self.history, tokens[:, 0].tolist(), strict=True):
            row.append(token)
            if len(row) > 2 * self.context:
                del row[: -self.context]
        self._logits = logits.float()
        return self._logits

    def _eager_step(
        self, tokens: torch.Tensor, positions: torch.Tensor, forward: StepForward | None
    ) -> torch.Tensor:
        h = self.model.embed(tokens, positions)
        transformer = self.model.transformer
        ctx = transformer.prepare(1, self.cache, positions, self.device, self.steps)
        if forward is None:
            h = transformer.run(h, self.steps, ctx)
            logits = self.model.head(transformer.norm(h))[:, -1]
        else:
            logits = forward(h, ctx)
        transformer.finish(ctx)
        return logits


@dataclass
class PromptScores:
    """How likely the model finds a prompt: each token's log-probability given the tokens before
    it, with the top alternatives there. The first token has nothing before it: None for both."""

    tokens: list[int]
    logprobs: list[float | None]
    top_logprobs: list[list[tuple[int, float]] | None]
    finished: bool = False  # a row that only scores its prompt ends here
    stop_reason: str | None = None


def score_prompt(logits: torch.Tensor, prompt_ids: Sequence[int], top_logprobs: int = 0) -> PromptScores:
    """The scores of `prompt_ids` from its logits at every position (L, V), which `Decoder.add`
    keeps for the prompts it is asked to score; the model's own distribution (no sampling rules)."""
    logprobs = logits[:-1].float().log_softmax(dim=-1)  # position i predicts token i + 1
    following = torch.tensor(list(prompt_ids[1:]), dtype=torch.long, device=logprobs.device)
    chosen = logprobs.gather(1, following[:, None])[:, 0].tolist()
    tops: list[list[tuple[int, float]] | None] = [[] for _ in chosen]
    if top_logprobs and chosen:
        values, ids = logprobs.topk(min(top_logprobs, logprobs.shape[-1]), dim=-1)
        tops = [list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    return PromptScores(list(prompt_ids), [None, *chosen], [None, *tops])


@dataclass
class TokenEvent:
    """One generated token of one sequence, as a front shows it."""

    token: int
    text: str  # text that became final with this token ('' while held back)
    logprob: float  # log-probability under the model's own distribution
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)
    finished: bool = False
    stop_reason: str | None = None  # "stop_token", "stop_string" or "length" once finished


def row_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    """A generator of its own for one row; without a seed, one drawn from torch's global RNG
    (so `torch.manual_seed` still makes a whole run repeatable)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    return torch.Generator(device=device).manual_seed(seed)


class RowPolicy:
    """One sequence: its logits rules and random generator, stop tokens and strings, text."""

    def __init__(
        self,
        tokenizer: Tokenizer | None,
        prompt_ids: Sequence[int],
        config: GenerationConfig,
        vocab_size: int,
        seed: int | None = None,
        stop_ids: Collection[int] = (),
        top_logprobs: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.greedy = config.greedy
        self.rules = config.rules()
        self.max_new_tokens = config.max_new_tokens
        self.think_id = config.think_token_id  # counted apart: the budget is in visible tokens
        self.visible = 0
        self.stop_ids = set(stop_ids)
        self.top_logprobs = top_logprobs
        # Token-level callers (`LLM.generate`) have no tokenizer, and no text to stream.
        self.text = TextStream(tokenizer, config.stop_strings) if tokenizer is not None else None
        self.generator = row_generator(seed, device)
        self.counts: torch.Tensor | None = None
        if any(rule.needs_counts for rule in self.rules):
            self.counts = torch.zeros((1, vocab_size), dtype=torch.long, device=device)
            ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
            self.counts.scatter_add_(1, ids, torch.ones_like(ids))
        self.untrained = untrained_mask(tokenizer, prompt_ids, vocab_size, device)
        self.tokens: list[int] = []
        self.finished = False
        self.stop_reason: str | None = None
        self._logprobs: torch.Tensor | None = None

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's last-position logits (V,)."""
        logits = logits.float()[None]
        self._logprobs = logits.log_softmax(dim=-1)[0]
        if self.untrained is not None:
            logits = logits.masked_fill(self.untrained, float("-inf"))
        return int(sampling.choose(logits, self.rules, self.greedy, self.counts, self.generator))

    def accept(self, token: int) -> TokenEvent:
        """Take `token` as this row's next one; what a front should show of it."""
        logprob, top = 0.0, []
        if self._logprobs is not None:
            logprob = float(self._logprobs[token])
            if self.top_logprobs:
                values, ids = self._logprobs.topk(min(self.top_logprobs, self._logprobs.numel()))
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
        if token in self.stop_ids:
            return self._finish(TokenEvent(token, "", logprob, top), "stop_token")
        self.tokens.append(token)
        if self.counts is not None:
            self.counts[0, token] += 1
        piece = self.text.add(token) if self.text is not None else ""
        event = TokenEvent(token, piece, logprob, top)
        if self.text is not None and self.text.stopped:
            return self._finish(event, "stop_string")
        self.visible += token != self.think_id
        if self.visible >= self.max_new_tokens:
            return self._finish(event, "length")
        return event

    def _finish(self, event: TokenEvent, reason: str) -> TokenEvent:
        self.finished, self.stop_reason = True, reason
        event.finished, event.stop_reason = True, reason
        if self.text is not None:
            event.text += self.text.finish()
        return event


def untrained_mask(tokenizer: Tokenizer | None, prompt_ids: Sequence[int], vocab_size: int,
                   device: torch.device | str) -> torch.Tensor | None:
    """(1, V) True where a token is never sampled: the training data never used it (a character
    vocabulary's byte fallback, which alone decodes to "\ufffd") and the prompt does not hold it
    (a prompt with a character outside the vocabulary may need its bytes). None: nothing to mask."""
    if tokenizer is None:
        return None
    ids = set(tokenizer.untrained_ids()).difference(prompt_ids)
    ids = [i for i in ids if i < vocab_size]
    if not ids:
        return None
    mask = torch.zeros((1, vocab_size), dtype=torch.bool, device=device)
    mask[0, ids] = True
    return mask


def make_policies(
    tokenizer: Tokenizer | None,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig,
    vocab_size: int,
    stop_ids: Collection[int],
    device: torch.device | str,
    top_logprobs: int = 0,
    first_row: int = 0,
) -> list[RowPolicy]:
    """One policy per row; row i draws from its own generator seeded `config.seed + i`
    (`first_row` offsets i when a long run is generated in several batches)."""
    return [
        RowPolicy(tokenizer, p, config, vocab_size,
                  None if config.seed is None else config.seed + first_row + i, stop_ids,
                  top_logprobs, device)
        for i, p in enumerate(prompts)
    ]


# choose(row, index, logits) -> token: a policy's own choice for batch row `row`, which holds
# sequence `index` (the adaptive controller's THINK tokens, or given text to score).
TokenChoice = Callable[[int, int, torch.Tensor], int]


def step_policies(
    decoder: Decoder,
    index_of: Mapping[int, int],
    policies: Sequence[RowPolicy],
    forward: StepForward | None = None,
    choose: TokenChoice | None = None,
    before_step: Callable[[], None] | None = None,
    on_error: Callable[[int, Exception], None] | None = None,
) -> Iterator[tuple[int, TokenEvent]]:
    """One token of every row of `decoder` (row handle -> sequence index in `index_of`): yields
    (sequence index, event) as each is made; finished rows leave the batch, and one step runs
    for the rest. With `on_error`, a row whose choice fails is reported there and leaves alone
    (a server's other requests go on); without it, the error propagates."""
    logits = decoder.logits
    token_of: dict[int, int] = {}
    done: list[int] = []
    for row, handle in enumerate(decoder.handles):
        index = index_of[handle]
        try:
            if choose is None:
                token = policies[index].choose(logits[row])
            else:
                token = choose(row, index, logits[row])
            event = policies[index].accept(token)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(index, exc)
            done.append(handle)
            continue
        yield index, event
        token_of[handle] = token
        if event.finished:
            done.append(handle)
    if done:
        decoder.remove(done)  # rows move: follow them by handle
    if decoder.num_rows:
        tokens = torch.tensor([token_of[h] for h in decoder.handles], dtype=torch.long)
        if before_step is not None:
            before_step()
        decoder.step(tokens, forward)


def run_policies(
    decoder: Decoder,
    handles: Sequence[int],
    policies: Sequence[RowPolicy],
    forward: StepForward | None = None,
    choose: TokenChoice | None = None,
    before_step: Callable[[], None] | None = None,
) -> Iterator[tuple[int, TokenEvent]]:
    """The decoding loop, over rows already added to `decoder`: yields (sequence index, event)
    for every token as it is made; a finished row leaves the batch at once."""
    index_of = dict(zip(handles, range(len(policies)), strict=True))
    while decoder.num_rows:
        yield from step_policies(decoder, index_of, policies, forward, choose, before_step)


def generate_stream(
    model: LANTERNModel,
    tokenizer: Tokenizer | None,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig,
    stop_ids: Collection[int] = (),
    top_logprobs: int = 0,
    inputs_embeds: Sequence[torch.Tensor | None] | None = None,
    first_row: int = 0,
) -> Iterator[tuple[int, TokenEvent]]:
    """Sample a continuation of every prompt as one batch; yields (prompt index, event)."""
    was_training = model.training
    model.eval()
    try:
        decoder = Decoder(model, config.steps_per_block, config.compile)
        handles = decoder.add(prompts, inputs_embeds)
        policies = make_policies(tokenizer, prompts, config, model.config.vocab_size, stop_ids,
                                 decoder.device, top_logprobs, first_row)
        yield from run_policies(decoder, handles, policies)
    finally:
        model.train(was_training)


def padded_sequences(
    prompts: Sequence[Sequence[int]], new_tokens: Sequence[Sequence[int]], pad: int
) -> torch.Tensor:
    """Each prompt and its new tokens as one row of a (B, longest) tensor, for callers that want
    tensors back: continuations that stopped early are right-padded with `pad`, and shorter
    prompts left-padded, so every row's last position is the same column."""
    width = max(len(t) for t in new_tokens)
    rows = [list(p) + list(t) + [pad] * (width - len(t))
            for p, t in zip(prompts, new_tokens, strict=True)]
    longest = max(len(r) for r in rows)
    return torch.tensor([[pad] * (longest - len(r)) + r for r in rows], dtype=torch.long)
