"""Decoding speed on one small model, every engine on the same weights: LANTERN's decoding core
eager and compiled (`--compile`: each token one compiled native function), a nanoGPT-style loop
without a cache (the whole sequence re-run for every token), `transformers` `generate` on the
model exported with `lantern export --format hf`, and llama.cpp (xllamacpp) on the model
exported to GGUF F32.

    .venv/bin/python benchmarks/decode_speed.py [--new_tokens 96] [--repeats 3] [--batches 1,8,32]

Equal work everywhere: a character Llama (4 blocks x width 128, 4 heads, RoPE, RMSNorm,
SwiGLU, 813K parameters, random weights: speed does not depend on them), the same 16-token
prompt per row, greedy, exactly `--new_tokens` new tokens per row (end of sequence ignored),
KV cache on (except the no-cache loop), float32 weights and activations, 1 thread. The context
(256) holds prompt and output, so no engine slides and all attend exactly the same positions.
Batches > 1 run every row in one batch; llama.cpp serves them as parallel slots (one HTTP
request each). Each engine runs once to warm up (and, compiled, to compile for that batch), then
the engines take turns `--repeats` times and each reports its median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from decode_pretrained import LlamaCpp, lantern_decode, transformers_decode

from lantern.config import LANTERNConfig
from lantern.data.corpus import builtin_corpus_text
from lantern.export.gguf_export import export_gguf
from lantern.export.hf_export import export_hf
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

PROMPT_TOKENS, CONTEXT = 16, 256


def no_cache_decode(model: LANTERNModel, ids: list[int], batch: int, new: int) -> None:
    """nanoGPT's `generate`: the whole sequence through the model for every new token."""
    idx = torch.tensor([ids] * batch)
    for _ in range(new):
        logits, _ = model(idx[:, -CONTEXT:])
        idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    new = args.new_tokens
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    tokenizer = CharTokenizer.train([builtin_corpus_text(20_000, seed=0)])
    config = LANTERNConfig(vocab_size=tokenizer.vocab_size, context_length=CONTEXT, hidden_size=128,
                           num_heads=4, num_blocks=4, position="rope", norm="rmsnorm",
                           mlp="swiglu", mlp_hidden_size=352, bias=False)
    torch.manual_seed(0)
    model = LANTERNModel(config).eval()
    ids = tokenizer.encode(builtin_corpus_text(200, seed=1))[:PROMPT_TOKENS]
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(model, tokenizer, Path(tmp) / "hf")
        theirs = AutoModelForCausalLM.from_pretrained(str(Path(tmp) / "hf"),
                                                      dtype=torch.float32).eval()
        gguf = Path(tmp) / "model.f32.gguf"
        export_gguf(model, tokenizer, gguf, "f32")
        print(f"{model.num_parameters():,} parameters; prompt {len(ids)} tokens, "
              f"{new} new tokens per row, greedy, 1 thread, median of "
              f"{args.repeats} alternating repeats; tokens/s count every row")
        print(f"{'batch':>5} {'engine':<34} {'tokens/s':>9} {'LANTERN compiled is':>20}")
        for batch in [int(b) for b in args.batches.split(",")]:
            server = LlamaCpp(gguf, batch, len(ids) + new + 8, threads=1)
            engines: dict[str, Callable[[], None]] = {
                "LANTERN compiled (--compile)": lambda b=batch: lantern_decode(model, ids, b, new, True),
                "LANTERN eager": lambda b=batch: lantern_decode(model, ids, b, new, False),
                "no cache (nanoGPT loop)": lambda b=batch: no_cache_decode(model, ids, b, new),
                "transformers generate": lambda b=batch: transformers_decode(theirs, ids, b, new),
                "llama.cpp F32": lambda b=batch, s=server: s.decode(ids, b, new),
            }
            times: dict[str, list[float]] = {name: [] for name in engines}
            with torch.inference_mode():
                for run in engines.values():
                    run()  # warm-up (and compilation for this batch)
                for _ in range(args.repeats):
                    for name, run in engines.items():
                        start = time.perf_counter()
                        run()
                        times[name].append(time.perf_counter() - start)
            rates = {name: batch * new / statistics.median(t) for name, t in times.items()}
            ours = rates["LANTERN compiled (--compile)"]
            for name, rate in rates.items():
                print(f"{batch:>5} {name:<34} {rate:>9.1f} {ours / rate:>19.2f}x", flush=True)
            del server


if __name__ == "__main__":
    main()
