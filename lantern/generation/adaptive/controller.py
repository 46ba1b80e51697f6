"""GenerationController: uncertainty-aware decoding, a policy over the decoding core.

For each new token the controller runs the blocks at the shallow depth, scores the
distribution, and only continues the recursion (from where it stopped when the model has one
block; from the embedding otherwise) when the UncertaintyController asks. Above the top
threshold it emits a THINK token instead of a word. Prefill, the KV cache, the context slide,
the sampling rules and the stop conditions are the core's (`lantern.generation.core`), so every
generation setting works here as it does everywhere else.

Rows of a batch are computed together, so the neediest row sets the depth of a step. Compute is
counted as block applications actually run, Monte-Carlo passes included.

Monte-Carlo dropout re-runs the last block application with the dropout rate the model was
trained with; a model trained without dropout has no such signal (its epistemic value is 0 and
no passes run) unless the UncertaintyController is given a rate explicitly. Tokens are always
drawn from the model's own (deterministic) distribution, never from the perturbed average.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lantern.errors import LanternError
from lantern.generation.adaptive.uncertainty import (
    UncertaintyController,
    UncertaintySignals,
    mc_dropout,
)
from lantern.generation.core import Decoder, make_policies, padded_sequences, run_policies
from lantern.generation.settings import GenerationConfig
from lantern.models.kv_cache import KVCache
from lantern.models.lantern_model import (
    LANTERNModel,
    RecursiveTransformer,
    StepContext,
    positions_after,
)
from lantern.models.positions import sinusoids
from lantern.tokenizers import Tokenizer

__all__ = ["GenerationConfig", "GenerationController", "GenerationResult", "TokenTrace"]


@dataclass
class TokenTrace:
    """What happened for one generated (or scored) token of one row."""

    token: int
    uncertainty: float
    entropy: float
    top1: float
    dispersion: float
    epistemic: float
    depth: int  # steps per block used for this token's distribution
    applications: int  # block applications run for it (MC-dropout passes included)
    think: bool  # a THINK token was emitted here
    loss: float | None = None  # -log p(token), when scoring given text


@dataclass
class GenerationResult:
    sequences: torch.Tensor  # (B, prompt + new), THINK tokens included, right-padded with EOS
    new_tokens: list[list[int]]  # per row, THINK tokens included
    trace: list[list[TokenTrace]] = field(default_factory=list)
    stop_reasons: list[str] = field(default_factory=list)  # "stop_token", "stop_string", "length"

    def visible_tokens(
        self, row: int, think_token_id: int | None, show_think: bool = False
    ) -> list[int]:
        """The row's new tokens, THINK tokens dropped unless asked for."""
        return [t for t in self.new_tokens[row] if show_think or t != think_token_id]


