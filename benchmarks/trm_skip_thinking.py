"""LLM-TRM end to end: can a host answer held-out problems without writing its thinking out?

One run, every stage of `lantern trm` on long multiplication (operands split on *unordered* pairs,
so no held-out pair has its mirror in training), worked digit by digit inside `<think> ...
</think>` in K reasoning steps (one per partial product, one per running sum: K = 2N - 1):
1. the thinking host, with K step-aligned latent slots (`--slots K`); beside it, a host trained
   for the same steps on no-thinking rows only (the no-think baseline at equal training);
2. a phase 1 compressor (and optionally a sweep of D');
3. teacher-forced trajectories: the states of `question <think>`, the host's states at the K
   step boundaries, and each step's intermediate result;
4. a SequenceTRM trained along the trajectory (supervision step group k -> slot k, a digit head
   on step k's result, the answer loss through the frozen host late in training), plus the
   ablations asked for (each a TRM trained without one ingredient);
5. stepwise internalization of the thinking host (the strongest baseline without a TRM);
6. the skip-thinking evaluation on held-out pairs, every mode side by side, with bootstrap
   intervals, tokens (slots counted), estimated FLOPs and wall time per answer (medians of
   alternating repeats); the same modes on training problems tell fitting from generalizing.

The goal: `trm` >= 90% of `full`'s accuracy at <= 20% of its tokens and <= 50% of its wall time,
and above stepwise internalization (or cheaper than it).

    nice .venv/bin/python benchmarks/trm_skip_thinking.py --digits 2    # the 2x2 run
    nice .venv/bin/python benchmarks/trm_skip_thinking.py --digits 3    # the headline 3x3 run
    nice .venv/bin/python benchmarks/trm_skip_thinking.py --quick       # a smoke run, minutes
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
from lantern.trm.internalize import InternalizeConfig, internalize
from lantern.trm.problems import read_problems, synthetic_problems, write_problems
from lantern.trm.training import TRMTrainConfig, load_trm, train_trm

QUICK = dict(train_problems=2000, test_problems=60, host_steps=300, hidden_size=64, trm_epochs=3,
             trm_d=32, repeats=1, internalize_steps=60, ablations="")
ABLATIONS = {"no_digit_head": dict(digit_loss_weight=0.0),
             "no_answer_loss": dict(answer_loss_weight=0.0),
             "no_ema": dict(use_ema=False),
             "mlp_core": dict(core="mlp")}  # not an ablation: the TRM-MLP core instead of attention
# Per digit count: training problems, host steps, TRM epochs (what fits the stated wall time).
SIZES = {2: dict(train_problems=20000, host_steps=12000, trm_epochs=60, ablations=",".join(ABLATIONS)),
         3: dict(train_problems=40000, host_steps=12000, trm_epochs=12, ablations="")}


def host_config(args: argparse.Namespace, train: Path, test: Path, out: Path, **overrides
                ) -> HostTrainConfig:
    settings = dict(problems=str(train), output_dir=str(out), config="gpt-128",
                    hidden_size=args.hidden_size, num_blocks=args.num_blocks, num_heads=4,
                    max_steps=args.host_steps, learning_rate=2e-3, slots=args.slots,
                    no_think_fraction=args.no_think_fraction,
                    all_slots_fraction=args.all_slots_fraction, eval_interval=2000,
                    val_problems=str(test), eval_problems=100, overwrite=True, device="cpu")
    return HostTrainConfig(**{**settings, **overrides})


def trm_config(args: argparse.Namespace, work: Path, out: Path, **overrides) -> TRMTrainConfig:
    settings = dict(data=str(work / "pairs"), compressor_checkpoint=str(work / "comp" / "stage1b_best"),
                    output_dir=str(out), host=str(work / "host"), batch_size=64,
                    num_epochs=args.trm_epochs, learning_rate=args.trm_lr, warmup_steps=100,
                    n_latent_steps=args.n_latent_steps, n_deep_recursions=args.n_deep_recursions,
                    n_supervision_steps=args.slots * args.steps_per_slot,
                    weight_decay=args.trm_weight_decay, beta2=0.95, ema_decay=0.999,
                    answer_loss_from=args.answer_loss_from, d_hidden=args.trm_width,
                    device="cpu", dtype="float32", overwrite=True)
    return TRMTrainConfig(**{**settings, **overrides})


def flops_per_answer(report: dict, host_params: int, trm_flops: float, prompt_tokens: float) -> None:
    """Estimated forward FLOPs per answer (2 x parameters per token position the host reads or
    writes, attention left out: contexts are under 200 tokens; plus the TRM's recursions)."""
    for mode, values in report["modes"].items():
        positions = prompt_tokens + values["generated_tokens"]
        host = 0.0 if mode == "trm_digits" else 2 * host_params * positions
        values["flops_per_answer"] = host + (trm_flops if mode.startswith(("trm", "shuffled",
                                                                          "lm_head")) else 0.0)


def trm_forward_flops(trm_dir: Path, context: int) -> float:
    """2 x the network's parameters x positions x network passes of every supervision step."""
    model, _ = load_trm(trm_dir)
    cfg = model.cfg
    net = sum(p.numel() for p in model.net.parameters())
    passes = cfg.n_supervision_steps * cfg.n_deep_recursions * (cfg.n_latent_steps + 1)
    return 2.0 * net * (context + 1) * passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--slots", type=int, help="K latent slots [2 x digits - 1: every step]")
    parser.add_argument("--train_problems", type=int, help="[per digits: 20000 / 40000]")
    parser.add_argument("--test_problems", type=int, default=300)
    parser.add_argument("--host_steps", type=int, help="[12000]")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_blocks", type=int, default=2)
    parser.add_argument("--no_think_fraction", type=float, default=0.25,
                        help="share of the thinking host's rows also shown without thinking")
    parser.add_argument("--all_slots_fraction", type=float, default=0.0,
                        help="share of the host's mixed rows with every step in slots [0: uniform j]")
    parser.add_argument("--pairs", type=int, help="teacher-forced trajectories [every distinct "
                        "training problem, at most 20000]")
    parser.add_argument("--d_compressed", type=int, nargs="*", default=[],
                        help="extra D' for the compressor sweep table [none]")
    parser.add_argument("--trm_d", type=int, default=64, help="the D' the TRM works in")
    parser.add_argument("--trm_width", type=int, help="the TRM network's width [D']")
    parser.add_argument("--trm_epochs", type=int, help="[per digits: 60 / 12]")
    parser.add_argument("--trm_lr", type=float, default=1e-3)
    parser.add_argument("--trm_weight_decay", type=float, default=0.1)
    parser.add_argument("--steps_per_slot", type=int, default=1, help="supervision steps per slot")
    parser.add_argument("--n_latent_steps", type=int, default=3)
    parser.add_argument("--n_deep_recursions", type=int, default=1)
    parser.add_argument("--answer_loss_from", type=float, default=0.5,
                        help="share of TRM training before the answer loss starts")
    parser.add_argument("--ablations", help="TRMs trained without one ingredient (or with the "
                        "MLP-mixer core), comma-separated "
                        f"[{','.join(ABLATIONS)} for 2 digits, none for 3]")
    parser.add_argument("--internalize_steps", type=int,
                        help="stepwise internalization steps per stage [host_steps / (2 K)]")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads [1]")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the problems and every stage already finished in --work_dir")
    parser.add_argument("--eval_only", action="store_true",
                        help="re-run only the evaluation of a finished run in --work_dir")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--work_dir", help="[a temporary directory named after --digits]")
    args = parser.parse_args()
    for key, value in SIZES.get(args.digits, SIZES[3]).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.slots = args.slots or 2 * args.digits - 1
    args.internalize_steps = args.internalize_steps or max(1, args.host_steps // (2 * args.slots))
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / f"lantern_bench_trm{args.digits}")
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = time.time() - t0
        print(f"[{name}: {timings[name]:.0f}s]", flush=True)

    train, test, distinct = work / "train.jsonl", work / "test.jsonl", work / "train_distinct.jsonl"
    ablations = [a for a in args.ablations.split(",") if a]
    if args.eval_only:  # the figures of the stages from the run that made them
        earlier = json.loads((work / "report.json").read_text())
        compressors, trm, timings = earlier["compressors"], earlier["trm_training"], earlier["stage_seconds"]
        pairs_count, trainings = earlier["pairs"], earlier["trainings"]
    else:
        def done(path: Path) -> bool:
            return args.reuse and path.exists()

        t0 = time.time()
        if not done(test):
            problems = synthetic_problems("mul", args.digits, args.train_problems, distinct=True)
            write_problems(train, problems)
            write_problems(distinct, list({p.question: p for p in problems}.values())[:args.pairs or 20000])
            write_problems(test, synthetic_problems("mul", args.digits, args.test_problems, split="test"))
        if not done(work / "host" / "final_model.pt"):
            train_host(host_config(args, train, test, work / "host"))
        stage("host", t0)
        t0 = time.time()
        if not done(work / "host_no_think" / "final_model.pt"):
            train_host(host_config(args, train, test, work / "host_no_think", no_think_fraction=1.0,
                                   latent_weight=0.0))
        stage("no-think host", t0)
        t0 = time.time()
        if not done(work / "internalized" / "final_model.pt"):
            internalize(InternalizeConfig(host=str(work / "host"), problems=str(train),
                                          val_problems=str(test), output_dir=str(work / "internalized"),
                                          steps_per_stage=args.internalize_steps, eval_problems=100,
                                          device="cpu", overwrite=True))
        stage("stepwise internalization", t0)
        hidden = load_host(work / "host").hidden_size

        t0 = time.time()
        compressors = []
        for d in sorted({args.trm_d, *args.d_compressed}):
            out = work / ("comp" if d == args.trm_d else f"comp{d}")
            if done(out / "stage1b_final.json"):
                best = json.loads((out / "stage1b_best.json").read_text())
                m = {**json.loads((out / "stage1b_final.json").read_text()),
                     "best_val_cosine": best["val_cosine"]}
            else:
                m = train_compressor(CompressorConfig(host=str(work / "host"), output_dir=str(out),
                                                      stage="1b", data=str(train), d_compressed=d,
                                                      num_samples=min(2000, args.train_problems),
                                                      num_epochs=10, learning_rate=3e-3, overwrite=True),
                                     quiet=True)
            compressors.append({"d_compressed": d, "compression": hidden / d,
                                "held_out_cosine": m["best_val_cosine"],
                                "relative_error": m["val_relative_error"], "parameters": m["parameters"]})
        stage("compressor", t0)

        t0 = time.time()
        pairs, _ = generate_pairs(DatagenConfig(host=str(work / "host"), dataset=str(distinct),
                                                output_dir=str(work / "pairs"),
                                                num_samples=len(read_problems(distinct)),
                                                checkpoint_every=2000, batch_size=64,
                                                overwrite=not args.reuse))
        pairs_count = len(pairs)
        stage("datagen", t0)

        t0 = time.time()
        if done(work / "trm" / "final.pt"):
            trm = load_trm(work / "trm" / "final.pt")[1]["metrics"]
        else:
            trm = train_trm(trm_config(args, work, work / "trm"))
        stage("trm", t0)
        for name in ablations:
            t0 = time.time()
            if not done(work / f"trm_{name}" / "final.pt"):
                train_trm(trm_config(args, work, work / f"trm_{name}", **ABLATIONS[name]), quiet=True)
            stage(f"trm {name}", t0)
        trainings = {"host_steps": args.host_steps, "no_think_host_steps": args.host_steps,
                     "internalization_steps": args.internalize_steps * args.slots,
                     "trm_optimizer_steps": trm["optimizer_steps"]}

    t0 = time.time()

    def evaluator(host: Path, dataset: Path, trm_dir: Path, modes: str | None, output: str) -> Evaluator:
        return Evaluator(EvalConfig(host=str(host), dataset=str(dataset), output=str(work / output),
                                    trm_checkpoint=str(trm_dir),
                                    compressor_checkpoint=str(work / "comp" / "stage1b_best"),
                                    num_samples=args.test_problems, modes=modes,
                                    max_new_tokens=4 * args.digits * 40))

    main_eval = evaluator(work / "host", test, work / "trm", None, "report.json")
    report = main_eval.run()
    for name, host_dir, label in (("no_think", work / "host_no_think", "no_think_equal_training"),
                                  ("no_think", work / "internalized", "stepwise_internalization")):
        extra = evaluator(host_dir, test, work / "trm", name, f"{label}.json")
        report["modes"][label] = extra.run()["modes"][name]
    for name in ablations:
        extra = evaluator(work / "host", test, work / f"trm_{name}", "trm", f"trm_{name}.json")
        report["modes"][f"trm_{name}"] = extra.run()["modes"]["trm"]
    # Which slots does the host read? Each slot k in turn at the training mean, the rest kept.
    mean = main_eval.trm_data["mean_trajectory"].float()
    reliance = {}
    for source, states in (("oracle", main_eval.oracle_states()), ("trm", main_eval.predicted_states()[0])):
        scores = []
        for k in range(args.slots):
            changed = states.clone()
            changed[:, k] = mean[k]
            scores.append(main_eval.score(main_eval.answers_from_slots(changed)[0]))
        reliance[source] = scores
    report["slot_at_mean"] = reliance
    seconds: dict[str, list[float]] = {m: [] for m in main_eval.modes}
    for _ in range(args.repeats):  # alternating repeats: every mode once per round
        for mode in main_eval.modes:
            main_eval.forget_predictions()  # the TRM's own time is part of each repeat
            seconds[mode].append(main_eval.run_mode(mode)[2] / len(main_eval.problems))
    for mode, values in seconds.items():
        report["modes"][mode]["seconds_per_answer"] = statistics.median(values)
    host = load_host(work / "host")
    prompt = statistics.mean(len(s.context) for s in main_eval.segments)
    flops_per_answer(report, host.model.num_parameters(), trm_forward_flops(work / "trm", int(prompt)),
                     prompt)
    seen = evaluator(work / "host", distinct, work / "trm", "full,no_think,oracle,trm,trm_digits",
                     "report_train.json").run()
    stage("eval", t0)

    report.update(compressors=compressors, trm_training=trm, pairs=pairs_count, trainings=trainings,
                  training_problems={m: v["exact_match"] for m, v in seen["modes"].items()},
                  stage_seconds=timings, total_seconds=time.time() - started, args=vars(args))
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, work / "report.png")
    print_report(report, args, main_eval)


