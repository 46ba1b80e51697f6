"""Skip-thinking evaluation: how well the host answers held-out problems in each mode.

- `full`: the host writes its thinking, then the answer (the reference);
- `no_think`: `question <think> </think>`, answer straight away;
- `oracle`: the host's own states at the K step boundaries (teacher-forced gold steps; K = 1:
  the `</think>` state) in its K latent slots: the ceiling of any predicted state;
- `oracle_compressed`: the same through the compressor (compress, decompress): the ceiling of
  a TRM that works in the compressed space;
- `trm`: the SequenceTRM's predictions (EMA weights; one slot: halting on; a trajectory: every
  supervision step) in the slots;
- `trm_digits`: no host at all: the answer read from the TRM's digit head at its last step;
- controls: `mean` (the training mean states), `zero` (zero states), `shuffled` (another
  problem's predictions) in the slots;
- `lm_head_first_token`: the predicted (last) state through the language-model head gives the
  first answer token only, then the host continues after `</think>` without the state.
Exact match and per-character accuracy with bootstrap confidence intervals, generated tokens
and wall time per answer, `report.json` and a bar chart beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text
from lantern.trm.compressor import check_compressor_fits, load_compressor
from lantern.trm.host import LanternHost, load_host
from lantern.trm.host_training import boundary_states
from lantern.trm.problems import load_problems
from lantern.trm.settings import NEEDS_COMPRESSOR, NEEDS_TRM, EvalConfig
from lantern.trm.training import batch_inputs, digits_to_answer, load_trm


def per_char_accuracy(predicted: str, gold: str) -> float:
    """Share of the gold answer's characters (digits) matched at the same position."""
    if not gold:
        return float(predicted == gold)
    return sum(p == g for p, g in zip(predicted, gold, strict=False)) / len(gold)


