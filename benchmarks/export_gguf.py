"""LANTERN (PyTorch) vs llama.cpp on the same trained model, exported to GGUF.

1. Held-out perplexity at F32, F16, Q8_0 and Q4_0 against LANTERN's own fp32 forward: the
   same token windows (non-overlapping, one context long, from the end of the text, which is
   the trainer's validation tail), each token scored from its window's prefix, on both sides.
   llama.cpp runs with an F32 KV cache and flash attention off.
2. Generation speed at batch 1: greedy decoding of the same prompt for the same number of new
   tokens; LANTERN's PyTorch path (`LLM.generate`, KV cache) against llama.cpp (its default
   F16 KV cache) at F32 and Q8_0; 1 thread each; medians of alternating repeats. Both times
   include the prompt's prefill.

    python benchmarks/export_gguf.py --run RUN_DIR --data TEXT_FILE
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lantern.api import LLM
from lantern.checkpoint import load_model
from lantern.export.gguf_export import export_gguf
from lantern.generation.backends.llamacpp import LlamaCppModel

OUTTYPES = ("f32", "f16", "q8_0", "q4_0")


def held_out_windows(tokenizer, text: str, tokens: int, window: int) -> list[list[int]]:
    ids = tokenizer.encode(text[-max(tokens * 8, 10000):])[-tokens:]
    return [ids[i : i + window] for i in range(0, len(ids) - window + 1, window)]


def lantern_nll(model, windows: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            logp = torch.log_softmax(model(x)[0][0, :-1].double(), -1)
            total -= logp.gather(1, x[0, 1:, None]).sum().item()
            count += len(w) - 1
    return total / count


def llamacpp_nll(gguf: LlamaCppModel, windows: list[list[int]]) -> float:
    total, count = 0.0, 0
    for w in windows:
        for t in range(1, len(w)):
            total -= gguf.next_token_logprobs(w[:t], reuse_cache=True)[w[t]]
            count += 1
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="trained run directory or .pt")
    parser.add_argument("--data", required=True, help="the text file it was trained on")
    parser.add_argument("--eval_tokens", type=int, default=2048)
    parser.add_argument("--gen_tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer, data = load_model(args.run)
    cfg = model.config
    print(f"model: {model.num_parameters():,} parameters, {cfg.num_blocks} blocks x "
          f"{cfg.steps_per_block} steps, width {cfg.hidden_size}, context {cfg.context_length}, "
          f"vocab {cfg.vocab_size} ({tokenizer.kind}), trained {data.get('step')} steps")
    windows = held_out_windows(tokenizer, Path(args.data).read_text(encoding="utf-8"),
                               args.eval_tokens, cfg.context_length)
    scored = sum(len(w) - 1 for w in windows)
    base = lantern_nll(model, windows)
    print(f"\n1. held-out perplexity over {scored} tokens ({len(windows)} windows)")
    print(f"{'model':<18}{'file size':>12}{'perplexity':>12}{'change':>10}")
    print(f"{'LANTERN fp32':<18}{'-':>12}{math.exp(base):>12.4f}{'':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for outtype in OUTTYPES:
            files[outtype] = Path(tmp) / f"model-{outtype}.gguf"
            export_gguf(model, tokenizer, files[outtype], outtype)
            with LlamaCppModel(files[outtype], exact=True) as gguf:
                nll = llamacpp_nll(gguf, windows)
            size = files[outtype].stat().st_size / 1e6
            change = (math.exp(nll) / math.exp(base) - 1) * 100
            name = f"llama.cpp {outtype.upper()}"
            print(f"{name:<18}{size:>10.2f}MB{math.exp(nll):>12.4f}{change:>+9.3f}%")

        prompt = tokenizer.encode(Path(args.data).read_text(encoding="utf-8")[:200])[:32]
        new = min(args.gen_tokens, cfg.context_length - len(prompt))
        print(f"\n2. greedy generation at batch 1: {len(prompt)} prompt + {new} new tokens, "
              f"1 thread, median of {args.repeats} alternating repeats")
        runners = {"LANTERN PyTorch fp32": None}
        for outtype in ("f32", "q8_0"):
            runners[f"llama.cpp {outtype.upper()}"] = LlamaCppModel(files[outtype])
        times: dict[str, list[float]] = {name: [] for name in runners}
        x = torch.tensor([prompt])
        for _ in range(args.repeats + 1):  # the first round warms up and is dropped
            for name, gguf in runners.items():
                start = time.perf_counter()
                if gguf is None:
                    out = LLM(model).generate(x, max_new_tokens=new, temperature=0)
                    assert out.shape[1] == len(prompt) + new
                else:
                    assert len(gguf.greedy(prompt, new, ignore_eos=True)) == new
                times[name].append(time.perf_counter() - start)
        base_rate = new / statistics.median(times["LANTERN PyTorch fp32"][1:])
        print(f"{'path':<22}{'tokens/s':>10}{'vs PyTorch':>12}")
        for name, measured in times.items():
            rate = new / statistics.median(measured[1:])
            print(f"{name:<22}{rate:>10.1f}{rate / base_rate:>11.2f}x")
        for gguf in runners.values():
            if gguf is not None:
                gguf.close()


if __name__ == "__main__":
    main()