def print_report(report: dict, args: argparse.Namespace, main_eval: Evaluator) -> None:
    print("\nPhase 1: compressor D' vs held-out cosine (thinking trajectories, stage 1b)")
    for c in report["compressors"]:
        print(f"  D' {c['d_compressed']}: {c['compression']:.1f}x, cosine {c['held_out_cosine']:.4f}, "
              f"relative error {c['relative_error']:.4f}, {c['parameters']:,} parameters")
    trm = report["trm_training"]
    print(f"\nPhase 2 (best epoch): validation cosine of the last slot {trm['val_cosine']:.4f} (mean "
          f"predictor {trm['mean_predictor_val_cosine']:.4f}); per slot "
          f"{[round(c, 3) for c in trm.get('val_slot_cosine', [])]}; step results read right "
          f"{[round(c, 3) for c in trm.get('val_step_digits_exact', [])]}; answers exact through "
          f"the slots {trm.get('best_val_answer_exact', float('nan')):.3f}")
    print(f"trainings: {report['trainings']}")
    print(f"\nSkip-thinking, {len(main_eval.problems)} held-out problems ({args.digits}x{args.digits}, "
          f"K = {args.slots}):")
    print(format_table(report))
    full = report["modes"]["full"]
    print(f"\n{'mode':<26} {'acc/full':>8} {'tokens/full':>11} {'time/full':>9} {'GFLOP/ans':>9}")
    for mode, v in report["modes"].items():
        ratio = v["exact_match"] / full["exact_match"] if full["exact_match"] else float("nan")
        print(f"{mode:<26} {ratio:>8.2f} {v['generated_tokens'] / full['generated_tokens']:>11.2f} "
              f"{v['seconds_per_answer'] / full['seconds_per_answer']:>9.2f} "
              f"{v.get('flops_per_answer', float('nan')) / 1e9:>9.4f}")
    print("\nexact match with slot k at the training mean (the others kept), k = 1..K: " + "; ".join(
        f"{source} {[round(v, 3) for v in values]}" for source, values in report["slot_at_mean"].items()))
    print(f"\nThe same modes on {args.test_problems} training problems (exact match): " + ", ".join(
        f"{m} {v:.3f}" for m, v in report["training_problems"].items()))
    t = report["modes"]["trm"]
    print(f"\ngates: full {full['exact_match']:.3f} (>= 0.95), no_think at equal training "
          f"{report['modes']['no_think_equal_training']['exact_match']:.3f} (<= 0.50), oracle-K "
          f"{report['modes']['oracle']['exact_match']:.3f} (>= 0.97)")
    print(f"goal: trm/full {t['exact_match'] / max(full['exact_match'], 1e-9):.2f} (>= 0.90), tokens "
          f"{t['generated_tokens'] / full['generated_tokens']:.2f} (<= 0.20), time "
          f"{t['seconds_per_answer'] / full['seconds_per_answer']:.2f} (<= 0.50); stepwise "
          f"internalization {report['modes']['stepwise_internalization']['exact_match']:.3f}")
    print(f"total {report['total_seconds']:.0f}s; stages {report['stage_seconds']}")


if __name__ == "__main__":
    main()
