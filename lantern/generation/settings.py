"""GenerationConfig: the one settings type for everything that generates.

The command line, the interactive session, chat, the server and the
`GenerationController` all read it. It is a SamplingConfig, whose fields become logits rules;
`stop_strings`, `eos_token_id` and `max_new_tokens` end a sequence; `think_token_id` is used by
the adaptive controller only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lantern.errors import LanternError
from lantern.generation.sampling import SamplingConfig
from lantern.setting import setting

# What a row's random generator takes (torch's seed range is wider; this is OpenAI's): row i
# draws with seed + i, which stays within torch's range for any number of rows.
SEED_RANGE = (-(2**63), 2**63 - 1)


# Old spellings of generation flags; each still sets its field.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"max_new_tokens": ("--max_length",)}


def check_seed(seed: int | None, name: str = "--seed") -> None:
    low, high = SEED_RANGE
    if seed is not None and not low <= seed <= high:
        raise LanternError(f"{name} must be in [-2**63, 2**63 - 1] (got {seed})")


@dataclass
class GenerationConfig(SamplingConfig):
    """The sampling settings (temperature, top-k/p, min-p, penalties: SamplingConfig's fields)
    plus what ends a sequence and how the model runs."""

    # visible tokens: THINK (at most max_think_tokens in a row) apart
    max_new_tokens: int = setting(100, "tokens to generate")
    stop_strings: tuple[str, ...] = setting(
        (), "stop when this text appears (repeatable); EOS always stops", flag="--stop")
    eos_token_id: int | None = None  # the model's own
    think_token_id: int | None = None  # None = never emit THINK
    seed: int | None = setting(None, "random seed: sample i uses seed + i, so the same seed "
                               "gives the same text", unset="random")
    num_beams: int = setting(1, "> 1 = beam search")
    length_penalty: float = setting(
        1.0, "beam score = log-prob / length^penalty (> 0 favours longer text)")
    early_stopping: bool = setting(False, "beam search ends once num_beams hypotheses are "
                                   "finished")
    steps_per_block: int | None = setting(None, "recursion depth per block",
                                          unset="the model's own")
    compile: bool = setting(False, "compile the per-token step into one native function "
                            "(torch.compile; needs a C++ compiler; the first call compiles for "
                            "about a minute)")

    def __post_init__(self) -> None:
        self.stop_strings = tuple(self.stop_strings)
        if self.max_new_tokens <= 0:
            raise LanternError(f"--max_new_tokens must be positive (got {self.max_new_tokens})")
        if self.num_beams <= 0:
            raise LanternError(f"--num_beams must be positive (got {self.num_beams})")
        if not math.isfinite(self.length_penalty):
            raise LanternError(f"--length_penalty must be a finite number (got {self.length_penalty})")
        check_seed(self.seed)
        if self.steps_per_block is not None and self.steps_per_block <= 0:
            raise LanternError(f"--steps_per_block must be positive (got {self.steps_per_block})")
        super().__post_init__()  # the sampling values
