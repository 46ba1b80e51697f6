"""Every logits rule and sampler: what it keeps, what it excludes, reproducibility, and that no
setting or logits can make the draw fail; stop strings cost time in new text only."""

from __future__ import annotations

import random
import time

import pytest
import torch

from lantern.errors import LanternError
from lantern.generation.logits_process import (
    FrequencyPenalty,
    MinP,
    PresencePenalty,
    RepetitionPenalty,
    TopK,
    TopP,
    apply_rules,
)
from lantern.generation.sampling import SamplingConfig, choose
from lantern.generation.streaming import TextStream
from lantern.tokenizers import CharTokenizer


def random_logits(rows: int = 4, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def draws(config: SamplingConfig, logits: torch.Tensor, n: int = 300) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    rows = logits.repeat(n, 1)
    return choose(rows, config.rules(), config.greedy, generator=gen).view(n, -1)


def test_greedy_is_argmax():
    logits = random_logits()
    config = SamplingConfig(temperature=0)
    assert torch.equal(choose(logits, config.rules(), config.greedy)[:, 0], logits.argmax(-1))


def test_top_k_never_emits_excluded_token():
    logits = random_logits()
    tokens = draws(SamplingConfig(temperature=1.5, top_k=3), logits)
    allowed = logits.topk(3, dim=-1).indices
    for row in range(logits.shape[0]):
        assert set(tokens[:, row].tolist()) <= set(allowed[row].tolist())


def test_top_p_keeps_smallest_set_reaching_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = TopP(0.8)(logits, None).isfinite()[0].tolist()
    assert kept == [True, True, False, False]
    tokens = draws(SamplingConfig(top_p=0.8), logits)
    assert set(tokens.flatten().tolist()) == {0, 1}


def test_top_p_always_keeps_best_token():
    logits = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    assert TopP(0.01)(logits, None).isfinite()[0].tolist() == [True, False, False]


def test_min_p_drops_tokens_below_fraction_of_best():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.07, 0.03]]))
    assert MinP(0.1)(logits, None).isfinite()[0].tolist() == [True, True, True, False]
    tokens = draws(SamplingConfig(min_p=0.4), logits)
    assert set(tokens.flatten().tolist()) <= {0, 1}


def test_top_k_ties_keep_all_tied():
    logits = torch.tensor([[1.0, 1.0, 0.0]])
    assert TopK(1)(logits, None).isfinite()[0].tolist() == [True, True, False]


def test_repetition_penalty_lowers_repeated_tokens_probability():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.25]])
    counts = torch.tensor([[1, 1, 0, 0]])
    # CTRL's rule: positive logits of seen tokens halve, negative ones double; unseen stay.
    assert RepetitionPenalty(2.0)(logits, counts).tolist() == [[1.0, -2.0, 0.5, 0.25]]


def test_presence_and_frequency_penalties():
    logits = torch.zeros(1, 3)
    counts = torch.tensor([[0, 1, 3]])
    assert PresencePenalty(0.5)(logits, counts).tolist() == [[0.0, -0.5, -0.5]]
    assert FrequencyPenalty(0.5)(logits, counts).tolist() == [[0.0, -0.5, -1.5]]


def test_temperature_sharpens():
    logits = random_logits(1)
    cold = draws(SamplingConfig(temperature=0.05), logits)
    assert (cold == logits.argmax()).float().mean() > 0.95


def test_draws_follow_the_truncated_renormalized_distribution():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.06, 0.04]])
    tokens = draws(SamplingConfig(temperature=1.0, top_p=0.85), probs.log(), n=4000)
    expected = torch.tensor([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9  # the nucleus, renormalized
    observed = torch.bincount(tokens.flatten(), minlength=5).float() / tokens.numel()
    assert torch.allclose(observed, expected, atol=0.03)


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                 dict(top_k=-2), dict(min_p=2), dict(repetition_penalty=0),
                                 dict(temperature=float("nan"))])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(LanternError):
        SamplingConfig(**bad)


@pytest.mark.parametrize("bad", [dict(repetition_penalty=1e-300), dict(repetition_penalty=1e300),
                                 dict(presence_penalty=3.0), dict(frequency_penalty=-1e300),
                                 dict(temperature=1e300)])
def test_settings_that_make_logits_non_finite_are_rejected(bad):
    with pytest.raises(LanternError, match=next(iter(bad))):
        SamplingConfig(**bad)


def test_a_vanishing_temperature_draws_the_argmax_and_never_overflows():
    logits = random_logits(rows=8)
    filtered = apply_rules(SamplingConfig(temperature=1e-40).rules(), logits)
    best = logits.argmax(-1)
    assert not filtered.isnan().any() and not (filtered == float("inf")).any()
    assert torch.equal(filtered.argmax(-1), best)
    assert torch.equal(draws(SamplingConfig(temperature=1e-40), logits)[0], best)


def test_the_draw_accepts_nan_and_infinite_logits():
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor([[nan, 1.0, inf, 0.0, inf], [nan, -inf, 2.0, nan, -inf]])
    gen = torch.Generator().manual_seed(0)
    tokens = torch.cat([choose(logits, [], greedy=False, generator=gen) for _ in range(200)], dim=1)
    assert set(tokens[0].tolist()) == {2, 4}  # the +inf entries share the whole mass
    assert set(tokens[1].tolist()) == {2}  # NaN is excluded, the one finite token is certain
    assert choose(logits, [], greedy=True)[:, 0].tolist() == [2, 2]
    with pytest.raises(LanternError, match="no finite value"):
        choose(torch.tensor([[nan, -inf]]), [], greedy=False)


def test_stop_string_cost_per_token_does_not_grow_with_their_length():
    alphabet = "abcdefghij"
    tokenizer = CharTokenizer.train([alphabet])
    rng = random.Random(0)
    ids = [tokenizer.encode(rng.choice(alphabet))[0] for _ in range(600)]

    def seconds(length: int) -> float:
        stops = ["".join(rng.choice(alphabet) for _ in range(length)) for _ in range(16)]
        stream = TextStream(tokenizer, stops)
        start = time.perf_counter()
        text = "".join(stream.add(i) for i in ids) + stream.finish()
        assert text == tokenizer.decode(ids)  # random stops this long never occur
        return time.perf_counter() - start

    short = min(seconds(8) for _ in range(3))
    # A tail search bounded by the stop strings' length cost about 3 s here (0.08 s now).
    assert seconds(50_000) < 5 * short + 0.3


def test_top_p_smaller_than_float32_keeps_the_best_token():
    """A top_p that rounds to 0 in float32 (the server accepts 5e-324) still keeps one token."""
    logits = torch.randn(3, 11)
    kept = TopP(5e-324)(logits, None)
    assert kept.isfinite().sum(dim=-1).tolist() == [1, 1, 1]
    assert torch.equal(kept.argmax(dim=-1), logits.argmax(dim=-1))
