"""GenerationController: KV-cached decoding whose depth, averaging and THINK tokens follow the
uncertainty of each next-token distribution.

For each new token the controller runs the blocks at the shallow depth, scores the
distribution, and only continues the recursion (from where it stopped when the model has one
block; from the embedding otherwise) when the UncertaintyController asks. Rows of a batch are
computed together, so the neediest row sets the depth of a step. Compute is counted as block
applications actually run, Monte-Carlo passes included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lantern.controller.uncertainty import UncertaintyController, mc_dropout
from lantern.errors import LanternError
from lantern.generation.sampling import filter_logits
from lantern.models.lantern_model import RecursiveTransformer, StepContext


@dataclass
class GenerationConfig:
    max_new_tokens: int = 100  # THINK tokens count too, so the loop always ends
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    think_token_id: int | None = None  # None = never emit THINK
    eos_token_id: int | None = None
    seed: int | None = None


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

    def visible_tokens(
        self, row: int, think_token_id: int | None, show_think: bool = False
    ) -> list[int]:
        """The row's new tokens, THINK tokens dropped unless asked for."""
        return [t for t in self.new_tokens[row] if show_think or t != think_token_id]


@dataclass
class _TokenState:
    """Hidden states of the token being processed, for continuing its recursion."""

    x: torch.Tensor
    ctx: StepContext
    h: torch.Tensor | None = None
    h_prev: torch.Tensor | None = None  # input of the last block's last application
    last_input: torch.Tensor | None = None  # input of the last block (for reinjection)
    depth: int = 0


