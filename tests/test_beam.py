"""Beam search against brute-force enumeration on a model small enough to check every output."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import tiny_config

from lantern.generation.beam import beam_search
from lantern.models.lantern_model import LANTERNModel

VOCAB = 5


@pytest.fixture
def model() -> LANTERNModel:
    torch.manual_seed(3)
    model = LANTERNModel(tiny_config(vocab_size=VOCAB, hidden_size=16, num_heads=2))
    with torch.no_grad():  # sharpen the distributions so the best sequence is clear-cut
        model.lm_head.weight.mul_(40)
    return model.eval()


@torch.no_grad()
def log_prob(model, prompt: list[int], tokens: list[int]) -> float:
    logits, _ = model(torch.tensor([prompt + tokens]))
    logp = logits[0, len(prompt) - 1 : -1].log_softmax(-1)
    return float(logp[torch.arange(len(tokens)), torch.tensor(tokens)].sum())


def best_by_enumeration(model, prompt, length, stop, length_penalty):
    """Every sequence of at most `length` tokens that ends at `stop` or at the length limit."""
    best, best_score = None, -math.inf
    for n in range(1, length + 1):
        for seq in itertools.product(range(VOCAB), repeat=n):
            seq = list(seq)
            if stop in seq[:-1] or (n < length and seq[-1] != stop):
                continue
            score = log_prob(model, prompt, seq) / n**length_penalty
            if score > best_score:
                best, best_score = seq, score
    return best, best_score


def test_wide_beam_finds_the_highest_scoring_sequence(model):
    prompt, length = [1, 2], 3
    found = beam_search(model, [prompt], num_beams=VOCAB**2, max_new_tokens=length)
    best = max(itertools.product(range(VOCAB), repeat=length),
               key=lambda seq: log_prob(model, prompt, list(seq)))
    assert found[0][0].tokens == list(best)
    assert found[0][0].log_prob == pytest.approx(log_prob(model, prompt, list(best)), abs=1e-4)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_stop_token_and_length_penalty_match_enumeration(model, length_penalty):
    prompt, length, stop = [3], 3, 0
    found = beam_search(model, [prompt], num_beams=VOCAB**2, max_new_tokens=length,
                        stop_ids={stop}, length_penalty=length_penalty)
    best, score = best_by_enumeration(model, prompt, length, stop, length_penalty)
    assert found[0][0].tokens == best
    assert found[0][0].score == pytest.approx(score, abs=1e-4)


def test_hypotheses_sorted_and_scores_consistent(model):
    found = beam_search(model, [[1, 4]], num_beams=3, max_new_tokens=4)[0]
    assert len(found) == 3
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    for h in found:
        assert h.log_prob == pytest.approx(log_prob(model, [1, 4], h.tokens), abs=1e-4)


def test_one_beam_is_greedy(model):
    prompt = [2, 3]
    found = beam_search(model, [prompt], num_beams=1, max_new_tokens=5)[0][0]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(5):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    assert found.tokens == ids[2:]


def test_batched_prompts_of_different_lengths(model):
    prompts = [[1, 2, 3, 4], [2]]
    together = beam_search(model, prompts, num_beams=4, max_new_tokens=4)
    for row, prompt in enumerate(prompts):
        alone = beam_search(model, [prompt], num_beams=4, max_new_tokens=4)
        assert together[row][0].tokens == alone[0][0].tokens


def test_early_stopping_ends_with_enough_finished(model):
    found = beam_search(model, [[1]], num_beams=2, max_new_tokens=30,
                        stop_ids={0, 1, 2}, early_stopping=True)[0]
    assert len(found) == 2 and all(h.tokens[-1] in {0, 1, 2} for h in found)
