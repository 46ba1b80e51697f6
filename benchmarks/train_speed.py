"""Training speed and quality: LANTERN vs a plain-PyTorch nanoGPT-style reference.

Both train the same character-level model (4 blocks x 1 step, width 128, 4 heads, context 64,
batch 12, AdamW 1e-3 with 100 warmup steps and cosine decay to 1e-4, clip 1.0) on the same
text, in this one process, one after the other; both are scored on the same held-out windows.

    .venv/bin/python benchmarks/train_speed.py            # 2000 steps each (~6 min on 2 cores)
    .venv/bin/python benchmarks/train_speed.py --steps 300 --repeats 3

With --repeats N the two sides alternate N times and each keeps its best speed, so a burst of
other work on the machine does not decide the ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lantern.checkpoint import load_model
from lantern.data.batches import eval_windows
from lantern.data.corpus import builtin_corpus_text
from lantern.data.token_store import load_tokens
from lantern.tokenizers import CharTokenizer
from lantern.training.optim import learning_rate_at
from lantern.training.trainer import TrainConfig, train

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
WIDTH, HEADS, LAYERS, CONTEXT, BATCH = 128, 4, 4, 64, 12
LR, MIN_LR, WARMUP = 1e-3, 1e-4, 100


class RefBlock(nn.Module):
    """A GPT-2 block written out plainly, as nanoGPT does."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(WIDTH)
        self.c_attn = nn.Linear(WIDTH, 3 * WIDTH)
        self.c_proj = nn.Linear(WIDTH, WIDTH)
        self.ln_2 = nn.LayerNorm(WIDTH)
        self.c_fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.mlp_proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, WIDTH)
        self.wpe = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList(RefBlock() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def random_windows(train_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's `get_batch`: BATCH random windows of CONTEXT tokens and their next tokens."""
    ix = torch.randint(len(train_ids) - CONTEXT - 1, (BATCH,))
    x = torch.stack([train_ids[i : i + CONTEXT] for i in ix])
    y = torch.stack([train_ids[i + 1 : i + 1 + CONTEXT] for i in ix])
    return x, y


def reference_steps(train_ids: torch.Tensor, vocab: int,
                    steps: int) -> Iterator[tuple[int, RefGPT, float]]:
    """nanoGPT's loop: random windows, AdamW, warmup + cosine, clipping. Yields after each
    step: its number, the model, and the seconds the step took."""
    torch.manual_seed(1337)
    model = RefGPT(vocab)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.99))
    for step in range(steps):
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = learning_rate_at(step, LR, MIN_LR, WARMUP, steps)
        x, y = random_windows(train_ids)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        yield step + 1, model, time.perf_counter() - start


def train_reference(train_ids: torch.Tensor, vocab: int, steps: int) -> tuple[RefGPT, float]:
    """The reference trained `steps` steps; returns it and its tokens/s."""
    runs = [(model, took) for _, model, took in reference_steps(train_ids, vocab, steps)]
    return runs[-1][0], steps * BATCH * CONTEXT / sum(took for _, took in runs)


@torch.no_grad()
def held_out_loss(model: nn.Module, batches) -> float:
    model.eval()
    losses = [model(x, y)[1].item() for x, y in batches]
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dtype", default="auto", help="LANTERN's --dtype")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if SHAKESPEARE.is_file():
            data_path, source = SHAKESPEARE, "tinyshakespeare.txt"
        else:
            data_path, source = Path(tmp) / "corpus.txt", "built-in story corpus (1 MB)"
            data_path.write_text(builtin_corpus_text(1_000_000, seed=0))
        print(f"data: {source} | steps: {args.steps} | threads: {torch.get_num_threads()}")

        tokenizer = CharTokenizer.train([data_path.read_text()])
        tokens = torch.from_numpy(load_tokens(data_path, tokenizer).astype("int64"))
        split = int(len(tokens) * 0.9)
        val = eval_windows(tokens[split:].numpy(), CONTEXT, BATCH, num_batches=200)

        ref_rate = lantern_rate = wall = 0.0
        for attempt in range(args.repeats):
            ref_model, rate = train_reference(tokens[:split], tokenizer.vocab_size, args.steps)
            ref_rate = max(ref_rate, rate)
            out = Path(tmp) / f"run{attempt}"
            cfg = TrainConfig(config="nano", data_path=str(data_path), output_dir=str(out),
                              batch_size=BATCH, seq_length=CONTEXT, max_steps=args.steps,
                              learning_rate=LR, min_lr=MIN_LR, warmup_steps=WARMUP,
                              eval_interval=args.steps, save_interval=args.steps, log_interval=50,
                              eval_batches=1, num_samples=0, dtype=args.dtype)
            start = time.perf_counter()
            train(cfg, quiet=True)
            wall = time.perf_counter() - start
            lines = (out / "training_log.jsonl").read_text().splitlines()
            rates = [r["tokens_per_second"] for r in map(json.loads, lines) if "tokens_per_second" in r]
            lantern_rate = max(lantern_rate, len(rates) / sum(1.0 / r for r in rates))
        ref_loss = held_out_loss(ref_model, val)
        lantern_loss = held_out_loss(load_model(out)[0], val)

    print(f"{'':24}{'tokens/s':>10}{'val loss':>10}")
    print(f"{'nanoGPT-style reference':24}{ref_rate:>10,.0f}{ref_loss:>10.3f}")
    print(f"{'LANTERN':24}{lantern_rate:>10,.0f}{lantern_loss:>10.3f}")
    print(f"speed ratio LANTERN / reference: {lantern_rate / ref_rate:.2f}x "
          f"(LANTERN wall time incl. data, evals, checkpoints: {wall:.0f}s)")
    print(f"perplexity: reference {math.exp(ref_loss):.2f}, LANTERN {math.exp(lantern_loss):.2f}")


if __name__ == "__main__":
    main()
