"""Reasoning problems written as `question <think> worked steps </think> answer`.

A built-in synthetic family (addition and multiplication of N-digit numbers, digits optionally
reversed) whose operand pairs are split once, by a hash of the *unordered* pair, into a training
and a held-out part: a held-out file never shares a pair with a training file, nor its mirror
(b, a), however many samples either asks for. The worked steps are written in reasoning steps
separated by `;` (one intermediate result each: a column sum, a partial product, a running sum),
the boundaries a host's latent slots and a trajectory-supervised TRM align to. Local JSONL files
hold the same three fields; Hugging Face datasets are read when `datasets` is installed and the
Hub is reachable.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from lantern.errors import LanternError
from lantern.fileio import atomic_write_text

TASKS = ("add", "mul")
SPLITS = ("train", "test")
HELD_OUT_SHARE = 10  # one operand pair in HELD_OUT_SHARE is held out
STEP_SEPARATOR = ";"  # between reasoning steps of the worked thinking


@dataclass(frozen=True)
class Problem:
    """One problem: the thinking is the worked steps (may be empty), the answer a short string."""

    question: str
    thinking: str
    answer: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def steps(self) -> list[str]:
        """The reasoning steps of the thinking (one when it has no `;`; none when empty)."""
        return self.thinking.split(STEP_SEPARATOR) if self.thinking else []


def step_result(step: str) -> str:
    """A step's intermediate result: the text after its last `=` (a step with no `=`: empty)."""
    return step.rpartition("=")[2] if "=" in step else ""


def is_held_out(a: int, b: int) -> bool:
    """The split of an operand pair, fixed by a hash of the unordered pair {a, b} (so a pair and
    its mirror always fall on the same side), independent of sampling and seeds."""
    low, high = sorted((a, b))
    digest = hashlib.blake2b(f"{low},{high}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % HELD_OUT_SHARE == 0


def _digits(value: int, width: int, reverse: bool) -> str:
    text = f"{value:0{width}d}"
    return text[::-1] if reverse else text


def addition(a: int, b: int, digits: int, reverse: bool = False) -> Problem:
    """Column addition from the last digit: each step `x+y+carry=sum`."""
    steps, carry = [], 0
    for i in range(digits):
        x, y = a // 10**i % 10, b // 10**i % 10
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total:02d}")
        carry = total // 10
    question = f"{_digits(a, digits, reverse)}+{_digits(b, digits, reverse)}="
    return Problem(question, STEP_SEPARATOR.join(steps), _digits(a + b, digits + 1, reverse))


def multiplication(a: int, b: int, digits: int, reverse: bool = False) -> Problem:
    """Long multiplication: per digit d of b (last first), one step: a column by column
    (`x*d+carry=vv`, comma-separated) and the shifted partial product (`=p`); then one step per
    running sum of the partials (`s+p=t`)."""
    steps, partials = [], []
    for i in range(digits):
        d = b // 10**i % 10
        carry, columns = 0, []
        for j in range(digits):
            value = a // 10**j % 10 * d + carry
            columns.append(f"{a // 10**j % 10}*{d}+{carry}={value:02d}")
            carry = value // 10
        partials.append(a * d * 10**i)
        steps.append(",".join([*columns, f"={partials[-1]}"]))
    running = partials[0]
    for p in partials[1:]:
        steps.append(f"{running}+{p}={running + p}")
        running += p
    question = f"{_digits(a, digits, reverse)}*{_digits(b, digits, reverse)}="
    return Problem(question, STEP_SEPARATOR.join(steps), _digits(a * b, 2 * digits, reverse))


