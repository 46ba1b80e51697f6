"""Running a GGUF file in llama.cpp (the `xllamacpp` wheel): tokenize, score, generate.

llama.cpp runs in-process behind its own HTTP server, bound to 127.0.0.1; requests use its
native `/completion` endpoint, which reports token ids (a token whose text is an incomplete
UTF-8 sequence has no text of its own, so ids, never strings, are what is compared). Sampling
follows LANTERN's order and meaning (`sampling_payload`, from the sampling settings' fields):
penalties over the whole text, then temperature, top-k, top-p and min-p; every other llama.cpp
sampler is switched off.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lantern.errors import LanternError
from lantern.export.arches import can_shift_positions
from lantern.export.describe import gguf_summary
from lantern.generation.sampling import SamplingConfig
from lantern.generation.settings import GenerationConfig
from lantern.generation.textgen import Completion

STOP_REASONS = {"eos": "stop_token", "word": "stop_string", "limit": "length"}


def sampling_payload(config: SamplingConfig) -> dict[str, Any]:
    """llama.cpp's request fields for every sampling setting, read from the settings' own
    fields: the sampler chain in LANTERN's order, each value (its off value for None). A
    setting llama.cpp lacks is refused by name unless it is off."""
    body: dict[str, Any] = {"samplers": []}
    for f, value in config.samplers():
        off = f.metadata["off"]
        if f.metadata["llamacpp"] is None:
            if value is not None and value != off:
                raise LanternError(f"--{f.name}: not available for a .gguf model (llama.cpp "
                                   "runs it); use the run directory or .pt checkpoint")
            continue
        key, stage = f.metadata["llamacpp"]
        body[key] = off if value is None else value
        if stage not in body["samplers"]:
            body["samplers"].append(stage)
    return body


class LlamaCppModel:
    """One GGUF model loaded in llama.cpp. `exact=True` keeps the KV cache in F32 and flash
    attention off, so log-probabilities can be compared with other implementations."""

    def __init__(self, path: str | Path, context: int | None = None, threads: int = 1,
                 exact: bool = False) -> None:
        import xllamacpp as xlc

        self.path = Path(path)
        self.info = gguf_summary(self.path)  # a damaged file is refused here, not in llama.cpp
        self.vocab_size = int(self.info["vocab_size"])
        self.context_length = int(context or self.info["context_length"])
        self.eos_id = self.info.get("eos_id")
        params = xlc.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.context_length
        params.warmup = False
        params.verbosity = -1
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        params.n_parallel = 1
        # Past the context llama.cpp drops the oldest half and goes on, shifting RoPE keys;
        # learned positions cannot shift, so there generation ends at the context.
        self.can_slide = can_shift_positions(self.info["architecture"])
        params.ctx_shift = self.can_slide
        if exact:
            params.cache_type_k = params.cache_type_v = xlc.ggml_type.GGML_TYPE_F32
            params.flash_attn_type = xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        try:
            self._server = xlc.Server(params)
        except RuntimeError as exc:
            raise LanternError(f"llama.cpp cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        self.url = self._server.listening_address
        self._space: int | None = None
        self._wait_until_serving()

    def _wait_until_serving(self, timeout_s: float = 120.0) -> None:
        """Return once llama.cpp's server answers: a server released before its HTTP thread is
        up can hang in its destructor."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LanternError(f"llama.cpp did not start serving {self.path} within {timeout_s:.0f} s")
            time.sleep(0.01)

    def close(self) -> None:
        self._server = None

    def __enter__(self) -> LlamaCppModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, endpoint: str, body: dict[str, Any]):
        request = urllib.request.Request(self.url + endpoint, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(request, timeout=600)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise LanternError(f"llama.cpp refused the request: {detail}") from None

    def _json(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._post(endpoint, body) as response:
            return json.loads(response.read())

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's own tokenization of `text` (special tokens in the text are parsed)."""
        return list(self._json("/tokenize", {"content": text, "parse_special": True})["tokens"])

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self._json("/detokenize", {"tokens": [int(i) for i in ids]})["content"])

    def next_token_logprobs(self, ids: Sequence[int], reuse_cache: bool = False) -> np.ndarray:
        """Log-probabilities of every vocabulary token after `ids`, from the raw logits.

        llama.cpp reports no probabilities for a drawn token whose text is incomplete UTF-8,
        so the one token drawn is forced (by a logit bias, which the raw probabilities do not
        see) to be a plain space; `ignore_eos` likewise keeps an end-of-sequence from ending
        the reply before it is reported. `reuse_cache` keeps the keys/values of a shared
        prefix from the previous call (scoring a text token by token)."""
        if self._space is None:
            self._space = self.tokenize(" ")[-1]
        body = {"prompt": [int(i) for i in ids], "n_predict": 1, "temperature": 0.0,
                "n_probs": self.vocab_size, "cache_prompt": reuse_cache, "ignore_eos": True,
                "logit_bias": [[self._space, 1e4]]}
        entry = self._json("/completion", body)["completion_probabilities"][0]
        out = np.full(self.vocab_size, -np.inf)
        for item in entry["top_logprobs"]:
            out[item["id"]] = item["logprob"]
        return out

    def token_logprob(self, ids: Sequence[int], target: int, reuse_cache: bool = False
                      ) -> tuple[float, int]:
        """(log-probability of `target` after `ids`, the most likely token there), from the raw
        logits: `target` is forced as the token drawn, which llama.cpp then reports with its
        unbiased log-probability. Where llama.cpp reports nothing (a token of incomplete UTF-8)
        the whole distribution is read instead."""
        body = {"prompt": [int(i) for i in ids], "n_predict": 1, "temperature": 0.0, "n_probs": 1,
                "cache_prompt": reuse_cache, "ignore_eos": True, "logit_bias": [[int(target), 1e4]]}
        entries = self._json("/completion", body)["completion_probabilities"]
        if entries and entries[0]["id"] == target:
            return float(entries[0]["logprob"]), int(entries[0]["top_logprobs"][0]["id"])
        logprobs = self.next_token_logprobs(ids, reuse_cache)
        return float(logprobs[target]), int(np.argmax(logprobs))

    def greedy(self, ids: Sequence[int], max_new_tokens: int, ignore_eos: bool = False) -> list[int]:
        """Greedy continuation ids; it ends early at end-of-sequence unless `ignore_eos`."""
        body = {"prompt": [int(i) for i in ids], "n_predict": max_new_tokens, "temperature": 0.0,
                "return_tokens": True, "cache_prompt": False, "ignore_eos": ignore_eos}
        return list(self._json("/completion", body)["tokens"])

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._post("/completion", {**body, "stream": True}) as response:
            for line in response:
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])

    def generate(
        self,
        prompt_ids: Sequence[int],
        config: GenerationConfig,
        stop_ids: Collection[int] = (),
        on_text: Callable[[str], None] | None = None,
        prompt: str = "",
        row: int = 0,
    ) -> Completion:
        """One completion with LANTERN's settings; `on_text` receives text as it is made.

        Ends at end-of-sequence or any of `stop_ids`, at a stop string (cut off, not
        included), or after `config.max_new_tokens`. Sample `row` uses seed `config.seed + row`."""
        if config.num_beams != 1:
            raise LanternError("beam search runs on the PyTorch path only; drop --num_beams for a GGUF")
        if config.steps_per_block is not None:
            raise LanternError("a GGUF file has its recursion depth fixed at export; drop --steps_per_block")
        seed = config.seed + row if config.seed is not None else random.randrange(2**31)
        body = {
            "prompt": [int(i) for i in prompt_ids], "n_predict": config.max_new_tokens,
            "cache_prompt": False, **sampling_payload(config),
            "repeat_last_n": self.context_length, "seed": seed,
            "stop": list(config.stop_strings), "return_tokens": True,
        }
        stop_ids = set(stop_ids) | ({config.eos_token_id} - {None})
        start, text, count, reason = time.perf_counter(), [], 0, "length"
        for event in self._events(body):
            # Each event carries the token just drawn (special tokens have empty text); the
            # count comes from llama.cpp, which also counts tokens whose text it holds back.
            tokens = event.get("tokens") or []
            count = int(event.get("tokens_predicted", count))
            if any(t in stop_ids for t in tokens):
                count -= 1  # the stop token itself is no output; leaving ends the request
                reason = "stop_token"
                break
            piece = event.get("content", "")
            if piece:
                text.append(piece)
                if on_text is not None:
                    on_text(piece)
            if event.get("stop"):
                reason = STOP_REASONS.get(event.get("stop_type") or "limit", "length")
                break
        return Completion(prompt, "".join(text), count, time.perf_counter() - start, reason)
