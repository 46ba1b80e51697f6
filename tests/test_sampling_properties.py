"""Property tests of the truncation rules against brute-force definitions, on any logits, and of
stop strings in streamed text against a brute-force search of the whole text at every token."""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lantern.generation.logits_process import MinP, TopK, TopP
from lantern.generation.sampling import SamplingConfig
from lantern.generation.streaming import TextStream
from lantern.tokenizers import CharTokenizer
from lantern.tokenizers.bpe import HFTokenizerAdapter

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


STOP_TEXT = "abab aab\u00e9b \u00e9\u00e9a ba\U0001f600b " * 20  # multi-byte characters for byte-level BPE
STOP_TOKENIZERS = {"char": CharTokenizer.train([STOP_TEXT]),
                   "bpe": HFTokenizerAdapter.train_bpe([STOP_TEXT], vocab_size=300)}


def stop_reference(tokenizer, ids: list[int], stops: list[str]) -> list[str]:
    """What each token releases, from the whole text decoded at that token: everything up to the
    first stop string; otherwise all but a tail that could still begin one (or a trailing
    incomplete character)."""
    pieces, released = [], 0
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n], skip_special_tokens=True)
        found = [text.find(s) for s in stops if s in text]
        if found:
            pieces.append(text[released:min(found)])
            return pieces
        held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        end = min(len(text) - held, len(text) - text.endswith("\ufffd"))
        pieces.append(text[released:end] if end > released else "")
        released = max(released, end)
    pieces.append(text[released:] if ids else "")
    return pieces


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(STOP_TOKENIZERS)), st.data())
def test_stop_strings_release_what_a_search_of_the_whole_text_releases(kind, data):
    tokenizer = STOP_TOKENIZERS[kind]
    stop_chars = st.sampled_from(sorted(set(STOP_TEXT)))
    stops = data.draw(st.lists(st.text(stop_chars, min_size=1, max_size=6), min_size=1, max_size=4))
    ids = data.draw(st.lists(st.sampled_from(tokenizer.encode(STOP_TEXT[:120])), max_size=40))
    stream = TextStream(tokenizer, stops)
    pieces = []
    for token in ids:
        pieces.append(stream.add(token))
        if stream.stopped:
            break
    else:
        pieces.append(stream.finish())
    assert pieces == stop_reference(tokenizer, ids, stops)
