"""The bad-input drill: every command, fed what a user gets wrong, answers with exactly one
`lantern: error:` line, exits non-zero, prints no traceback and changes no file it found.

Each case runs the real command line (`python -m lantern ...`) in a fresh workspace holding a
tiny trained run and a few input files; every file there is hashed before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lantern
from lantern.tokenizers import CharTokenizer

REPO = Path(lantern.__file__).resolve().parents[1]
TINY_MODEL = ["--config", "nano", "--hidden_size", "32", "--num_heads", "2", "--num_blocks", "1",
              "--seq_length", "16", "--batch_size", "4", "--max_steps", "2", "--eval_interval", "2",
              "--eval_batches", "1", "--num_samples", "0"]
GENERATE = ["--max_new_tokens", "4", "--seed", "1"]
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str
    argv: tuple[str | bytes, ...]
    expect: str  # a regular expression the error line must match (case-insensitive)
    stdin: bytes | None = None
    max_file_bytes: int | None = None  # RLIMIT_FSIZE: a full disk, for this process only



def case(kind: str, *argv: str | bytes, expect: str, **options) -> Case:
    return Case(kind, tuple(argv), expect, **options)


CASES = [
    # --- train ---------------------------------------------------------------------------
    case("empty data file", "train", "--data_path", "empty.txt", *TINY_MODEL, "--output_dir", "out",
         expect="empty"),
    case("binary data file", "train", "--data_path", "binary.txt", *TINY_MODEL, "--output_dir",
         "out", expect="binary"),
    case("non-UTF-8 data file", "train", "--data_path", "latin1.txt", *TINY_MODEL, "--output_dir",
         "out", expect="not UTF-8"),
    case("data too short for seq_length", "train", "--data_path", "short.txt", *TINY_MODEL,
         "--output_dir", "out", expect="fewer than one window"),
    case("missing data file", "train", "--data_path", "missing.txt", *TINY_MODEL, "--output_dir",
         "out", expect="not found"),
    case("directory instead of a data file", "train", "--data_path", "folder", *TINY_MODEL,
         "--output_dir", "out", expect="directory"),
    case("unknown preset", "train", *TINY_MODEL, "--config", "huge", "--output_dir", "out",
         expect="unknown preset"),
    case("zero model size", "train", "--data_path", "text.txt", *TINY_MODEL, "--hidden_size", "0",
         "--output_dir", "out", expect="hidden_size"),
    case("negative built-in corpus size", "train", *TINY_MODEL, "--corpus_chars", "-5",
         "--output_dir", "out", expect="corpus_chars"),
    case("NaN loss", "train", "--data_path", "text.txt", *TINY_MODEL, "--learning_rate", "1e30",
         "--output_dir", "out", expect="nan|inf|finite"),
    case("--seq_length beyond the model's context on resume", "train", "--resume_from", "run",
         "--seq_length", "64", "--max_steps", "4", expect="seq_length|context"),
    case("unwritable output dir (a file in the way)", "train", "--data_path", "text.txt",
         *TINY_MODEL, "--output_dir", "text.txt/out", expect="text.txt"),
    case("disk full while saving a checkpoint", "train", "--data_path", "text.txt", *TINY_MODEL,
         "--output_dir", "out", max_file_bytes=20_000, expect="too large|space|cannot write"),
    # --- generate ------------------------------------------------------------------------
    case("corrupt checkpoint (random bytes)", "generate", "--checkpoint", "random.pt", *GENERATE,
         expect="random.pt"),
    case("truncated checkpoint", "generate", "--checkpoint", "truncated.pt", *GENERATE,
         expect="truncated.pt"),
    case("checkpoint of another program (torch.save'd dict)", "generate", "--checkpoint",
         "foreign.pt", *GENERATE, expect="not a LANTERN checkpoint"),
    case("a zip file as checkpoint", "generate", "--checkpoint", "archive.zip", *GENERATE,
         expect="archive.zip"),
    case("safetensors with foreign tensor names", "generate", "--checkpoint", "foreign.safetensors",
         *GENERATE, expect="foreign.safetensors"),
    case("vocabulary mismatch between checkpoint and tokenizer", "generate", "--checkpoint", "run",
         "--tokenizer", "other_tokenizer.json", *GENERATE, expect="do not belong together"),
    case("prompt bytes that are not UTF-8", "generate", "--checkpoint", "run", "--prompt",
         b"caf\xe9", *GENERATE, expect="not valid Unicode"),
    case("negative --max_new_tokens", "generate", "--checkpoint", "run", "--max_new_tokens", "-1",
         expect="max_new_tokens"),
    # --- data ----------------------------------------------------------------------------
    case("negative synth count", "data", "synth", "--sentences", "-1", "--output", "out.txt",
         expect="negative"),
    case("synth over an existing file", "data", "synth", "--sentences", "5", "--output",
         "text.txt", expect="already exists"),
    case("disk full while writing synth data", "data", "synth", "--output", "out.txt",
         max_file_bytes=4096, expect="too large|space|cannot write"),
    case("negative --valid_size", "data", "prepare", "tinystories", "--sample_size", "4",
         "--valid_size", "-2", "--source", "text.txt", "--data_dir", "prepared",
         expect="valid_size"),
    # --- tokenizer -----------------------------------------------------------------------
    case("a flag the tokenizer type has no use for", "tokenizer", "train", "--data", "text.txt",
         "--type", "char", "--vocab_size", "5", "--output", "tok.json", expect="does not apply"),
    case("non-UTF-8 text on stdin", "tokenizer", "encode", "--tokenizer", "run",
         stdin=b"caf\xe9\n", expect="not UTF-8"),
    case("token id outside the vocabulary", "tokenizer", "decode", "--tokenizer", "run",
         "[1, 99999]", expect="outside"),
    # --- info ----------------------------------------------------------------------------
    case("info on a directory without a model", "info", "folder", expect="folder"),
    case("info on a text file", "info", "text.txt", expect="text.txt"),
]


def _env() -> dict[str, str]:
    """The subprocess runs this very source tree, on one thread."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1"}  # a file-size limit must never truncate a .pyc


