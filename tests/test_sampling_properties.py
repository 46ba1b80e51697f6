"""Property tests of the truncation rules against brute-force definitions, on any logits."""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lantern.generation.logits_process import MinP, TopK, TopP
from lantern.generation.sampling import SamplingConfig

# Logits at least 0.01 apart: "the k largest" and "the smallest set" are then well defined
# (values that differ only below float32 resolution would be ties).
LOGITS = st.lists(st.integers(-2000, 2000), min_size=1, max_size=40, unique=True).map(
    lambda values: [v / 100 for v in values])
PROBABILITY = st.floats(0.01, 1.0)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits).nonzero().flatten().tolist())


@settings(max_examples=150, deadline=None)
@given(LOGITS, PROBABILITY)
def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p(values, p):
    logits = torch.tensor([values])
    probs = [math.exp(v) for v in values]
    total = sum(probs)
    probs = [q / total for q in probs]
    order = sorted(range(len(values)), key=lambda i: -probs[i])
    mass, size = 0.0, 0
    for i in order:
        size += 1
        mass += probs[i]
        if mass >= p:
            break
    # Float32 sums can land on the other side of p when it sits right at a boundary.
    prefix = [sum(probs[i] for i in order[:k]) for k in range(len(order) + 1)]
    assume(all(abs(m - p) > 1e-4 for m in prefix))
    assert kept(TopP(p)(logits, None)[0]) == set(order[:size])


@settings(max_examples=100, deadline=None)
@given(LOGITS, st.integers(1, 50))
def test_top_k_keeps_the_k_largest(values, k):
    logits = torch.tensor([values])
    largest = sorted(range(len(values)), key=lambda i: -values[i])[:k]
    assert kept(TopK(k)(logits, None)[0]) == set(largest)


@settings(max_examples=100, deadline=None)
@given(LOGITS, PROBABILITY)
def test_min_p_keeps_tokens_at_least_p_times_the_best(values, p):
    logits = torch.tensor([values])
    probs = torch.tensor([values], dtype=torch.float64).softmax(-1)[0]
    ratio = probs / probs.max()
    assume(bool(((ratio - p).abs() > 1e-5).all()))
    assert kept(MinP(p)(logits, None)[0]) == set((ratio >= p).nonzero().flatten().tolist())


@settings(max_examples=100, deadline=None)
@given(LOGITS, st.floats(0.05, 3.0), st.integers(0, 50), PROBABILITY, st.floats(0.0, 1.0))
def test_any_chain_of_rules_leaves_at_least_one_token(values, temperature, top_k, top_p, min_p):
    rules = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p).rules()
    logits = torch.tensor([values])
    for rule in rules:
        logits = rule(logits, None)
    best = max(range(len(values)), key=lambda i: values[i])
    assert best in kept(logits[0])
