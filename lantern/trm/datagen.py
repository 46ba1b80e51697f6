"""Datagen: pairs of a host's states before and after thinking.

For each problem: `hidden_pre` [L_i, D], the states of `question <think>`, and `hidden_post` [D],
the state at the last `</think>` token, the one whose next-token prediction is the first answer
token. For a host of K > 1 latent slots, also the trajectory: `hidden_steps` [K - 1, D], the
states at the boundaries of the earlier reasoning steps (each step's `;`), and every step's
intermediate result (`step_results`, the text after the step's last `=`). Two modes:
- `teacher`: one forward pass over the gold worked steps (exact, no generation);
- `generate`: the host writes its own thinking (greedy, KV cache); answers that are wrong or
  whose thinking never closes within `max_new_tokens` are counted and dropped; the kept
  sequences then get one forward pass over every token, so each state read has been computed
  (unlike reading states out of `generate()`, whose last token never had a forward pass).

Work is written in chunks of `checkpoint_every` problems (safetensors + JSON, atomically); a rerun
with the same settings resumes after the last chunk, a run with other settings is refused.
Under torchrun, rank r makes chunks r, r + world, ... and rank 0 merges them: the same files as
one process makes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text, make_output_directory
from lantern.training.distributed import Distributed
from lantern.trm.host import Host, LanternHost, load_host
from lantern.trm.outputs import damage_reason, paired_files
from lantern.trm.problems import STEP_SEPARATOR, Problem, load_problems, step_result
from lantern.trm.settings import DatagenConfig

CONFIG_FILE = "datagen_config.json"
PAIRS_STEM = "hidden_pairs"
# Settings that do not change the pairs, so they may differ between a run and its resumption
# (the host and the dataset are compared by the fingerprint of their contents instead of a path).
RESUMABLE = ("auto_resume", "overwrite", "device", "host", "dataset", "output_dir")


@dataclass
class Pairs:
    """A set of pairs; `hidden_pre` is stored as one (sum L_i, D) tensor split by `seq_lengths`."""

    hidden_pre: list[torch.Tensor]
    hidden_post: torch.Tensor
    num_thinking_tokens: list[int]
    problems: list[str]
    answers: list[str]
    meta: dict
    hidden_steps: torch.Tensor | None = None  # (N, K - 1, D) states at the earlier boundaries
    step_results: list[list[str]] | None = None  # per problem, K intermediate results

    @property
    def num_slots(self) -> int:
        return 1 if self.hidden_steps is None else int(self.hidden_steps.shape[1]) + 1

    @property
    def trajectory(self) -> torch.Tensor:
        """(N, K, D): the states at every step boundary, `hidden_post` last."""
        if self.hidden_steps is None:
            return self.hidden_post[:, None]
        return torch.cat([self.hidden_steps, self.hidden_post[:, None]], dim=1)

    @property
    def seq_lengths(self) -> list[int]:
        return [len(h) for h in self.hidden_pre]

    @property
    def hidden_size(self) -> int:
        return int(self.hidden_post.shape[1])

    def __len__(self) -> int:
        return len(self.hidden_pre)


def save_pairs(stem: Path, pairs: Pairs) -> None:
    size = pairs.hidden_size if len(pairs) else int(pairs.meta.get("hidden_size", 0))
    pre = torch.cat(pairs.hidden_pre) if len(pairs) else torch.zeros(0, size)
    tensors = {"hidden_pre": pre.contiguous(), "hidden_post": pairs.hidden_post.contiguous()}
    if pairs.hidden_steps is not None:
        tensors["hidden_steps"] = pairs.hidden_steps.contiguous()
    atomic_write(stem.with_suffix(".safetensors"), lambda f: f.write(save_safetensors(tensors)))
    meta = {**pairs.meta, "hidden_size": size, "seq_lengths": pairs.seq_lengths,
            "num_thinking_tokens": pairs.num_thinking_tokens, "problems": pairs.problems,
            "answers": pairs.answers, "step_results": pairs.step_results}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta) + "\n")


def load_pairs(path: str | Path) -> Pairs:
    """`hidden_pairs.safetensors` (+ `.json`), its stem, or the datagen output directory."""
    path = Path(path)
    if path.is_dir():
        path = path / PAIRS_STEM
    weights, meta_file = paired_files(path, "hidden-state pairs file")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        tensors = load_safetensors(weights.read_bytes())
        lengths = meta.pop("seq_lengths")
        return Pairs(list(torch.split(tensors["hidden_pre"], lengths)) if lengths else [],
                     tensors["hidden_post"], meta.pop("num_thinking_tokens"), meta.pop("problems"),
                     meta.pop("answers"), meta, tensors.get("hidden_steps"),
                     meta.pop("step_results", None))
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise LanternError(f"cannot read hidden-state pairs {weights}: they are damaged "
                           f"({damage_reason(exc)})") from None


def _problem_key(p: Problem) -> str:
    return json.dumps(p.to_dict(), sort_keys=True)


def dataset_digest(problems: list[Problem]) -> str:
    digest = hashlib.sha256()
    for p in problems:
        digest.update(_problem_key(p).encode())
    return digest.hexdigest()[:16]


def teacher_forced(host: Host, problems: list[Problem], layer: int, batch_size: int
                   ) -> tuple[Pairs, dict]:
    """One forward over `question <think> steps </think> answer` per problem."""
    segments = [host.segments(p) for p in problems]
    if host.num_slots > 1:
        wrong = sorted({s.num_steps for s in segments} - {host.num_slots})
        if wrong:
            raise LanternError(f"the host has {host.num_slots} latent slots, one per reasoning "
                               f"step, but problems have {wrong} step(s) (separated by ';')")
    states = host.states_of([s.full for s in segments], layer, batch_size)
    pre = [st[:len(s.context)] for st, s in zip(states, segments, strict=True)]
    boundaries = [st[s.boundaries] for st, s in zip(states, segments, strict=True)]
    results = [[step_result(step) for step in p.steps] if host.num_slots > 1
               else [step_result(p.thinking)] for p in problems]
    pairs = _pairs(host, pre, boundaries, [len(s.thinking) for s in segments], problems, results)
    return pairs, {"attempted": len(problems), "kept": len(problems), "wrong": 0, "unclosed": 0}


def _pairs(host: Host, pre: list[torch.Tensor], boundaries: list[torch.Tensor], thinking: list[int],
           problems: list[Problem], results: list[list[str]]) -> Pairs:
    """Pairs from per-problem (K, D) boundary states (`hidden_post` is the last)."""
    if not boundaries:
        return Pairs([], torch.zeros(0, host.hidden_size), [], [], [], {},
                     torch.zeros(0, host.num_slots - 1, host.hidden_size) if host.num_slots > 1
                     else None, [])
    trajectory = torch.stack(boundaries)
    return Pairs(pre, trajectory[:, -1], thinking, [p.question for p in problems],
                 [p.answer for p in problems], {},
                 trajectory[:, :-1] if host.num_slots > 1 else None, results)


def self_generated(host: Host, problems: list[Problem], layer: int, batch_size: int,
                   max_new_tokens: int) -> tuple[Pairs, dict]:
    """The host's own greedy thinking; only correct answers are kept."""
    if not isinstance(host, LanternHost):
        raise LanternError("--mode generate needs a LANTERN host; use --mode teacher with a "
                           "Hugging Face host")
    contexts = [host.segments(p).context for p in problems]
    outputs = host.complete(contexts, max_new_tokens, batch_size=batch_size)
    return pairs_from_outputs(host, problems, outputs, layer, batch_size)