class TransformerView:
    """The split pieces (`model.transformer`, `lm_head`, embedding matrix) presented through
    the interface the decoding core reads from a whole LANTERNModel."""

    def __init__(self, transformer: RecursiveTransformer, lm_head: nn.Module,
                 embedding_matrix: torch.Tensor) -> None:
        if transformer.config.position == "learned":
            raise LanternError("this model learned its position table, which lives in the whole "
                               "model: pass model=model instead of model.transformer")
        self.transformer, self.lm_head, self.embedding = transformer, lm_head, embedding_matrix
        self.config = transformer.config
        self.positions_unbounded = self.config.position in ("rope", "sinusoidal")

    @property
    def training(self) -> bool:
        return self.transformer.training

    def train(self, mode: bool = True) -> None:
        self.transformer.train(mode)

    def eval(self) -> None:
        self.transformer.eval()

    def get_embedding_matrix(self) -> torch.Tensor:
        return self.embedding

    def embed(self, idx: torch.Tensor, position_ids: torch.Tensor,
              inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embedding[idx] if inputs_embeds is None else inputs_embeds
        if self.config.position == "sinusoidal":
            h = h + sinusoids(position_ids, self.config.hidden_size).to(h.dtype)
        return h

    def cover_positions(self, end: int) -> None:
        if self.transformer.rotary is not None:  # sinusoids are computed for any position
            self.transformer.rotary.cover(end)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h)

    def hidden(self, idx: torch.Tensor, steps_per_block: int | None = None,
               cache: KVCache | None = None,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        position_ids, end = positions_after(cache, idx.shape[1], idx.device)
        self.cover_positions(end)
        return self.transformer(self.embed(idx, position_ids, inputs_embeds), steps_per_block,
                                cache, position_ids)

    def new_cache(self, batch_size: int, max_length: int | None = None,
                  steps_per_block: int | None = None) -> KVCache:
        return self.transformer.new_cache(batch_size, max_length or self.config.context_length,
                                          steps_per_block or self.config.steps_per_block,
                                          self.embedding)


@dataclass
class _StepRecord:
    """What the adaptive forward did for the current token of every batch row."""

    depth: int
    applications: int
    samples: torch.Tensor | None  # (N, rows, V) MC-dropout probabilities


class GenerationController:
    """The adaptive generator. `model` is the whole LANTERNModel, or `model.transformer` together with
    `lm_head` and `embedding_matrix` (the split form)."""

    def __init__(
        self,
        model: nn.Module,
        lm_head: nn.Module | None = None,
        embedding_matrix: torch.Tensor | None = None,
        uncertainty_controller: UncertaintyController | None = None,
        config: GenerationConfig | None = None,
        recur_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> None:
        if isinstance(model, LANTERNModel):
            self.model: LANTERNModel | TransformerView = model
        elif isinstance(model, RecursiveTransformer):
            if lm_head is None or embedding_matrix is None:
                raise LanternError("with model.transformer, pass lm_head and embedding_matrix too")
            self.model = TransformerView(model, lm_head, embedding_matrix)
        else:
            raise LanternError("GenerationController needs a LANTERN model or model.transformer")
        self.transformer: RecursiveTransformer = self.model.transformer
        self.embedding_matrix = self.model.get_embedding_matrix()
        self.uncertainty = uncertainty_controller or UncertaintyController()
        self.config = config or GenerationConfig()
        if self.config.compile:
            raise LanternError("--compile has no effect on adaptive decoding, whose tokens each "
                               "run their own depth; drop --compile")
        # recur_fn(h, steps): the uncached path (`reference_probs`); decoding uses the KV cache.
        self.recur_fn = recur_fn or (lambda h, steps: self.transformer(h, steps_per_block=steps))
        rate = self.uncertainty.mc_dropout
        self.mc_rate = self.transformer.config.dropout if rate is None else rate
        self.mc_samples = self.uncertainty.mc_samples if self.mc_rate > 0 else 0

    @property
    def has_epistemic_signal(self) -> bool:
        """False for a model trained without dropout (and no explicit rate): no MC passes."""
        return self.mc_samples > 0

    # -- one token ---------------------------------------------------------------------------
    def _probs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model.head(self.transformer.norm(h))[:, -1].float(), dim=-1)

    def _forward(self, thinking: torch.Tensor) -> Callable[[torch.Tensor, StepContext], torch.Tensor]:
        """The per-token forward the decoder runs: depth chosen by uncertainty."""

        def forward(x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
            uc, t = self.uncertainty, self.transformer
            shallow, mid, deepest = uc.depths(t.config.steps_per_block)
            state = _Recursion(t, x, ctx)
            rows_thinking = thinking[: x.shape[0]]
            runs = state.run(deepest if bool(rows_thinking.any()) else shallow)
            probs = self._probs(state.h)
            if uc.exit_kl is not None:
                runs, probs = self._until_converged(state, runs, probs, deepest)
            score = uc.signals(probs, self.embedding_matrix).score
            if (uc.exit_kl is None and state.depth < mid
                    and bool(uc.go_deeper(score).any())):
                runs += state.run(mid)
                probs = self._probs(state.h)
                score = uc.signals(probs, self.embedding_matrix).score
            samples = None
            if bool((uc.go_max(score) | rows_thinking).any()):
                if state.depth < deepest and uc.exit_kl is None:  # else convergence decided
                    runs += state.run(deepest)
                if self.mc_samples:
                    samples = state.mc_probs(self.mc_samples, self.mc_rate, self._probs)
                    runs += self.mc_samples
            state.fill_skipped()
            self._record = _StepRecord(state.depth, runs, samples)
            return self.model.head(t.norm(state.h))[:, -1]

        return forward

    def _until_converged(self, state: _Recursion, runs: int, probs: torch.Tensor,
                         deepest: int) -> tuple[int, torch.Tensor]:
        """One step deeper at a time while any row's distribution still moves (exit_kl)."""
        while state.depth < deepest:
            previous = probs
            runs += state.run(state.depth + 1)
            probs = self._probs(state.h)
            if not bool(self.uncertainty.still_moving(probs, previous).any()):
                break
        return runs, probs

    @torch.no_grad()
    def reference_probs(self, input_ids: torch.Tensor, steps: int) -> torch.Tensor:
        """Next-token probabilities (B, V) after `input_ids`, recomputed without any cache."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        h = self.recur_fn(self.model.embed(input_ids, positions), steps)
        return torch.softmax(self.model.head(h)[:, -1].float(), dim=-1)

    # -- whole sequences ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | Sequence[Sequence[int]],
        targets: torch.Tensor | None = None,
        tokenizer: Tokenizer | None = None,
        stop_ids: Collection[int] = (),
        on_text: Callable[[int, str], None] | None = None,
        between_tokens: Callable[[], None] | None = None,
    ) -> GenerationResult:
        """Continue each prompt (a (B, L) tensor, or lists of ids of any lengths). With `targets`
        (B, T), score that text instead: the given tokens are fed back (no THINK) and each trace
        entry carries its loss. With a tokenizer, stop strings end a row and `on_text(row,
        piece)` streams its text. `between_tokens()` runs before each step after the first (a
        server lets other work use the model there)."""
        cfg, uc = self.config, self.uncertainty
        prompts = input_ids.tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
        if not prompts or any(len(p) == 0 for p in prompts):
            raise LanternError("input_ids must be a non-empty (batch, length) tensor")
        batch = len(prompts)
        steps = targets.shape[1] if targets is not None else cfg.max_new_tokens
        deepest = uc.depths(self.transformer.config.steps_per_block)[2]
        run_cfg = dataclasses.replace(cfg, max_new_tokens=steps)
        stop = set(stop_ids) | ({cfg.eos_token_id} - {None}) if targets is None else set()
        was_training = self.transformer.training
        self.transformer.eval()
        decoder = Decoder(self.model, deepest)
        handles = decoder.add(prompts)
        policies = make_policies(tokenizer, prompts, run_cfg, self.transformer.config.vocab_size,
                                 stop, decoder.device)
        index_of = dict(zip(handles, range(batch), strict=True))
        self._record = _StepRecord(deepest, self.transformer.config.num_layers(deepest), None)
        thinking = torch.zeros(batch, dtype=torch.bool)  # in batch-row order, see `forward`
        think_run = [0] * batch
        trace: list[list[TokenTrace]] = [[] for _ in range(batch)]
        new_tokens: list[list[int]] = [[] for _ in range(batch)]
        row_thinking = [False] * batch

        def choose(row: int, index: int, logits: torch.Tensor) -> int:
            probs = torch.softmax(logits.float(), dim=-1)[None]
            record = self._record
            samples = record.samples[:, row: row + 1] if record.samples is not None else None
            signals = uc.signals(probs, self.embedding_matrix, samples)
            position = len(new_tokens[index])
            think = False
            if targets is not None:
                token = int(targets[index, position])
            else:
                if cfg.think_token_id is not None:
                    logits = logits.clone()
                    logits[cfg.think_token_id] = float("-inf")  # THINK is the policy's choice
                token = policies[index].choose(logits)
                think = (cfg.think_token_id is not None and bool(uc.think(signals.score))
                         and think_run[index] < uc.max_think_tokens)
                if think:
                    token = cfg.think_token_id
            loss = float(-probs[0, token].clamp_min(1e-12).log()) if targets is not None else None
            trace[index].append(_trace(token, signals, record.depth, record.applications, think,
                                       loss))
            new_tokens[index].append(token)
            think_run[index] = think_run[index] + 1 if think else 0
            row_thinking[index] = (row_thinking[index] or think) and bool(uc.go_max(signals.score))
            return token

        forward = self._forward(thinking)
        reasons = ["length"] * batch

        def before_step() -> None:
            _sync(thinking, decoder.handles, index_of, row_thinking)
            if between_tokens is not None:
                between_tokens()

        try:
            for index, event in run_policies(decoder, handles, policies, forward, choose,
                                             before_step=before_step):
                if on_text is not None and event.text:
                    on_text(index, event.text)
                if event.finished:
                    reasons[index] = event.stop_reason or "length"
        finally:
            self.transformer.train(was_training)
        pad = cfg.eos_token_id if cfg.eos_token_id is not None else 0
        sequences = padded_sequences(prompts, new_tokens, pad)
        return GenerationResult(sequences, new_tokens, trace, reasons)


def _sync(thinking: torch.Tensor, handles: Sequence[int], index_of: dict[int, int],
          row_thinking: list[bool]) -> None:
    """Lay the per-sequence THINK state out in the decoder's current batch order."""
    for row, handle in enumerate(handles):
        thinking[row] = row_thinking[index_of[handle]]


def _trace(token: int, s: UncertaintySignals, depth: int, applications: int, think: bool,
           loss: float | None) -> TokenTrace:
    return TokenTrace(token=token, uncertainty=float(s.score[0]), entropy=float(s.entropy[0]),
                      top1=float(s.top1[0]), dispersion=float(s.dispersion[0]),
                      epistemic=float(s.epistemic[0]), depth=depth, applications=applications,
                      think=think, loss=loss)


class _Recursion:
    """One token position's pass through the blocks, continued deeper on demand.

    With a single recurrent block (prelude and coda blocks aside) going deeper continues its
    recursion from where it stopped and re-runs only the coda; with several, every block is
    recomputed from the embedding at the new depth."""

    def __init__(self, transformer: RecursiveTransformer, x: torch.Tensor, ctx: StepContext) -> None:
        self.t, self.x, self.ctx = transformer, x, ctx
        cfg = transformer.config
        self.recurrent = [b for b in range(cfg.num_blocks) if cfg.recurrent(b)]
        self.h: torch.Tensor = x
        self.core: tuple[torch.Tensor, torch.Tensor] | None = None  # (state, input) of the recursion
        self.last: tuple[torch.Tensor, torch.Tensor, int] = (x, x, 0)  # last application's input
        self.depth = 0

    def run(self, depth: int) -> int:
        """Bring the token to `depth` steps per recurrent block; returns block applications run."""
        t, ctx, cfg = self.t, self.ctx, self.t.config
        core = self.recurrent[-1]
        if len(self.recurrent) == 1 and self.core is not None:  # continue the recursion
            h, core_input = self.core
            h, runs = self._apply(h, core_input, core, self.depth, depth), depth - self.depth
        else:  # from the embedding: every block up to the last recurrent one
            h, runs = self.x, 0
            for b in range(core + 1):
                block_input, steps = h, cfg.block_steps(b, depth)
                h = self._apply(h, block_input, b, 0, steps)
                if b < core:
                    t.fill_skipped(h, block_input, b, steps, ctx)
                runs += steps
            core_input = block_input
        self.core, self.depth = (h, core_input), depth
        for b in range(core + 1, cfg.num_blocks):  # the coda, once, on the new state
            h = self._apply(h, h, b, 0, 1)
            runs += 1
        self.h = h
        return runs

    def _apply(self, h: torch.Tensor, block_input: torch.Tensor, block: int, start: int,
               stop: int) -> torch.Tensor:
        """Steps start..stop-1 of `block`, remembering the input of the very last one."""
        if stop > start:
            h = self.t.apply_steps(h, block_input, block, start, stop - 1, self.ctx)
            self.last = (h, block_input, stop - 1)
            h = self.t.apply_steps(h, block_input, block, stop - 1, stop, self.ctx)
        return h

    def mc_probs(self, count: int, rate: float,
                 probs: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """(N, rows, V): the last block application re-run with dropout `rate`, N times. Dropout
        acts after the key/value projection, so the keys it writes to the cache are unchanged."""
        t, last = self.t, len(self.t.blocks) - 1
        h_prev, block_input, step = self.last
        samples = []
        with mc_dropout(t.blocks[last], rate):
            for _ in range(count):
                h = t.apply_steps(h_prev, block_input, last, step, step + 1, self.ctx)
                samples.append(probs(h))
        return torch.stack(samples)

    def fill_skipped(self) -> None:
        """The recurrent block's layers deeper than this token reached (see the model)."""
        if self.core is not None:
            h, core_input = self.core
            self.t.fill_skipped(h, core_input, self.recurrent[-1], self.depth, self.ctx)
