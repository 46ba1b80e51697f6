"""GenerationConfig: the one settings type for everything that generates.

The command line, the interactive session, chat, the server and seed 000's
`GenerationController` all read it. Sampling fields become logits rules (`sampling()`);
`stop_strings`, `eos_token_id` and `max_new_tokens` end a sequence; `think_token_id` is used by
the adaptive controller only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lantern.errors import LanternError
from lantern.generation.sampling import SamplingConfig


@dataclass
class GenerationConfig:
    max_new_tokens: int = 100  # THINK tokens count too, so the loop always ends
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop_strings: tuple[str, ...] = ()
    eos_token_id: int | None = None
    think_token_id: int | None = None  # None = never emit THINK
    seed: int | None = None  # row i of a call draws from its own generator seeded seed + i
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    steps_per_block: int | None = None  # recursion depth [the model's own]

    def __post_init__(self) -> None:
        self.stop_strings = tuple(self.stop_strings)
        if self.max_new_tokens <= 0:
            raise LanternError(f"--max_new_tokens must be positive (got {self.max_new_tokens})")
        if self.num_beams <= 0:
            raise LanternError(f"--num_beams must be positive (got {self.num_beams})")
        if not math.isfinite(self.length_penalty):
            raise LanternError(f"--length_penalty must be a finite number (got {self.length_penalty})")
        if self.steps_per_block is not None and self.steps_per_block <= 0:
            raise LanternError(f"--steps_per_block must be positive (got {self.steps_per_block})")
        self.sampling()  # every sampling value is checked once, here

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
            repetition_penalty=self.repetition_penalty, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )

    def sampling_flags(self) -> list[str]:
        """The sampling settings that differ from greedy, plain decoding, as flags."""
        flags = []
        if self.top_k:
            flags.append("--top_k")
        if self.top_p is not None and self.top_p < 1.0:
            flags.append("--top_p")
        if self.min_p:
            flags.append("--min_p")
        if self.repetition_penalty != 1.0:
            flags.append("--repetition_penalty")
        if self.presence_penalty:
            flags.append("--presence_penalty")
        if self.frequency_penalty:
            flags.append("--frequency_penalty")
        return flags