def lantern_cli(args, cwd: Path, stdin: bytes | None = None, max_file_bytes: int | None = None
                ) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "lantern", *args], cwd=cwd, env=_env(),
                          input=stdin or b"", capture_output=True, timeout=240,
                          preexec_fn=limit_file_size if max_file_bytes else None)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drill") / "run"
    proc = lantern_cli(["train", *TINY_MODEL, "--corpus_chars", "5000", "--output_dir", str(out)],
                       cwd=out.parent)
    assert proc.returncode == 0, proc.stderr.decode()
    return out


def make_workspace(root: Path, trained_run: Path) -> None:
    """A tiny run plus one file of every bad kind the cases name."""
    shutil.copytree(trained_run, root / "run")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(b"abc\x00\x01\x02" * 100)
    (root / "latin1.txt").write_bytes("café crème brûlée ".encode("latin-1") * 20)
    (root / "short.txt").write_text("tiny", encoding="utf-8")
    (root / "folder").mkdir()
    final = (root / "run" / "final_model.pt").read_bytes()
    (root / "truncated.pt").write_bytes(final[: len(final) // 3])
    (root / "random.pt").write_bytes(bytes(range(256)) * 64)
    torch.save({"epoch": 3, "weights": torch.randn(4, 4), "notes": ["a", "b"]}, root / "foreign.pt")
    with zipfile.ZipFile(root / "archive.zip", "w") as z:
        z.writestr("readme.txt", "not a model")
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, str(root / "foreign.safetensors"))
    (root / "other_tokenizer.json").write_text(CharTokenizer.train(["only a few letters"]).to_json())


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `lantern: error:` line, after checking exit code, traceback and line count."""
    err = proc.stderr.decode("utf-8", errors="replace")
    assert proc.returncode != 0, f"exit 0; stderr: {err[-500:]}"
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("lantern: error: ")]
    assert len(lines) == 1, err[-2000:]
    assert err.rstrip("\n").splitlines()[-1] == lines[0], err[-2000:]
    return lines[0]


@dataclasses.dataclass
class Outcome:
    proc: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]
    temporary: list[str]  # paths named like an unfinished atomic write


def run_case(c: Case, root: Path) -> Outcome:
    before = snapshot(root)
    proc = lantern_cli(c.argv, root, c.stdin, c.max_file_bytes)
    temporary = [str(p.relative_to(root)) for p in root.rglob("*.tmp")]
    return Outcome(proc, before, snapshot(root), temporary)


@pytest.fixture(scope="module")
def outcomes(trained_run, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, two at a time (each is a process that mostly waits on imports); those with a
    file-size limit afterwards, one by one, since a preexec_fn is unsafe beside other threads."""
    roots = {}
    for c in CASES:
        roots[c.kind] = tmp_path_factory.mktemp("case")
        make_workspace(roots[c.kind], trained_run)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.kind: pool.submit(run_case, c, roots[c.kind]) for c in CASES
                   if c.max_file_bytes is None}
        results = {kind: future.result() for kind, future in futures.items()}
    for c in CASES:
        if c.max_file_bytes is not None:
            results[c.kind] = run_case(c, roots[c.kind])
    return results


@pytest.mark.parametrize("c", [pytest.param(c, id=c.kind.replace(" ", "_")) for c in CASES])
def test_bad_input_gives_one_clear_line_and_changes_nothing(c, outcomes):
    outcome = outcomes[c.kind]
    line = error_line(outcome.proc)
    assert re.search(c.expect, line, re.IGNORECASE), line
    changed = [name for name, digest in outcome.before.items() if outcome.after.get(name) != digest]
    assert not changed, f"files changed or removed: {changed}"
    assert not outcome.temporary, f"unfinished writes left behind: {outcome.temporary}"


def test_the_drill_covers_every_command_and_twenty_kinds():
    assert len({c.kind for c in CASES}) >= 20
    assert {c.argv[0] for c in CASES} == {"train", "generate", "data", "tokenizer", "info"}