def bootstrap_ci(values: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling problems with replacement."""
    if len(values) == 0 or samples <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


class Evaluator:
    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        host = load_host(cfg.host, self.device)
        if not isinstance(host, LanternHost):
            raise LanternError("evaluation generates with the latent slot: --host must be a LANTERN "
                               "host trained by `lantern trm host`")
        self.host = host
        self.problems = load_problems(cfg.dataset, cfg.num_samples)
        self.segments = [host.segments(p) for p in self.problems]
        self.modes = cfg.mode_list()
        self.trm = self.comp = None
        if any(m in NEEDS_COMPRESSOR for m in self.modes):
            self.comp, info = load_compressor(cfg.compressor_checkpoint)
            check_compressor_fits(info, host.hidden_size, host.fingerprint, host.num_layers, "--host")
            self.comp.to(self.device)
        if any(m in NEEDS_TRM for m in self.modes):
            self.trm, self.trm_data = load_trm(cfg.trm_checkpoint, self.device)
            if self.trm_data.get("host_fingerprint") != host.fingerprint:
                raise LanternError("the TRM was trained on pairs of another host than --host")
            if self.trm.cfg.d_model != self.comp.d_compressed:
                raise LanternError(f"the TRM reads and predicts {self.trm.cfg.d_model} dimensions, the "
                                   f"compressor in {self.comp.d_compressed}")
            if self.trm.cfg.num_slots != host.num_slots:
                raise LanternError(f"the TRM predicts {self.trm.cfg.num_slots} slot(s), the host has "
                                   f"{host.num_slots}")
            if cfg.modes is None and self.trm.cfg.result_digits:
                self.modes.insert(self.modes.index("trm") + 1, "trm_digits")
            if "trm_digits" in self.modes and not self.trm.cfg.result_digits:
                raise LanternError("mode trm_digits needs a TRM trained with a digit head "
                                   "(--digit_loss_weight > 0)")
        self._predicted: tuple[torch.Tensor, torch.Tensor | None, float] | None = None

    def forget_predictions(self) -> None:
        """Drop the cached TRM predictions, so the next mode that needs them pays their time."""
        self._predicted = None

    def slot_prompts(self) -> tuple[list[list[int]], list[list[int]]]:
        prompts = [self.host.slot_prompt(s) for s in self.segments]
        return [p for p, _ in prompts], [i for _, i in prompts]

    def oracle_states(self) -> torch.Tensor:
        """(N, K, D): the host's own states at every step boundary."""
        return torch.stack(boundary_states(self.host, self.segments, self.cfg.batch_size))

    def predicted_states(self) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """TRM predictions (N, K, D) and, with a digit head, the last step's digits (N, R),
        computed once; their time is charged to every mode using them."""
        if self._predicted is None:
            started = time.perf_counter()
            pre = self.host.states_of([s.context for s in self.segments], -1, self.cfg.batch_size)
            halt_at = self.trm_data.get("halt_at")
            steps = self.cfg.eval_supervision_steps or self.trm.cfg.n_supervision_steps
            out, digits = [], []
            with torch.no_grad():
                for start in range(0, len(pre), self.cfg.batch_size):
                    chunk = [self.comp.compress(h.to(self.device)) for h in
                             pre[start:start + self.cfg.batch_size]]
                    x, padding = batch_inputs(chunk, list(range(len(chunk))), self.device)
                    if self.trm.cfg.num_slots > 1 or self.trm.cfg.result_digits:
                        result, logits = self.trm.trajectory(x, padding)
                        pred = result.slots
                        if logits is not None:
                            digits.append(logits[:, -1].argmax(-1).cpu())
                    else:
                        pred, _ = self.trm.predict(x, padding, steps, halt_at)
                        pred = pred[:, None]
                    out.append(self.comp.decompress(pred).cpu())
            self._predicted = (torch.cat(out), torch.cat(digits) if digits else None,
                               time.perf_counter() - started)
        return self._predicted

    def run_mode(self, mode: str) -> tuple[list[str | None], list[list[int]], float]:
        """(answers, generated tokens of each answer, seconds for the whole mode)."""
        host, cfg = self.host, self.cfg
        started = time.perf_counter()
        extra = 0.0
        if mode in ("full", "no_think"):
            prompts = [s.context if mode == "full" else s.context + s.close for s in self.segments]
            outputs = host.complete(prompts, cfg.max_new_tokens, batch_size=cfg.batch_size)
            answers = [host.answer_of(t) for t in outputs]
            if mode == "full":
                answers = [a if host.end_think_id in t else None for a, t in zip(answers, outputs,
                                                                                   strict=True)]
            return answers, outputs, time.perf_counter() - started
        if mode == "trm_digits":  # no host: the TRM's own digit head reads the answer
            _, digits, extra = self.predicted_states()
            answers = [digits_to_answer(d, len(p.answer)) for d, p in zip(digits, self.problems,
                                                                          strict=True)]
            return answers, [[] for _ in answers], extra
        if mode == "lm_head_first_token":
            states, _, extra = self.predicted_states()
            with torch.no_grad():
                first = host.model.lm_head(states[:, -1].to(self.device)).argmax(dim=-1).tolist()
            prompts = [s.context + s.close + [f] for s, f in zip(self.segments, first, strict=True)]
            outputs = host.complete(prompts, cfg.max_new_tokens, batch_size=cfg.batch_size)
            answers = [host.answer_of([f] + t) for f, t in zip(first, outputs, strict=True)]
            return answers, [[f] + t for f, t in zip(first, outputs, strict=True)], \
                time.perf_counter() - started + extra
        slots = host.num_slots
        if mode in ("oracle", "oracle_compressed"):
            states = self.oracle_states()
            if mode == "oracle_compressed":
                with torch.no_grad():
                    states = self.comp.decompress(self.comp.compress(states.to(self.device))).cpu()
        elif mode == "zero":
            states = torch.zeros(len(self.segments), slots, host.hidden_size)
        elif mode == "mean":
            mean = self.trm_data.get("mean_trajectory", self.trm_data["mean_post"][None]).float()
            states = mean[None].expand(len(self.segments), -1, -1)
        else:
            states, _, extra = self.predicted_states()
            if mode == "shuffled":
                perm = torch.randperm(len(states), generator=torch.Generator().manual_seed(cfg.seed))
                index = torch.empty_like(perm)
                index[perm] = perm.roll(-1)  # a cycle through a random order: no row keeps its own
                states = states[index]
        answers, outputs = self.answers_from_slots(states)
        return answers, outputs, time.perf_counter() - started + extra

    def answers_from_slots(self, states: torch.Tensor) -> tuple[list[str], list[list[int]]]:
        """The host's greedy answers with `states` (N, K, D) in its K slots, and each answer's
        tokens with the K slots counted in front (they are where the thinking went)."""
        prompts, index = self.slot_prompts()
        outputs = self.host.complete(prompts, self.cfg.max_new_tokens, list(states), index,
                                     batch_size=self.cfg.batch_size)
        slots = [self.host.latent_id] * self.host.num_slots
        return [self.host.answer_of(t) for t in outputs], [slots + t for t in outputs]

    def score(self, answers: list[str | None]) -> float:
        """Exact-match share of these answers."""
        return sum(a == p.answer for a, p in zip(answers, self.problems, strict=True)) / len(answers)

    def run(self) -> dict:
        gold = [p.answer for p in self.problems]
        report = {"config": asdict(self.cfg), "num_problems": len(gold), "modes": {}}
        for mode in tqdm(self.modes, unit="mode", disable=None, dynamic_ncols=True):
            answers, outputs, seconds = self.run_mode(mode)
            exact = np.array([a == g for a, g in zip(answers, gold, strict=True)], dtype=float)
            chars = np.array([per_char_accuracy(a or "", g) for a, g in zip(answers, gold,
                                                                             strict=True)])
            report["modes"][mode] = {
                "exact_match": float(exact.mean()),
                "exact_match_ci95": bootstrap_ci(exact, self.cfg.bootstrap, self.cfg.seed),
                "per_digit_accuracy": float(chars.mean()),
                "per_digit_accuracy_ci95": bootstrap_ci(chars, self.cfg.bootstrap, self.cfg.seed),
                "generated_tokens": float(np.mean([len(t) for t in outputs])),
                "seconds_per_answer": seconds / len(gold),
                "unclosed_thinking": sum(a is None for a in answers),
                "cut_by_max_new_tokens": 0 if mode == "trm_digits" else sum(
                    self.host.eos_id not in t for t in outputs),
                "examples": [{"question": p.question, "gold": g, "answer": a}
                             for p, g, a in list(zip(self.problems, gold, answers, strict=True))[:5]],
            }
        full = report["modes"].get("full")
        if full:
            for values in report["modes"].values():
                values["accuracy_vs_full"] = values["exact_match"] / full["exact_match"] \
                    if full["exact_match"] else None
                values["tokens_vs_full"] = values["generated_tokens"] / full["generated_tokens"]
        return report


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["modes"])
    acc = [report["modes"][m]["exact_match"] for m in modes]
    low = [a - report["modes"][m]["exact_match_ci95"][0] for a, m in zip(acc, modes, strict=True)]
    high = [report["modes"][m]["exact_match_ci95"][1] - a for a, m in zip(acc, modes, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.bar(modes, acc, yerr=[low, high], capsize=4, color="#4c78a8")
    for bar, m in zip(bars, modes, strict=True):
        ax.annotate(f"{report['modes'][m]['generated_tokens']:.1f} tok",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel("exact match (95% CI)")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Answer accuracy by mode ({report['num_problems']} held-out problems)")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def evaluate(cfg: EvalConfig) -> dict:
    output = Path(cfg.output)
    found = [str(p) for p in (output, output.with_suffix(".png")) if p.exists()]
    if found and not cfg.overwrite:  # before any work
        raise LanternError(f"{' and '.join(found)} already exist(s); pass --overwrite to replace, "
                           "or give another --output")
    report = Evaluator(cfg).run()
    atomic_write_text(output, json.dumps(report, indent=2) + "\n")
    plot_report(report, output.with_suffix(".png"))
    return report


def format_table(report: dict) -> str:
    lines = [f"{'mode':<20} {'exact':>7} {'95% CI':>15} {'digits':>7} {'tokens':>7} {'ms/ans':>8}"]
    for mode, v in report["modes"].items():
        lo, hi = v["exact_match_ci95"]
        lines.append(f"{mode:<20} {v['exact_match']:7.3f} {f'[{lo:.3f}, {hi:.3f}]':>15} "
                     f"{v['per_digit_accuracy']:7.3f} {v['generated_tokens']:7.1f} "
                     f"{1000 * v['seconds_per_answer']:8.2f}")
    return "\n".join(lines)
