"""A pretrained GGUF imported by LANTERN, against two independent readers of the same file.

1. transformers' own GGUF loading (dequantized to float32; needs `accelerate`): the largest
   absolute difference of the logits over every position of a few prompts, and whether both
   tokenizers give the same ids.
2. llama.cpp on the same file: token ids of a set of texts, and greedy continuations of chat
   prompts, token for token. llama.cpp
   multiplies with quantized activations, so this measures agreement, not equality: the report
   gives the tokens both produce before they first differ.

    python benchmarks/pretrained_parity.py [--model smollm2-135m-instruct] [--new_tokens 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from lantern.api import LLM
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.pretrained import load_pretrained, resolve

TEXTS = ["What is 12 times 3? In 2024, 1,234,567 people.", "  leading spaces\n\n\ttabs  and   runs   ",
         "Árvíztűrő tükörfúrógép: ő és ű 🙂 hello world!",
         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
         "don't I'LL you've x99y 3.14159 $100 -- a...b ```python\ndef f(x):\n    return x**2\n```",
         "日本語のテキスト 中文 한국어 العربية", "e-mail: a.b@c.com, URL https://x.y/z?q=1&r=2"]
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ",
           "Árvíztűrő tükörfúrógép, 1,234,567 and 2024: ő és ű 🙂"]
QUESTIONS = ["What is 12 times 3?", "Name three primary colours.", "Write a haiku about the sea.",
             "What is the boiling point of water in Fahrenheit?"]


def chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def logits_gap(model, tokenizer, path) -> tuple[float, bool]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    their_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    print(f"transformers loaded the file in {time.perf_counter() - start:.1f} s")
    gap, same_ids = 0.0, True
    for prompt in PROMPTS + [chatml(q) for q in QUESTIONS]:
        ids = tokenizer.encode(prompt)
        same_ids &= ids == their_tokenizer(prompt, add_special_tokens=False).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            gap = max(gap, (model(x)[0] - theirs(x).logits).abs().max().item())
    return gap, same_ids


def greedy_agreement(model, tokenizer, path, new_tokens: int) -> None:
    total_same = total = 0
    with LlamaCppModel(path, context=512) as llama:
        same = sum(tokenizer.encode(text) == llama.tokenize(text) for text in TEXTS)
        print(f"token ids identical to llama.cpp's on {same} of {len(TEXTS)} texts")
        for question in QUESTIONS:
            ids = tokenizer.encode(chatml(question))
            with torch.no_grad():
                ours = LLM(model).generate(torch.tensor([ids]), max_new_tokens=new_tokens,
                                      temperature=0)[0, len(ids):].tolist()
            if tokenizer.eos_id in ours:
                ours = ours[: ours.index(tokenizer.eos_id) + 1]
            theirs = llama.greedy(ids, len(ours))
            pairs = zip(ours, theirs, strict=False)
            same = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(ours), len(theirs)))
            total_same, total = total_same + same, total + len(ours)
            print(f"\n{question}\n  LANTERN:   {tokenizer.decode(ours, skip_special_tokens=True)!r}"
                  f"\n  llama.cpp: {tokenizer.decode(theirs, skip_special_tokens=True)!r}"
                  f"\n  identical for the first {same} of {len(ours)} tokens")
    print(f"\ngreedy agreement: {total_same} of {total} tokens before the first difference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a known name or a .gguf file")
    parser.add_argument("--new_tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = resolve(args.model).resolve()
    start = time.perf_counter()
    model, tokenizer = load_pretrained(path)
    print(f"LANTERN imported {path.name} in {time.perf_counter() - start:.1f} s: "
          f"{model.num_parameters():,} parameters")
    gap, same_ids = logits_gap(model, tokenizer, path)
    print(f"max |logits LANTERN - logits transformers| = {gap:.2e}; token ids identical: {same_ids}")
    greedy_agreement(model, tokenizer, path, args.new_tokens)


if __name__ == "__main__":
    main()
