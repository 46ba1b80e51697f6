"""`lantern generate --adaptive`: the uncertainty-aware generator on the command line."""

from __future__ import annotations

import argparse
import sys

import torch

from lantern.controller.generation import GenerationConfig, GenerationController
from lantern.controller.uncertainty import UncertaintyController
from lantern.errors import LanternError


def add_adaptive_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("adaptive generation (uncertainty-aware depth and THINK tokens)")
    group.add_argument("--adaptive", action="store_true",
                       help="choose recursion depth, MC-dropout averaging and THINK tokens per "
                       "token from its uncertainty")
    group.add_argument("--tau_low", type=float, default=1.0,
                       help="above: recurse deeper than the shallowest depth")
    group.add_argument("--tau_mid", type=float, default=2.0,
                       help="above: maximum depth with Monte-Carlo-dropout averaging")
    group.add_argument("--tau_high", type=float, default=3.0,
                       help="above: emit THINK tokens and stay at maximum depth")
    group.add_argument("--mc_samples", type=int, default=4, help="Monte-Carlo-dropout passes")
    group.add_argument("--show_think", action="store_true", help="print THINK tokens in the text")
    group.add_argument("--trace", action="store_true",
                       help="print each token's uncertainty, depth and THINK flag to stderr")


def run_adaptive(args: argparse.Namespace, model, tokenizer, prompt_ids: list[int], device) -> int:
    """Generate one sample adaptively, print its text and a compute summary."""
    if not prompt_ids:
        raise LanternError("--adaptive needs a prompt or a tokenizer with an <eos> token")
    uc = UncertaintyController(args.tau_low, args.tau_mid, args.tau_high,
                               max_steps=args.steps_per_block, mc_samples=args.mc_samples)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, think_token_id=tokenizer.think_id,
                              eos_token_id=tokenizer.eos_id, seed=args.seed)
    controller = GenerationController(model, model.lm_head, model.get_embedding_matrix(), uc,
                                      config)
    model.eval()
    result = controller.generate(torch.tensor([prompt_ids], device=device))
    tokens = result.visible_tokens(0, tokenizer.think_id, show_think=args.show_think)
    if tokens and tokens[-1] == tokenizer.eos_id:
        tokens = tokens[:-1]
    print((args.prompt or "") + tokenizer.decode(tokens, skip_special_tokens=not args.show_think))
    trace = result.trace[0]
    if args.trace:
        for t in trace:
            print(f"{tokenizer.decode([t.token])!r:>10} uncertainty {t.uncertainty:.2f} "
                  f"depth {t.depth} applications {t.applications}{' THINK' if t.think else ''}",
                  file=sys.stderr)
    deepest = uc.depths(model.config.steps_per_block)[2] * model.config.num_blocks
    runs = sum(t.applications for t in trace)
    print(f"adaptive: {len(trace)} tokens, {sum(t.think for t in trace)} THINK, mean depth "
          f"{sum(t.depth for t in trace) / max(len(trace), 1):.2f}, compute "
          f"{runs / max(len(trace) * deepest, 1):.0%} of always-maximum depth", file=sys.stderr)
    return 0
