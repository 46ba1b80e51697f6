"""Skip-thinking evaluation: how well the host answers held-out problems in each mode.

- `full`: the host writes its thinking, then the answer (the reference);
- `no_think`: `question <think> </think>`, answer straight away;
- `oracle`: the host's own state at `</think>` (teacher-forced gold steps) in the latent slot:
  the ceiling of any predicted state;
- `trm`: the SequenceTRM's prediction (EMA weights, halting on) in the slot;
- controls: `mean` (the training mean state), `zero` (a zero state), `shuffled` (another
  problem's prediction) in the slot;
- `lm_head_first_token`: the guide's method: the predicted state through the language-model
  head gives the first answer token only, then the host continues after `</think>`.
Exact match and per-character accuracy with bootstrap confidence intervals, generated tokens
and wall time per answer, `report.json` and a bar chart beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lantern.errors import LanternError, require_positive
from lantern.fileio import atomic_write, atomic_write_text
from lantern.trm.compressor import check_compressor_fits, load_compressor
from lantern.trm.host import LanternHost, load_host
from lantern.trm.problems import load_problems
from lantern.trm.training import load_trm

MODES = ("full", "no_think", "oracle", "trm", "mean", "zero", "shuffled", "lm_head_first_token")
NEEDS_TRM = ("trm", "mean", "shuffled", "lm_head_first_token")


@dataclass
class EvalConfig:
    host: str = ""
    dataset: str = ""
    output: str = "report.json"
    trm_checkpoint: str | None = None
    compressor_checkpoint: str | None = None
    modes: str = ",".join(MODES)
    num_samples: int = 200
    max_new_tokens: int = 256
    batch_size: int = 64
    eval_supervision_steps: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        require_positive(self, "num_samples", "max_new_tokens", "batch_size", "bootstrap")
        if self.eval_supervision_steps is not None:
            require_positive(self, "eval_supervision_steps")

    def mode_list(self) -> list[str]:
        modes = [m.strip() for m in self.modes.split(",") if m.strip()]
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise LanternError(f"unknown --modes {unknown or self.modes!r}; choose from {', '.join(MODES)}")
        if any(m in NEEDS_TRM for m in modes) and not (self.trm_checkpoint and self.compressor_checkpoint):
            raise LanternError(f"modes {', '.join(m for m in modes if m in NEEDS_TRM)} need "
                               "--trm_checkpoint and --compressor_checkpoint")
        return modes


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
        host = load_host(cfg.host, cfg.device)
        if not isinstance(host, LanternHost):
            raise LanternError("evaluation generates with the latent slot: --host must be a LANTERN "
                               "host trained by `lantern trm host`")
        self.host = host
        self.problems = load_problems(cfg.dataset, cfg.num_samples)
        self.segments = [host.segments(p) for p in self.problems]
        self.modes = cfg.mode_list()
        self.trm = self.comp = None
        if any(m in NEEDS_TRM for m in self.modes):
            self.trm, self.trm_data = load_trm(cfg.trm_checkpoint, cfg.device)
            self.comp, info = load_compressor(cfg.compressor_checkpoint)
            check_compressor_fits(info, host.hidden_size, host.fingerprint, host.num_layers, "--host")
            if self.trm_data.get("host_fingerprint") != host.fingerprint:
                raise LanternError("the TRM was trained on pairs of another host than --host")
            if self.trm.cfg.d_model != self.comp.d_compressed:
                raise LanternError(f"the TRM reads and predicts {self.trm.cfg.d_model} dimensions, the "
                                   f"compressor in {self.comp.d_compressed}")
            self.comp.to(cfg.device)
        self._predicted: tuple[torch.Tensor, float] | None = None

    def forget_predictions(self) -> None:
        """Drop the cached TRM predictions, so the next mode that needs them pays their time."""
        self._predicted = None

    def slot_prompts(self) -> tuple[list[list[int]], list[int]]:
        return ([s.context + [self.host.latent_id] + s.close for s in self.segments],
                [len(s.context) for s in self.segments])

    def oracle_states(self) -> torch.Tensor:
        states = self.host.states_of([s.full for s in self.segments], -1, self.cfg.batch_size)
        return torch.stack([st[s.post_index] for st, s in zip(states, self.segments, strict=True)])

    def predicted_states(self) -> tuple[torch.Tensor, float]:
        """TRM predictions (computed once; their time is charged to every mode using them)."""
        if self._predicted is None:
            started = time.perf_counter()
            pre = self.host.states_of([s.context for s in self.segments], -1, self.cfg.batch_size)
            halt_at = self.trm_data.get("halt_at")
            steps = self.cfg.eval_supervision_steps or self.trm.cfg.n_supervision_steps
            out = []
            with torch.no_grad():
                for start in range(0, len(pre), self.cfg.batch_size):
                    chunk = [self.comp.compress(h.to(self.cfg.device)) for h in
                             pre[start:start + self.cfg.batch_size]]
                    width = max(len(c) for c in chunk)
                    x = torch.zeros(len(chunk), width, chunk[0].shape[1], device=self.cfg.device)
                    padding = torch.ones(len(chunk), width, dtype=torch.bool, device=self.cfg.device)
                    for j, c in enumerate(chunk):
                        x[j, :len(c)] = c
                        padding[j, :len(c)] = False
                    pred, _ = self.trm.predict(x, padding, steps, halt_at)
                    out.append(self.comp.decompress(pred).cpu())
            self._predicted = (torch.cat(out), time.perf_counter() - started)
        return self._predicted

    def run_mode(self, mode: str) -> tuple[list[str], list[list[int]], float]:
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
        if mode == "lm_head_first_token":
            states, extra = self.predicted_states()
            with torch.no_grad():
                first = host.model.lm_head(states.to(cfg.device)).argmax(dim=-1).tolist()
            prompts = [s.context + s.close + [f] for s, f in zip(self.segments, first, strict=True)]
            outputs = host.complete(prompts, cfg.max_new_tokens, batch_size=cfg.batch_size)
            answers = [host.answer_of([f] + t) for f, t in zip(first, outputs, strict=True)]
            return answers, [[f] + t for f, t in zip(first, outputs, strict=True)], \
                time.perf_counter() - started + extra
        if mode == "oracle":
            states = self.oracle_states()
        elif mode == "zero":
            states = torch.zeros(len(self.segments), host.hidden_size)
        elif mode == "mean":
            states = self.trm_data["mean_post"].float()[None].expand(len(self.segments), -1)
        else:
            states, extra = self.predicted_states()
            if mode == "shuffled":
                perm = torch.randperm(len(states), generator=torch.Generator().manual_seed(cfg.seed))
                index = torch.empty_like(perm)
                index[perm] = perm.roll(-1)  # a cycle through a random order: no row keeps its own
                states = states[index]
        prompts, index = self.slot_prompts()
        outputs = host.complete(prompts, cfg.max_new_tokens, states.contiguous(), index,
                                batch_size=cfg.batch_size)
        answers = [host.answer_of(t) for t in outputs]
        return answers, outputs, time.perf_counter() - started + extra

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
                "cut_by_max_new_tokens": sum(self.host.eos_id not in t for t in outputs),
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
