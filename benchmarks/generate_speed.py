"""Generation speed: LANTERN's KV-cache decoding vs nanoGPT-style decoding without a cache
(the whole cropped window re-run for every token) vs Hugging Face `transformers` generate on an
equivalent GPT-2, side by side in one process, at batch 1 and batch 8.

    .venv/bin/python benchmarks/generate_speed.py [--new_tokens 500] [--repeats 1]

Weights are random (speed does not depend on them). All three sample with temperature 1 and no
truncation. GPT-2's learned position table cannot go past `n_positions`, so its copy gets a
table long enough for the whole output; LANTERN and the no-cache baseline slide their window.
"""

from __future__ import annotations

import argparse
import time

import torch

from lantern.config import preset_config
from lantern.generation.core import generate_stream
from lantern.generation.settings import GenerationConfig
from lantern.models.lantern_model import LANTERNModel

VOCAB = 65  # tiny Shakespeare's characters
MODELS = {
    "small (4x128, ctx 64)": dict(hidden_size=128, num_heads=4, num_blocks=4, context_length=64),
    "large (6x384, ctx 256)": dict(hidden_size=384, num_heads=6, num_blocks=6, context_length=256),
}


@torch.inference_mode()
def lantern_cached(model: LANTERNModel, prompt: torch.Tensor, new: int) -> None:
    config = GenerationConfig(temperature=1.0, max_new_tokens=new, seed=0)
    for _ in generate_stream(model, None, prompt.tolist(), config):
        pass


@torch.inference_mode()
def nanogpt_no_cache(model: LANTERNModel, prompt: torch.Tensor, new: int) -> None:
    idx = prompt
    for _ in range(new):
        logits, _ = model(idx[:, -model.config.context_length:])
        probs = logits[:, -1].softmax(dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1)], dim=1)


def hf_model(shape: dict, positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=positions, n_embd=shape["hidden_size"],
                        n_layer=shape["num_blocks"], n_head=shape["num_heads"],
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


@torch.inference_mode()
def hf_generate(model, prompt: torch.Tensor, new: int) -> None:
    model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=True, top_k=0,
                   pad_token_id=0, attention_mask=torch.ones_like(prompt))


def tokens_per_second(fn, model, prompt: torch.Tensor, new: int, repeats: int) -> float:
    fn(model, prompt, 8)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(model, prompt, new)
        best = min(best, time.perf_counter() - start)
    return prompt.shape[0] * new / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 = steadiest on a shared, busy CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import transformers  # noqa: F401
        have_hf = True
    except ImportError:
        have_hf = False
        print("note: transformers is not installed; skipping its comparison "
              "(scripts/setup.sh installs it)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"{args.new_tokens} new tokens, tokens/s (all rows of the batch counted)")
    header = f"{'model':<24}{'batch':>6}{'LANTERN cache':>15}{'no cache':>11}{'ratio':>8}"
    header += f"{'transformers':>14}{'ratio':>8}" if have_hf else ""
    print(header)
    for name, shape in MODELS.items():
        torch.manual_seed(0)
        model = LANTERNModel(preset_config("nano", vocab_size=VOCAB, **shape)).eval()
        hf = hf_model(shape, positions=8 + args.new_tokens + 8) if have_hf else None
        for batch in (1, 8):
            prompt = torch.randint(0, VOCAB, (batch, 8))
            ours = tokens_per_second(lantern_cached, model, prompt, args.new_tokens, args.repeats)
            plain = tokens_per_second(nanogpt_no_cache, model, prompt, args.new_tokens, args.repeats)
            row = f"{name:<24}{batch:>6}{ours:>15.0f}{plain:>11.0f}{ours / plain:>7.1f}x"
            if hf is not None:
                theirs = tokens_per_second(hf_generate, hf, prompt, args.new_tokens, args.repeats)
                row += f"{theirs:>14.0f}{ours / theirs:>7.2f}x"
            print(row, flush=True)


if __name__ == "__main__":
    main()
