"""What one request may ask of the server; anything beyond is refused with these numbers."""

from __future__ import annotations

from dataclasses import dataclass

from lantern.errors import require_positive


@dataclass(frozen=True)
class ServeLimits:
    max_body_bytes: int = 1_000_000  # a request body larger than this: 413
    max_tokens: int = 1024  # per sequence; also the default of chat completions
    max_n: int = 16  # sequences per request (prompts x n)
    max_batch: int = 16  # rows decoded together per model
    max_waiting: int = 256  # sequences queued per model before 429

    def __post_init__(self) -> None:
        require_positive(self, "max_body_bytes", "max_tokens", "max_n", "max_batch", "max_waiting")