def pairs_from_outputs(host: LanternHost, problems: list[Problem], outputs: list[list[int]],
                       layer: int, batch_size: int) -> tuple[Pairs, dict]:
    """Pairs from generated continuations of `question <think>`: thinking that never closed and
    wrong answers are counted and dropped (with K slots, thinking of another number of steps
    counts as wrong); kept sequences get one full forward pass."""
    kept: list[tuple[int, list[int], list[int]]] = []  # (problem, sequence, boundary positions)
    counts = {"attempted": len(problems), "kept": 0, "wrong": 0, "unclosed": 0}
    contexts = [host.segments(p).context for p in problems]
    separator = host.encode(STEP_SEPARATOR)
    for i, tokens in enumerate(outputs):
        if host.end_think_id not in tokens:
            counts["unclosed"] += 1
            continue
        close = tokens.index(host.end_think_id)
        steps = [j for j in range(close) if tokens[j:j + len(separator)] == separator] \
            if host.num_slots > 1 else []
        if host.answer_of(tokens) != problems[i].answer or len(steps) + 1 != host.num_slots:
            counts["wrong"] += 1
        else:
            start = len(contexts[i])
            kept.append((i, contexts[i] + tokens,
                         [start + j + len(separator) - 1 for j in steps] + [start + close]))
    counts["kept"] = len(kept)
    states = host.states_of([seq for _, seq, _ in kept], layer, batch_size) if kept else []
    pre = [st[:len(contexts[i])] for st, (i, _, _) in zip(states, kept, strict=True)]
    boundaries = [st[b] for st, (_, _, b) in zip(states, kept, strict=True)]
    thinking = [b[-1] - len(contexts[i]) for i, _, b in kept]
    texts = [host.tokenizer.decode(seq[len(contexts[i]):b[-1]], skip_special_tokens=True)
             for i, seq, b in kept]
    results = [[step_result(step) for step in (text.split(STEP_SEPARATOR) if host.num_slots > 1
                                               else [text])] for text in texts]
    return _pairs(host, pre, boundaries, thinking, [problems[i] for i, _, _ in kept], results), counts


