"""LLM-TRM end to end: can a host answer held-out problems without writing its thinking out?

One run, every stage of `lantern trm` on a synthetic task (2-digit multiplication by default, long
multiplication worked digit by digit inside `<think> ... </think>`; 3-digit addition was tried
first: the host answered it without thinking at 99%, so it cannot show what thinking buys):
1. a LANTERN host trained on full-thinking, latent-slot and (a share of) no-thinking sequences;
2. phase 1 compressors for several D' (held-out cosine vs parameters: the guide's table);
3. teacher-forced pairs (states of `question <think>` -> state at `</think>`);
4. a SequenceTRM trained on them, with the answer loss through the host's latent slot;
5. the skip-thinking evaluation on held-out operand pairs, every mode side by side. `full`
   (the host thinks in full) is the baseline: each mode's accuracy and generated tokens are also
   given as ratios to it. Seconds per answer are medians of alternating repeats of all modes.
   The same modes on training problems tell a failure to fit from a failure to generalize.

The goal: `trm` >= 90% of `full`'s accuracy at <= 20% of its generated tokens, and clearly above
the controls (`mean`, `zero`, `shuffled`, `no_think`).

    nice .venv/bin/python benchmarks/trm_skip_thinking.py              # the full run (~35 min)
    nice .venv/bin/python benchmarks/trm_skip_thinking.py --quick      # a few minutes, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lantern.trm.compressor import CompressorConfig, train_compressor
from lantern.trm.datagen import DatagenConfig, generate_pairs
from lantern.trm.evaluate import EvalConfig, Evaluator, format_table, plot_report
from lantern.trm.host import load_host
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.problems import read_problems, synthetic_problems, write_problems
from lantern.trm.training import TRMTrainConfig, train_trm

QUICK = dict(train_problems=2000, test_problems=60, host_steps=300, hidden_size=64, num_blocks=2,
             pairs=600, trm_epochs=3, d_compressed=(16, 32), trm_d=32, repeats=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--task", default="mul", choices=("add", "mul"))
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--train_problems", type=int, default=20000)
    parser.add_argument("--test_problems", type=int, default=300)
    parser.add_argument("--host_steps", type=int, default=20000)
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_blocks", type=int, default=2)
    parser.add_argument("--no_think_fraction", type=float, default=0.25,
                        help="train the no-thinking baseline too (implicit-CoT style)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="teacher-forced pairs for the TRM [every distinct training problem]")
    parser.add_argument("--d_compressed", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--trm_d", type=int, default=64, help="the D' the TRM works in")
    parser.add_argument("--trm_epochs", type=int, default=40)
    parser.add_argument("--trm_weight_decay", type=float, default=0.1)
    parser.add_argument("--answer_loss_weight", type=float, default=1.0,
                        help="answer cross-entropy through the host's slot, next to the state MSE")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per mode")
    parser.add_argument("--max_new_tokens", type=int, default=128,
                        help="answer budget (full thinking on 2-digit multiplication is ~68 tokens)")
    parser.add_argument("--eval_only", action="store_true",
                        help="re-run only the evaluation of a finished run in --work_dir")
    parser.add_argument("--host", help="reuse a host trained on this task before (skips stage 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--work_dir", default=str(Path(tempfile.gettempdir()) / "lantern_bench_trm"))
    args = parser.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, list(v) if isinstance(v, tuple) else v)
    if args.trm_d not in args.d_compressed:
        args.d_compressed.append(args.trm_d)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = time.time() - t0
        print(f"[{name}: {timings[name]:.0f}s]", flush=True)

    train, test, distinct = work / "train.jsonl", work / "test.jsonl", work / "train_distinct.jsonl"
    host = Path(args.host) if args.host else work / "host"
    comp = work / f"comp{args.trm_d}" / "stage1b_best"
    if args.eval_only:  # the figures of the stages from the run that made them
        earlier = json.loads((work / "report.json").read_text())
        compressors, trm = earlier["compressors"], earlier["trm_training"]
        pairs_count, timings = earlier["pairs"], earlier["stage_seconds"]
    else:
        t0 = time.time()
        problems = synthetic_problems(args.task, args.digits, args.train_problems)
        write_problems(train, problems)
        # the TRM learns from every distinct training problem once (a repeat teaches nothing new)
        write_problems(distinct, list({p.question: p for p in problems}.values())[:args.pairs])
        write_problems(test, synthetic_problems(args.task, args.digits, args.test_problems, split="test"))
        if not args.host:
            train_host(HostTrainConfig(problems=str(train), output_dir=str(host), config="gpt-128",
                                       hidden_size=args.hidden_size, num_blocks=args.num_blocks,
                                       num_heads=4, max_steps=args.host_steps, learning_rate=2e-3,
                                       no_think_fraction=args.no_think_fraction, eval_interval=1000,
                                       val_problems=str(test), eval_problems=100, overwrite=True,
                                       device="cpu"))
        stage("host", t0)
        hidden = load_host(host).hidden_size

        t0 = time.time()
        compressors = []
        for d in sorted(set(args.d_compressed)):
            m = train_compressor(CompressorConfig(host=str(host), output_dir=str(work / f"comp{d}"),
                                                  stage="1b", data=str(train), d_compressed=d,
                                                  num_samples=min(2000, args.train_problems),
                                                  num_epochs=10, learning_rate=3e-3,
                                                  overwrite=True), quiet=True)
            compressors.append({"d_compressed": d, "compression": hidden / d,
                                "held_out_cosine": m["best_val_cosine"],
                                "relative_error": m["val_relative_error"], "parameters": m["parameters"]})
        stage("compressors", t0)

        t0 = time.time()
        pairs, _ = generate_pairs(DatagenConfig(host=str(host), dataset=str(distinct),
                                                output_dir=str(work / "pairs"),
                                                num_samples=len(read_problems(distinct)),
                                                checkpoint_every=2000, batch_size=64, overwrite=True))
        stage("datagen", t0)

        t0 = time.time()
        trm = train_trm(TRMTrainConfig(data=str(work / "pairs"), compressor_checkpoint=str(comp),
                                       output_dir=str(work / "trm"), host=str(host),
                                       batch_size=64, num_epochs=args.trm_epochs, learning_rate=1e-3,
                                       warmup_steps=50, n_latent_steps=3, n_deep_recursions=2,
                                       n_supervision_steps=4, bce_halt_loss=True, ema_decay=0.99,
                                       weight_decay=args.trm_weight_decay,
                                       answer_loss_weight=args.answer_loss_weight,
                                       device="cpu", dtype="float32", overwrite=True))
        stage("trm", t0)

        pairs_count = len(pairs)

    t0 = time.time()
    evaluator = Evaluator(EvalConfig(host=str(host), dataset=str(test),
                                     output=str(work / "report.json"),
                                     trm_checkpoint=str(work / "trm"), compressor_checkpoint=str(comp),
                                     num_samples=args.test_problems,
                                     max_new_tokens=args.max_new_tokens))
    report = evaluator.run()
    seconds: dict[str, list[float]] = {m: [] for m in evaluator.modes}
    for _ in range(args.repeats):  # alternating repeats: every mode once per round
        for mode in evaluator.modes:
            evaluator.forget_predictions()  # the TRM's own time is part of each repeat
            seconds[mode].append(evaluator.run_mode(mode)[2] / len(evaluator.problems))
    for mode, values in seconds.items():
        report["modes"][mode]["seconds_per_answer"] = statistics.median(values)
    # The same modes on training problems: does a shortfall come from fitting or from generalizing?
    seen = Evaluator(EvalConfig(host=str(host), dataset=str(distinct), output=str(work / "report_train.json"),
                                trm_checkpoint=str(work / "trm"), compressor_checkpoint=str(comp),
                                num_samples=args.test_problems, max_new_tokens=args.max_new_tokens,
                                modes="full,no_think,oracle,trm")).run()
    stage("eval", t0)

    report.update(compressors=compressors, trm_training=trm, pairs=pairs_count,
                  training_problems={m: v["exact_match"] for m, v in seen["modes"].items()},
                  stage_seconds=timings, total_seconds=time.time() - started, args=vars(args))
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, work / "report.png")

    print("\nPhase 1: compressor D' vs held-out cosine (thinking trajectories, stage 1b)")
    print(f"{'D`':>5} {'compression':>12} {'cosine':>8} {'rel.err':>8} {'params':>8}")
    for c in compressors:
        print(f"{c['d_compressed']:>5} {c['compression']:>11.1f}x {c['held_out_cosine']:>8.4f} "
              f"{c['relative_error']:>8.4f} {c['parameters']:>8,}")
    print(f"\nPhase 2: validation cosine {trm['best_val_cosine']:.4f} (mean predictor "
          f"{trm['mean_predictor_val_cosine']:.4f}), centered {trm.get('val_centered_cosine', 0):.4f}; "
          f"answers exact through the slot {trm.get('best_val_answer_exact', float('nan')):.3f}")
    print(f"\nSkip-thinking, {len(evaluator.problems)} held-out problems (full = baseline):")
    print(format_table(report))
    full = report["modes"]["full"]
    print(f"\n{'mode':<20} {'acc / full':>10} {'tokens / full':>14}")
    for mode, v in report["modes"].items():
        ratio = v["exact_match"] / full["exact_match"] if full["exact_match"] else float("nan")
        print(f"{mode:<20} {ratio:>10.2f} {v['generated_tokens'] / full['generated_tokens']:>14.2f}")
    print(f"\nThe same modes on {args.test_problems} training problems (exact match): " + ", ".join(
        f"{m} {v:.3f}" for m, v in report["training_problems"].items()))
    t = report["modes"]["trm"]
    controls = max(report["modes"][m]["exact_match"] for m in ("mean", "zero", "shuffled", "no_think"))
    print(f"\nhost: full {full['exact_match']:.3f} (goal >= 0.95), no_think "
          f"{report['modes']['no_think']['exact_match']:.3f} (goal <= 0.50)")
    print(f"goal: trm >= 0.90 x full at <= 0.20 x tokens, above controls (best control "
          f"{controls:.3f}): accuracy ratio {t['exact_match'] / max(full['exact_match'], 1e-9):.2f}, "
          f"token ratio {t['generated_tokens'] / full['generated_tokens']:.2f}")
    print(f"total {time.time() - started:.0f}s; report: {work / 'report.json'}")


if __name__ == "__main__":
    main()
