"""Beam search: keep the `num_beams` most likely continuations of each prompt.

A finished hypothesis (one that produced a stop token, or reached `max_new_tokens`) is scored
`sum of log-probabilities / generated_length ** length_penalty`; a penalty above 0 favours
longer outputs. With `early_stopping` a prompt is done as soon as it has `num_beams` finished
hypotheses; without it, only once no running beam can still beat the worst of them (an exact
bound, so the search never stops before it could have found something better).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from lantern.errors import LanternError
from lantern.generation.core import Decoder
from lantern.models.lantern_model import LANTERNModel


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, the stop token included
    log_prob: float  # sum of the tokens' log-probabilities
    score: float  # log_prob / len(tokens) ** length_penalty


class BeamPool:
    """The best `num_beams` finished hypotheses of one prompt."""

    def __init__(self, num_beams: int, length_penalty: float) -> None:
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.hypotheses: list[Hypothesis] = []

    def score(self, log_prob: float, length: int) -> float:
        return log_prob / length**self.length_penalty

    def add(self, tokens: list[int], log_prob: float) -> None:
        self.hypotheses.append(Hypothesis(tokens, log_prob, self.score(log_prob, len(tokens))))
        self.hypotheses.sort(key=lambda h: h.score, reverse=True)
        del self.hypotheses[self.num_beams :]

    def done(self, best_running: float, length: int, max_length: int, early_stopping: bool) -> bool:
        """No running beam (best log-prob `best_running`, `length` tokens) can enter the pool."""
        if len(self.hypotheses) < self.num_beams:
            return False
        if early_stopping:
            return True
        # A running beam ends with at least one more token; its log-prob can only fall.
        best_length = max_length if self.length_penalty > 0 else length + 1
        return self.score(best_running, best_length) <= self.hypotheses[-1].score


@torch.inference_mode()
def beam_search(
    model: LANTERNModel,
    prompts: Sequence[Sequence[int]],
    num_beams: int,
    max_new_tokens: int,
    stop_ids: Collection[int] = (),
    length_penalty: float = 1.0,
    early_stopping: bool = False,
    steps_per_block: int | None = None,
    compile: bool = False,
) -> list[list[Hypothesis]]:
    """For each prompt, its finished hypotheses, best first. A policy over the decoding core:
    the decoder keeps `num_beams` rows per prompt and follows the surviving beams."""
    if num_beams < 1:
        raise LanternError(f"--num_beams must be positive (got {num_beams})")
    batch, vocab = len(prompts), model.config.vocab_size
    was_training = model.training
    model.eval()
    decoder = Decoder(model, steps_per_block, compile)
    handles = decoder.add(prompts)
    row_of = {handle: row for row, handle in enumerate(decoder.handles)}
    decoder.reorder([row_of[h] for h in handles for _ in range(num_beams)])  # encoded once
    device = decoder.device
    # Only the first beam of each prompt is live at the start, so the beams begin distinct.
    beam_scores = torch.full((batch, num_beams), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    sequences = torch.zeros((batch * num_beams, 0), dtype=torch.long, device=device)
    pools = [BeamPool(num_beams, length_penalty) for _ in range(batch)]
    done = [False] * batch
    stop = set(stop_ids)
    logits = decoder.logits
    for length in range(1, max_new_tokens + 1):
        log_probs = logits.float().log_softmax(dim=-1) + beam_scores.view(-1, 1)
        top_scores, top_index = log_probs.view(batch, -1).topk(2 * num_beams, dim=-1)
        next_scores = torch.full((batch, num_beams), float("-inf"), device=device)
        next_tokens = torch.zeros((batch, num_beams), dtype=torch.long, device=device)
        next_rows = torch.arange(batch * num_beams, device=device).view(batch, num_beams).clone()
        for b in range(batch):
            if done[b]:
                continue
            kept = 0
            candidates = zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True)
            for rank, (score, index) in enumerate(candidates):
                beam, token = divmod(index, vocab)
                row = b * num_beams + beam
                if score == float("-inf"):
                    break
                if token in stop:
                    if rank < num_beams:
                        pools[b].add(sequences[row].tolist() + [token], score)
                    continue
                next_scores[b, kept], next_tokens[b, kept], next_rows[b, kept] = score, token, row
                kept += 1
                if kept == num_beams:
                    break
            best = float(next_scores[b, 0])
            done[b] = best == float("-inf") or pools[b].done(
                best, length, max_new_tokens, early_stopping
            )
        if all(done):
            break
        order = next_rows.view(-1)
        sequences = torch.cat([sequences[order], next_tokens.view(-1, 1)], dim=1)
        beam_scores = next_scores
        decoder.reorder(order.tolist())
        if length < max_new_tokens:
            logits = decoder.step(next_tokens.view(-1))
    for b in range(batch):
        if not done[b]:  # reached max_new_tokens: the running beams are finished as they stand
            for beam in range(num_beams):
                score = float(beam_scores[b, beam])
                if score > float("-inf"):
                    pools[b].add(sequences[b * num_beams + beam].tolist(), score)
    model.train(was_training)
    return [pool.hypotheses for pool in pools]