def synthetic_problems(
    task: str, digits: int, num_samples: int, split: str = "train", reverse: bool = False,
    seed: int = 0, distinct: bool = False,
) -> list[Problem]:
    """`num_samples` problems of one split. The held-out split, and the training split with
    `distinct`, draw distinct pairs while they last (then repeats)."""
    if task not in TASKS:
        raise LanternError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise LanternError(f"unknown split {split!r}; choose train or test")
    if not 1 <= digits <= 9:
        raise LanternError(f"--digits must be between 1 and 9 (got {digits})")
    if num_samples <= 0:
        raise LanternError(f"--num_samples must be positive (got {num_samples})")
    make = addition if task == "add" else multiplication
    rng = random.Random(f"{task}:{digits}:{split}:{seed}")
    limit = 10**digits
    want_held_out = split == "test"
    distinct = distinct or want_held_out
    # How many distinct pairs the split has (counted only where few exist).
    available = sum(is_held_out(a, b) == want_held_out for a in range(limit) for b in range(limit)) \
        if distinct and digits <= 2 else None
    seen: set[tuple[int, int]] = set()
    out: list[Problem] = []
    while len(out) < num_samples:
        a, b = rng.randrange(limit), rng.randrange(limit)
        if is_held_out(a, b) != want_held_out:
            continue
        if distinct and (available is None or len(seen) < available):
            if (a, b) in seen:
                continue
            seen.add((a, b))
        out.append(make(a, b, digits, reverse))
    return out


def write_problems(path: str | Path, problems: list[Problem]) -> None:
    atomic_write_text(path, "".join(json.dumps(p.to_dict()) + "\n" for p in problems))


def read_problems(path: str | Path) -> list[Problem]:
    """A JSONL file with `question`, `answer` and optionally `thinking` on each line."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"problems file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LanternError(f"problems file is not UTF-8 text (byte {exc.start}): {path}") from None
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LanternError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) \
                or not isinstance(row.get("answer"), str):
            raise LanternError(f"{path}:{number}: needs string fields 'question' and 'answer'")
        problems.append(Problem(row["question"], str(row.get("thinking", "")), row["answer"]))
    if not problems:
        raise LanternError(f"problems file holds no problems: {path}")
    return problems


# Hugging Face datasets: name -> (dataset id, config, split, question field, how to split the rest).
HF_DATASETS = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "aime": ("AI-MO/aimo-validation-aime", None, "train"),
    "humaneval": ("openai/openai_humaneval", None, "test"),
    "mbpp": ("google-research-datasets/mbpp", "full", "test"),
    "apps": ("codeparrot/apps", "all", "test"),
}


def _from_hf_row(name: str, row: dict) -> Problem:
    if name == "gsm8k":
        thinking, _, answer = row["answer"].rpartition("####")
        return Problem(row["question"], thinking.strip(), answer.strip())
    if name == "aime":
        return Problem(row["problem"], row.get("solution", ""), str(row["answer"]))
    if name == "humaneval":
        return Problem(row["prompt"], "", row["canonical_solution"])
    if name == "mbpp":
        return Problem(row["text"], "", row["code"])
    solutions = json.loads(row["solutions"]) if row.get("solutions") else [""]
    return Problem(row["question"], "", solutions[0])


def hf_problems(name: str, num_samples: int) -> list[Problem]:
    """The first `num_samples` problems of a named Hugging Face dataset."""
    try:
        import datasets
    except ImportError:
        raise LanternError(f"dataset {name!r} needs the `datasets` package (pip install datasets)") \
            from None
    repo, config, split = HF_DATASETS[name]
    try:
        data = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # offline, gated or renamed: the library raises many kinds
        raise LanternError(f"cannot load dataset {repo}: {str(exc).splitlines()[0][:200]}") from None
    return [_from_hf_row(name, data[i]) for i in range(min(num_samples, len(data)))]


def load_problems(spec: str | Path, num_samples: int | None = None) -> list[Problem]:
    """A JSONL file, or a Hugging Face dataset name (gsm8k, aime, humaneval, mbpp, apps)."""
    if str(spec) in HF_DATASETS and not Path(spec).exists():
        problems = hf_problems(str(spec), num_samples or 10**9)
    else:
        problems = read_problems(spec)
    if num_samples is not None:
        if num_samples <= 0:
            raise LanternError(f"--num_samples must be positive (got {num_samples})")
        problems = problems[:num_samples]
    return problems