class GenerationController:
    """Seed 000's API: `model` is `model.transformer` (or the whole LANTERNModel)."""

    def __init__(
        self,
        model: nn.Module,
        lm_head: nn.Module,
        embedding_matrix: torch.Tensor,
        uncertainty_controller: UncertaintyController | None = None,
        config: GenerationConfig | None = None,
        recur_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ) -> None:
        transformer = getattr(model, "transformer", model)
        if not isinstance(transformer, RecursiveTransformer):
            raise LanternError("GenerationController needs a LANTERN model or model.transformer")
        self.transformer = transformer
        self.lm_head = lm_head
        self.embedding_matrix = embedding_matrix
        self.uncertainty = uncertainty_controller or UncertaintyController()
        self.config = config or GenerationConfig()
        # recur_fn(h, steps): the uncached path (`reference_probs`); decoding uses the KV cache.
        self.recur_fn = recur_fn or (lambda h, steps: transformer(h, steps_per_block=steps))
        # Absolute positions live in the full model; RoPE models embed with the matrix alone.
        self.embed = getattr(transformer, "embed_input", None) or (
            lambda ids, positions: embedding_matrix[ids]
        )

    # -- one token ---------------------------------------------------------------------------
    def _run(self, state: _TokenState, depth: int) -> int:
        """Bring the token to `depth` steps per block; returns block applications run."""
        t = self.transformer
        last = len(t.blocks) - 1
        if last == 0 and state.h is not None:  # one block: continue the recursion
            h, start, runs = state.h, state.depth, depth - state.depth
        else:  # several blocks: recompute from the embedding at the new depth
            h, start, runs = state.x, 0, len(t.blocks) * depth
            for b in range(last):
                block_input = h
                h = t.apply_steps(h, block_input, b, 0, depth, state.ctx)
                t.fill_skipped(h, block_input, b, depth, state.ctx)
            state.last_input = h
        h = t.apply_steps(h, state.last_input, last, start, depth - 1, state.ctx)
        state.h_prev = h
        state.h = t.apply_steps(h, state.last_input, last, depth - 1, depth, state.ctx)
        state.depth = depth
        return runs

    def _probs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.lm_head(self.transformer.norm(h))[:, -1].float(), dim=-1)

    def _mc_probs(self, state: _TokenState) -> torch.Tensor:
        """(N, B, V): the last block application re-run with dropout N times."""
        t, last = self.transformer, len(self.transformer.blocks) - 1
        samples = []
        with mc_dropout(t.blocks[last], self.uncertainty.mc_dropout):
            for _ in range(self.uncertainty.mc_samples):
                h = t.apply_steps(state.h_prev, state.last_input, last, state.depth - 1,
                                  state.depth, state.ctx)
                samples.append(self._probs(h))
        return torch.stack(samples)

    def _step(self, state: _TokenState, thinking: torch.Tensor):
        """Adaptive processing of one token position; returns (probs, signals, applications)."""
        uc = self.uncertainty
        shallow, mid, deepest = uc.depths(self.transformer.config.steps_per_block)
        depth = deepest if bool(thinking.any()) else shallow
        runs = self._run(state, depth)
        probs = self._probs(state.h)
        signals = uc.signals(probs, self.embedding_matrix)
        if depth < mid and bool(uc.go_deeper(signals.score).any()):
            runs += self._run(state, mid)
            probs = self._probs(state.h)
            signals = uc.signals(probs, self.embedding_matrix)
        if bool((uc.go_max(signals.score) | thinking).any()):
            if state.depth < deepest:
                runs += self._run(state, deepest)
                probs = self._probs(state.h)
            samples = None
            if uc.mc_samples > 0:
                samples = self._mc_probs(state)
                runs += uc.mc_samples
                probs = samples.mean(0)
            signals = uc.signals(probs, self.embedding_matrix, samples)
        t = self.transformer
        t.fill_skipped(state.h, state.last_input, len(t.blocks) - 1, state.depth, state.ctx)
        return probs, signals, runs

    def _choose(self, probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg = self.config
        if cfg.think_token_id is not None:  # THINK is the policy's choice, never sampled
            probs = probs.index_fill(1, torch.tensor([cfg.think_token_id], device=probs.device), 0.0)
        if cfg.temperature <= 0:
            return probs.argmax(-1)
        logits = filter_logits(probs.clamp_min(1e-12).log(), cfg.temperature, cfg.top_k, cfg.top_p)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]

    @torch.no_grad()
    def reference_probs(self, input_ids: torch.Tensor, steps: int) -> torch.Tensor:
        """Next-token probabilities (B, V) after `input_ids`, recomputed without any cache."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        h = self.recur_fn(self.embed(input_ids, positions), steps)
        return torch.softmax(self.lm_head(h)[:, -1].float(), dim=-1)

    # -- whole sequences ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> GenerationResult:
        """Continue each row of `input_ids` (B, L). With `targets` (B, T), score that text instead:
        the given tokens are fed back (no THINK) and each trace entry carries its loss."""
        cfg, uc, t = self.config, self.uncertainty, self.transformer
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise LanternError("input_ids must be a non-empty (batch, length) tensor")
        batch, prompt = input_ids.shape
        steps = targets.shape[1] if targets is not None else cfg.max_new_tokens
        deepest = uc.depths(t.config.steps_per_block)[2]
        needed = prompt + steps
        if needed > t.config.context_length:
            raise LanternError(f"prompt + new tokens ({needed}) exceed the model's context length "
                               f"{t.config.context_length} (its position table)")
        was_training = t.training
        t.eval()
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=input_ids.device).manual_seed(cfg.seed)
        cache = t.new_cache(batch, needed, deepest, self.embedding_matrix)
        positions = torch.arange(prompt, device=input_ids.device)[None]
        h = t(self.embed(input_ids, positions), steps_per_block=deepest, cache=cache,
              position_ids=positions)
        probs = torch.softmax(self.lm_head(h)[:, -1].float(), -1)
        signals = uc.signals(probs, self.embedding_matrix)
        runs = len(t.blocks) * deepest
        sequences = [input_ids]
        new_tokens: list[list[int]] = [[] for _ in range(batch)]
        trace: list[list[TokenTrace]] = [[] for _ in range(batch)]
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        thinking = torch.zeros_like(done)
        think_run = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
        depth = deepest
        for i in range(steps):
            if targets is not None:
                token = targets[:, i]
                think = torch.zeros_like(done)
            else:
                token = self._choose(probs, generator)
                think = torch.zeros_like(done)
                if cfg.think_token_id is not None:
                    think = uc.think(signals.score) & (think_run < uc.max_think_tokens) & ~done
                    token = torch.where(think, torch.full_like(token, cfg.think_token_id), token)
            if cfg.eos_token_id is not None:
                token = torch.where(done, torch.full_like(token, cfg.eos_token_id), token)
            loss = -probs.gather(1, token[:, None]).clamp_min(1e-12).log()[:, 0]
            for row in range(batch):
                if done[row]:
                    continue
                new_tokens[row].append(int(token[row]))
                trace[row].append(TokenTrace(
                    token=int(token[row]), uncertainty=float(signals.score[row]),
                    entropy=float(signals.entropy[row]), top1=float(signals.top1[row]),
                    dispersion=float(signals.dispersion[row]),
                    epistemic=float(signals.epistemic[row]), depth=depth, applications=runs,
                    think=bool(think[row]), loss=float(loss[row]) if targets is not None else None,
                ))
            think_run = torch.where(think, think_run + 1, torch.zeros_like(think_run))
            thinking = (thinking | think) & ~done
            sequences.append(token[:, None])
            if cfg.eos_token_id is not None:
                done = done | (token == cfg.eos_token_id)
            if bool(done.all()) or i == steps - 1:
                break
            position = torch.full((1, 1), prompt + i, device=input_ids.device)
            ctx = t.prepare(1, cache, position, None, input_ids.device, deepest)
            state = _TokenState(x=self.embed(token[:, None], position), ctx=ctx)
            state.last_input = state.x
            probs, signals, runs = self._step(state, thinking)
            depth = state.depth
            cache.advance(1)
            thinking = thinking & uc.go_max(signals.score)
        if was_training:
            t.train()
        return GenerationResult(torch.cat(sequences, dim=1), new_tokens, trace)
