"""The Python front: load a trained model with its tokenizer, and sample from it.

The model (`lantern.models`) knows neither how it is stored nor how it is decoded: the loader
(`lantern.checkpoint`) and the decoding core (`lantern.generation.core`) import the model, and
this facade joins the three, so no layer below it imports one above.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lantern.checkpoint import load_model
from lantern.generation.core import generate_stream, padded_sequences
from lantern.generation.settings import GenerationConfig
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import Tokenizer


class LLM:
    """A model and, when it was loaded from a checkpoint, the tokenizer that travels with it."""

    def __init__(self, model: LANTERNModel, tokenizer: Tokenizer | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> LLM:
        """Load a checkpoint file or a run directory; its config and tokenizer travel with it."""
        model, tokenizer, _ = load_model(path, device=device)
        return cls(model, tokenizer)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
        compile: bool = False,
    ) -> torch.Tensor:
        """Tensor in, tensor out: `input_ids` (B, L) and its sampled continuation (B, L + new),
        on the decoding core with the KV cache; rows that stopped early are padded with EOS.
        `compile`: run each token as one compiled function (`lantern.generation.compiled`)."""
        seed = None
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_k=top_k, top_p=top_p, seed=seed, compile=compile)
        prompts = input_ids.tolist()
        new_tokens: list[list[int]] = [[] for _ in prompts]
        stop = () if eos_token_id is None else (eos_token_id,)
        for row, event in generate_stream(self.model, None, prompts, config, stop):
            new_tokens[row].append(event.token)
        pad = eos_token_id if eos_token_id is not None else 0
        return padded_sequences(prompts, new_tokens, pad).to(input_ids.device)