def _settings(cfg: DatagenConfig, host: Host, problems: list[Problem]) -> dict:
    values = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE}
    values.update(host_fingerprint=host.fingerprint, dataset_digest=dataset_digest(problems),
                  layer=host.resolve_layer(cfg.layer), hidden_size=host.hidden_size)
    if host.num_slots > 1:
        values["num_slots"] = host.num_slots
    return values


def _prepare_output(out: Path, cfg: DatagenConfig, settings: dict) -> None:
    config_path = out / CONFIG_FILE
    if config_path.is_file():
        if not cfg.auto_resume and not cfg.overwrite:
            raise LanternError(f"{out} holds a datagen run; --no_auto_resume would discard it: add "
                               "--overwrite or pick another --output_dir")
        if cfg.overwrite:
            for f in out.glob("chunk_*"):
                f.unlink()
            for f in out.glob(f"{PAIRS_STEM}.*"):
                f.unlink()
        else:
            saved = json.loads(config_path.read_text())
            changed = [k for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
            if changed:
                k = changed[0]
                raise LanternError(f"{config_path}: {k} was {saved.get(k)!r}, now {settings.get(k)!r}; "
                                   "resume with the same settings, or use another --output_dir "
                                   "(or --overwrite)")
    make_output_directory(out, "trm-datagen")
    atomic_write_text(config_path, json.dumps(settings, indent=2) + "\n")


def generate_pairs(cfg: DatagenConfig, quiet: bool = False) -> tuple[Pairs, dict]:
    """Run (or resume) datagen; returns the merged pairs and the counts (on every rank)."""
    dist, device = Distributed.start(False, cfg.device)
    quiet = quiet or not dist.is_main
    host = load_host(cfg.host, device)
    layer = host.resolve_layer(cfg.layer)
    problems = load_problems(cfg.dataset, cfg.num_samples)
    if cfg.mode == "teacher" and not all(p.thinking for p in problems):
        raise LanternError("--mode teacher needs worked steps ('thinking') in every problem")
    out = Path(cfg.output_dir)
    settings = _settings(cfg, host, problems)
    refusal = None
    if dist.is_main:
        try:
            _prepare_output(out, cfg, settings)
        except LanternError as exc:
            refusal = str(exc)
    refusal = dist.gather(refusal)[0]  # every rank stops on rank 0's refusal
    if refusal:
        raise LanternError(refusal)
    say = (lambda *a: None) if quiet else tqdm.write
    chunks = math.ceil(len(problems) / cfg.checkpoint_every)
    done = sum((out / f"chunk_{c:05d}.json").is_file() for c in range(chunks))
    if done:
        say(f"resuming: {done} of {chunks} chunks already in {out}")
    mine = range(dist.rank, chunks, dist.world_size)
    for c in tqdm(mine, unit="chunk", disable=quiet or None):
        stem = out / f"chunk_{c:05d}"
        if stem.with_suffix(".json").is_file():
            continue
        part = problems[c * cfg.checkpoint_every:(c + 1) * cfg.checkpoint_every]
        if cfg.mode == "teacher":
            pairs, counts = teacher_forced(host, part, layer, cfg.batch_size)
        else:
            pairs, counts = self_generated(host, part, layer, cfg.batch_size, cfg.max_new_tokens)
        pairs.meta = {"counts": counts, "hidden_size": host.hidden_size}
        save_pairs(stem, pairs)  # the .json goes last: a chunk counts as done only when both exist
    dist.barrier()
    merged, counts = _merge(out, chunks, host)
    merged.meta = {**settings, "counts": counts}
    if dist.is_main:
        save_pairs(out / PAIRS_STEM, merged)
    dist.barrier()
    say(f"{counts['kept']} pairs of {counts['attempted']} problems ({counts['wrong']} wrong, "
        f"{counts['unclosed']} never closed </think> within --max_new_tokens) -> "
        f"{out / PAIRS_STEM}.safetensors")
    return merged, counts


def _merge(out: Path, chunks: int, host: Host) -> tuple[Pairs, dict]:
    parts = [load_pairs(out / f"chunk_{c:05d}") for c in range(chunks)]
    counts = {k: sum(p.meta["counts"][k] for p in parts) for k in ("attempted", "kept", "wrong",
                                                                   "unclosed")}
    posts = [p.hidden_post for p in parts if len(p)]
    steps = [p.hidden_steps for p in parts if len(p) and p.hidden_steps is not None]
    merged = Pairs([h for p in parts for h in p.hidden_pre],
                   torch.cat(posts) if posts else torch.zeros(0, host.hidden_size),
                   [n for p in parts for n in p.num_thinking_tokens],
                   [q for p in parts for q in p.problems], [a for p in parts for a in p.answers], {},
                   torch.cat(steps) if steps else None,
                   [r for p in parts for r in (p.step_results or [])])
    return merged, counts
