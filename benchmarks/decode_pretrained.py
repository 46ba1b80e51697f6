"""Decoding speed on a real pretrained model: LANTERN's PyTorch decoding core (the imported
model), eager and with `--compile` (the warm-up compiles it for each batch), vs transformers
`generate` (its own loading of the same GGUF, dequantized to float32) vs llama.cpp (xllamacpp)
on the Q4_1 file and on an F16 GGUF that LANTERN exports from the import.

    .venv/bin/python benchmarks/decode_pretrained.py [--model smollm2-135m-instruct] \
        [--new_tokens 32] [--repeats 3] [--threads 2]

Equal work everywhere: the same prompt tokens (a ChatML question), greedy, KV cache on, exactly
`--new_tokens` new tokens per row (end of sequence ignored), at batch 1 and batch 8 (eight copies
of the prompt; llama.cpp serves them as eight parallel slots). Timing covers the prompt and the
new tokens; each engine runs once to warm up, then the engines take turns `--repeats` times and
the median is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch

PROMPT = "<|im_start|>user\nWrite a short story about a fox and an owl.<|im_end|>\n<|im_start|>assistant\n"


def lantern_decode(model, ids: list[int], batch: int, new: int, compile: bool = False) -> None:
    from lantern.generation.core import generate_stream
    from lantern.generation.settings import GenerationConfig

    config = GenerationConfig(temperature=0.0, max_new_tokens=new, compile=compile)
    count = sum(1 for _ in generate_stream(model, None, [ids] * batch, config))
    assert count == batch * new, count


def transformers_decode(model, ids: list[int], batch: int, new: int) -> None:
    x = torch.tensor([ids] * batch)
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, use_cache=True, pad_token_id=0)
    assert out.shape == (batch, len(ids) + new), out.shape


class LlamaCpp:
    """A llama.cpp server in this process with `slots` parallel sequences."""

    def __init__(self, path: Path, slots: int, context: int, threads: int) -> None:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_parallel = slots
        params.n_ctx = context * slots
        params.warmup = False
        params.verbosity = -1
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
        self.server = xlc.Server(params)
        self.url = self.server.listening_address
        for _ in range(600):  # the HTTP side takes a moment after the model loads
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

    def complete(self, ids: list[int], new: int) -> None:
        body = {"prompt": ids, "n_predict": new, "temperature": 0.0, "ignore_eos": True,
                "cache_prompt": False, "return_tokens": True}
        request = urllib.request.Request(self.url + "/completion", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            tokens = json.loads(response.read())["tokens"]
        assert len(tokens) == new, len(tokens)

    def decode(self, ids: list[int], batch: int, new: int) -> None:
        threads = [threading.Thread(target=self.complete, args=(ids, new)) for _ in range(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    from lantern.pretrained import KNOWN_MODELS
    from lantern.pretrained.pull import cached_path

    known = KNOWN_MODELS.get(args.model)
    path = cached_path(known) if known else Path(args.model)
    if not path.is_file():
        print(f"skipped: {path} is not on this machine; `lantern pull {args.model}` first")
        return
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from lantern.export.gguf_export import export_gguf
    from lantern.pretrained import load_pretrained

    model, tokenizer = load_pretrained(path)
    ids = tokenizer.encode(PROMPT)
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    batches = [int(b) for b in args.batches.split(",")]
    context = len(ids) + args.new_tokens + 8
    with tempfile.TemporaryDirectory() as tmp:
        f16 = Path(tmp) / "model.f16.gguf"
        export_gguf(model, tokenizer, f16, "f16")
        print(f"{path.name}: prompt {len(ids)} tokens, {args.new_tokens} new tokens per row, greedy, "
              f"{args.threads} threads, median of {args.repeats} alternating repeats")
        print(f"{'batch':>5} {'engine':<28} {'tokens/s':>9} {'vs LANTERN':>11}")
        for batch in batches:
            q4 = LlamaCpp(path, batch, context, args.threads)
            half = LlamaCpp(f16, batch, context, args.threads)
            engines = {
                "LANTERN (PyTorch, fp32)": lambda b=batch: lantern_decode(model, ids, b, args.new_tokens),
                "LANTERN --compile (fp32)":
                    lambda b=batch: lantern_decode(model, ids, b, args.new_tokens, True),
                "transformers generate (fp32)":
                    lambda b=batch: transformers_decode(theirs, ids, b, args.new_tokens),
                "llama.cpp Q4_1": lambda b=batch, s=q4: s.decode(ids, b, args.new_tokens),
                "llama.cpp F16 (LANTERN export)": lambda b=batch, s=half: s.decode(ids, b, args.new_tokens),
            }
            times: dict[str, list[float]] = {name: [] for name in engines}
            with torch.inference_mode():
                for run in engines.values():
                    run()  # warm-up
                for _ in range(args.repeats):
                    for name, run in engines.items():
                        start = time.perf_counter()
                        run()
                        times[name].append(time.perf_counter() - start)
            rates = {name: batch * args.new_tokens / statistics.median(t) for name, t in times.items()}
            base = rates["LANTERN (PyTorch, fp32)"]
            for name, rate in rates.items():
                print(f"{batch:>5} {name:<28} {rate:>9.1f} {rate / base:>10.2f}x", flush=True)
            del q4, half


if __name__ == "__main__":
    main()
