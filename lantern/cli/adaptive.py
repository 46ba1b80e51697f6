"""`lantern generate --adaptive`: the uncertainty-aware generator on the command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Collection, Sequence

from lantern.errors import LanternError
from lantern.generation.adaptive.controller import GenerationController, TokenTrace
from lantern.generation.adaptive.thresholds import AdaptiveDefaults
from lantern.generation.adaptive.uncertainty import UncertaintyController
from lantern.generation.settings import GenerationConfig
from lantern.generation.textgen import Completion
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import Tokenizer

ADAPTIVE_ONLY = ("tau_low", "tau_mid", "tau_high", "exit_kl", "mc_samples", "mc_dropout", "show_think",
                 "trace")
MC_SAMPLES = 4


def add_adaptive_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("adaptive generation (uncertainty-aware depth and THINK tokens)")
    group.add_argument("--adaptive", action="store_true",
                       help="choose recursion depth, Monte-Carlo-dropout passes and THINK tokens "
                       "per token from its uncertainty")
    group.add_argument("--tau_low", type=float, default=None,
                       help="above: recurse deeper than the shallowest depth [fitted at the end "
                       "of training: the 20%% most uncertain tokens go deeper]")
    group.add_argument("--tau_mid", type=float, default=None,
                       help="above: maximum depth with Monte-Carlo-dropout passes [fitted: 5%% "
                       "of tokens at the middle depth]")
    group.add_argument("--tau_high", type=float, default=None,
                       help="above: emit THINK tokens and stay at maximum depth [fitted: 2%% of "
                       "tokens, for models trained with --pause_tokens; others emit no THINK]")
    group.add_argument("--exit_kl", type=float, default=None,
                       help="let each token's depth decide itself: recurse while the next-token "
                       "distribution still moves by more than this KL (nats) per step, instead "
                       "of --tau_low/--tau_mid [off]")
    group.add_argument("--mc_samples", type=int, default=None,
                       help=f"Monte-Carlo-dropout passes [{MC_SAMPLES}; none for a model trained "
                       "without dropout unless --mc_dropout is given]")
    group.add_argument("--mc_dropout", type=float, default=None,
                       help="dropout rate of those passes [the model's trained rate]")
    group.add_argument("--show_think", action="store_true", help="print THINK tokens in the text")
    group.add_argument("--trace", action="store_true",
                       help="print each token's uncertainty, depth and THINK flag to stderr")


def uncertainty_from_args(args: argparse.Namespace, steps_per_block: int | None,
                          defaults: AdaptiveDefaults) -> UncertaintyController:
    if args.exit_kl is not None and (args.tau_low is not None or args.tau_mid is not None):
        raise LanternError("--exit_kl decides depth by convergence; --tau_low and --tau_mid "
                           "decide it by uncertainty: give one or the other")
    tau_low, tau_mid, tau_high = defaults.resolve(args.tau_low, args.tau_mid, args.tau_high)
    mc_samples = MC_SAMPLES if args.mc_samples is None else args.mc_samples
    return UncertaintyController(tau_low, tau_mid, tau_high, max_steps=steps_per_block,
                                 mc_samples=mc_samples, mc_dropout=args.mc_dropout,
                                 exit_kl=args.exit_kl)


Generate = Callable[..., list[Completion]]


def adaptive_generator(args: argparse.Namespace, model: LANTERNModel, tokenizer: Tokenizer,
                       defaults: AdaptiveDefaults) -> Generate:
    """A drop-in for `complete` that generates adaptively and reports what it did on stderr."""
    uc = uncertainty_from_args(args, args.steps_per_block, defaults)
    probe = GenerationController(model, uncertainty_controller=uc)
    if not probe.has_epistemic_signal and uc.mc_samples:
        print("lantern: note: this model was trained without dropout, so it has no "
              "Monte-Carlo-dropout (epistemic) signal; the other signals decide alone "
              "(--mc_dropout RATE forces passes)", file=sys.stderr)

    def generate(model: LANTERNModel, tokenizer: Tokenizer, prompts: Sequence[str],
                 prompt_ids: Sequence[Sequence[int]], config: GenerationConfig,
                 stop_ids: Collection[int], on_text: Callable[[int, str], None] | None = None,
                 first_row: int = 0) -> list[Completion]:
        seed = None if config.seed is None else config.seed + first_row
        cfg = dataclasses.replace(config, seed=seed)
        controller = GenerationController(model, uncertainty_controller=uc, config=cfg)
        start = time.perf_counter()
        texts = [""] * len(prompts)

        def collect(row: int, piece: str) -> None:
            texts[row] += piece
            if on_text is not None and not args.show_think:  # streamed text has no THINK
                on_text(row, piece)

        result = controller.generate(prompt_ids, tokenizer=tokenizer, stop_ids=stop_ids,
                                     on_text=collect)
        seconds = time.perf_counter() - start
        completions = []
        for row, trace in enumerate(result.trace):
            report(trace, tokenizer, args, uc, model)
            text = texts[row]
            if args.show_think:
                tokens = result.visible_tokens(row, None, show_think=True)
                text = tokenizer.decode([t for t in tokens if t not in stop_ids])
                if on_text is not None:
                    on_text(row, text)
            reason = result.stop_reasons[row]
            ended = reason == "stop_token"
            completions.append(Completion(prompts[row], text, len(trace) - ended, seconds, reason))
        return completions

    return generate


def report(trace: list[TokenTrace], tokenizer: Tokenizer, args: argparse.Namespace,
           uc: UncertaintyController, model: LANTERNModel) -> None:
    """Per-token trace (with --trace) and a one-line compute summary, on stderr."""
    if args.trace:
        for t in trace:
            print(f"{tokenizer.decode([t.token])!r:>10} uncertainty {t.uncertainty:.2f} "
                  f"depth {t.depth} applications {t.applications}{' THINK' if t.think else ''}",
                  file=sys.stderr)
    deepest = model.config.num_layers(uc.depths(model.config.steps_per_block)[2])
    runs = sum(t.applications for t in trace)
    print(f"adaptive: {len(trace)} tokens, {sum(t.think for t in trace)} THINK, mean depth "
          f"{sum(t.depth for t in trace) / max(len(trace), 1):.2f}, compute "
          f"{runs / max(len(trace) * deepest, 1):.0%} of always-maximum depth", file=sys.stderr)
