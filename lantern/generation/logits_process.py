"""One class per logits rule, applied in order to the next-token logits of every row.

Each rule maps (logits (B, V), counts (B, V)) -> logits, where `counts[b, t]` is how often token
t already occurs in row b (prompt and generated text). Excluded tokens get -inf.
"""

from __future__ import annotations

import torch


class LogitsRule:
    """A pure function of the logits and the token counts so far."""

    needs_counts = False

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class RepetitionPenalty(LogitsRule):
    """CTRL's penalty: a seen token's logit is divided by `penalty` if positive, else multiplied,
    so repeated tokens always become less likely (penalty > 1)."""

    needs_counts = True

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        penalized = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
        return torch.where(counts > 0, penalized, logits)


class PresencePenalty(LogitsRule):
    """Subtract a fixed amount from every token that has appeared at least once."""

    needs_counts = True

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        return logits - self.penalty * (counts > 0).to(logits.dtype)


class FrequencyPenalty(LogitsRule):
    """Subtract `penalty` times the number of times each token has appeared."""

    needs_counts = True

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        return logits - self.penalty * counts.to(logits.dtype)


class Temperature(LogitsRule):
    """Divide by the temperature: < 1 sharpens the distribution, > 1 flattens it.

    Each row is first shifted so that its best logit is 0 (the distribution is the same): a
    tiny temperature then sends the other tokens to -inf, as its limit does, and never the best
    one to +inf."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        top = logits.amax(dim=-1, keepdim=True)
        return (logits - torch.where(top.isfinite(), top, 0.0)) / self.temperature


class TopK(LogitsRule):
    """Keep the k highest logits of each row (ties with the k-th are kept too)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        if self.k >= logits.shape[-1]:
            return logits
        kth = torch.topk(logits, self.k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))


class TopP(LogitsRule):
    """Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches p."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        if self.p >= 1.0:
            return logits
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass before it already reaches p. The best token always stays,
        # also for a p so small that it rounds to 0 in the logits' precision.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= self.p
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))


class MinP(LogitsRule):
    """Keep tokens whose probability is at least `p` times that of the most likely token."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        probs = logits.softmax(dim=-1)
        threshold = self.p * probs.max(dim=-1, keepdim=True).values
        return logits.masked_fill(probs < threshold, float("-inf"))


def apply_rules(
    rules: list[LogitsRule], logits: torch.Tensor, counts: torch.Tensor | None = None
) -> torch.Tensor:
    for rule in rules:
        logits = rule(logits, counts)
    return logits
