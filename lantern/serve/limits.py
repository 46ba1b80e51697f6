"""What one request may ask of the server; anything beyond is refused with these numbers."""

from __future__ import annotations

from dataclasses import dataclass

from lantern.errors import require_positive
from lantern.setting import setting


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits, each a `lantern serve` flag."""

    max_body_bytes: int = setting(1_000_000, "largest request body, in bytes (larger: 413)")
    max_tokens: int = setting(1024, "most tokens one sequence may ask for (also the chat "
                              "default)")
    max_n: int = setting(16, "most sequences per request (prompts x n)")
    max_batch: int = setting(16, "sequences decoded together per model")
    max_waiting: int = setting(256, "sequences queued per model before requests get 429")

    def __post_init__(self) -> None:
        require_positive(self, "max_body_bytes", "max_tokens", "max_n", "max_batch", "max_waiting")
