"""The bad-input drill: every command, fed what a user gets wrong, answers with exactly one
`lantern: error:` line, exits non-zero, prints no traceback and changes no file it found.

Each case runs the real command line (`python -m lantern ...`) in a fresh workspace holding a
tiny trained run, a tiny LLM-TRM pipeline (problems, host, compressor, pairs, TRM) and a few
input files; every file there is hashed before and after. With `LANTERN_DRILL_DOC=PATH` set, the
drill also writes its cases and their answers as a Markdown page (docs/bad-input-drill.md).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import queue
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
from lantern.cli.main import COMMANDS
from lantern.tokenizers import CharTokenizer

REPO = Path(lantern.__file__).resolve().parents[1]
TINY_MODEL = ["--config", "nano", "--hidden_size", "32", "--num_heads", "2", "--num_blocks", "1",
              "--seq_length", "16", "--batch_size", "4", "--max_steps", "2", "--eval_interval", "2",
              "--eval_batches", "1", "--num_samples", "0"]
RANGE_TEST = [*TINY_MODEL[:TINY_MODEL.index("--max_steps")], "--find_steps", "3"]
GENERATE = ["--max_new_tokens", "4", "--seed", "1"]
COMPRESSOR = ["--compressor_checkpoint", "comp/stage1b_best"]
GRPO = ["trm", "grpo", "--host", "host", "--trm_checkpoint", "trm/best.pt", *COMPRESSOR,
        "--dataset", "train.jsonl", "--output_dir", "g"]
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
    # --- lr-find -------------------------------------------------------------------------
    case("range test with a reversed range", "lr-find", "--data_path", "text.txt", *RANGE_TEST,
         "--start_lr", "1", "--end_lr", "0.1", expect="--start_lr"),
    case("range test given a step count", "lr-find", "--data_path", "text.txt", *RANGE_TEST,
         "--max_steps", "5", expect="unrecognized arguments: --max_steps"),
    case("range test plot in a missing folder", "lr-find", "--data_path", "text.txt",
         *RANGE_TEST, "--plot", "nowhere/curve.png", expect="does not exist"),
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
    # --- trm problems --------------------------------------------------------------------
    case("zero digits", "trm", "problems", "--task", "add", "--digits", "0", "--num_samples", "5",
         "--output", "p.jsonl", expect="--digits"),
    case("negative problem count", "trm", "problems", "--task", "add", "--digits", "2",
         "--num_samples", "-3", "--output", "p.jsonl", expect="--num_samples"),
    case("problems over an existing file", "trm", "problems", "--task", "add", "--digits", "2",
         "--num_samples", "5", "--output", "text.txt", expect="already exists"),
    case("problems output is a directory", "trm", "problems", "--task", "add", "--digits", "2",
         "--num_samples", "5", "--output", "folder", expect="folder.*directory"),
    # --- trm host ------------------------------------------------------------------------
    case("missing problems file", "trm", "host", "--problems", "missing.jsonl", "--output_dir", "h",
         expect="not found: missing.jsonl"),
    case("problems file that is not JSONL", "trm", "host", "--problems", "text.txt",
         "--output_dir", "h", expect="text.txt:1: not JSON"),
    case("problems file that is not UTF-8", "trm", "host", "--problems", "latin1.txt",
         "--output_dir", "h", expect="latin1.txt"),
    case("empty problems file", "trm", "host", "--problems", "empty.txt", "--output_dir", "h",
         expect="no problems"),
    case("host over a trained host", "trm", "host", "--problems", "train.jsonl", "--output_dir",
         "host", expect="--overwrite"),
    case("host --val_fraction outside (0, 1)", "trm", "host", "--problems", "train.jsonl",
         "--output_dir", "h", "--val_fraction", "1.5", expect="val_fraction"),
    case("host continued from a run that is no host", "trm", "host", "--problems", "train.jsonl",
         "--output_dir", "h", "--init_from", "run", expect="not a host"),
    case("host continued on problems of another vocabulary", "trm", "host", "--problems",
         "long.jsonl", "--output_dir", "h", "--init_from", "host", expect="vocabulary"),
    # --- trm compressor ------------------------------------------------------------------
    case("missing host", "trm", "compressor", "--host", "missing", "--output_dir", "c",
         expect="host not found"),
    case("a text file as host", "trm", "compressor", "--host", "text.txt", "--output_dir", "c",
         expect="text.txt"),
    case("host without <think>", "trm", "compressor", "--host", "run", "--stage", "1b", "--data",
         "train.jsonl", "--output_dir", "c", expect="<think>"),
    case("stage 1b without --data", "trm", "compressor", "--host", "host", "--stage", "1b",
         "--output_dir", "c", expect="needs --data"),
    case("--window longer than the host's context", "trm", "compressor", "--host", "host",
         "--window", "100", "--output_dir", "c", expect="--window 100 is longer"),
    case("zero --d_compressed", "trm", "compressor", "--host", "host", "--d_compressed", "0",
         "--output_dir", "c", expect="d_compressed"),
    case("--layer beyond the host", "trm", "compressor", "--host", "host", "--layer", "99",
         "--output_dir", "c", expect="--layer 99"),
    case("problems longer than the host's context", "trm", "compressor", "--host", "host",
         "--stage", "1b", "--data", "long.jsonl", "--output_dir", "c", expect="context"),
    case("compressor over its own checkpoints", "trm", "compressor", "--host", "host", "--stage",
         "1b", "--data", "train.jsonl", "--output_dir", "comp", expect="--overwrite"),
    # --- trm datagen ---------------------------------------------------------------------
    case("datagen on a host without <think>", "trm", "datagen", "--host", "run", "--dataset",
         "train.jsonl", "--output_dir", "d", expect="<think>"),
    case("datagen with zero --num_samples", "trm", "datagen", "--host", "host", "--dataset",
         "train.jsonl", "--output_dir", "d", "--num_samples", "0", expect="num_samples"),
    case("datagen thinking budget of zero", "trm", "datagen", "--host", "host", "--dataset",
         "train.jsonl", "--output_dir", "d", "--mode", "generate", "--max_new_tokens", "0",
         expect="max_new_tokens"),
    case("datagen discarding a run without --overwrite", "trm", "datagen", "--host", "host",
         "--dataset", "train.jsonl", "--output_dir", "pairs", "--no_auto_resume",
         expect="--overwrite"),
    # --- trm train -----------------------------------------------------------------------
    case("missing pairs", "trm", "train", "--data", "missing", *COMPRESSOR, "--output_dir", "t",
         expect="missing"),
    case("a text file as pairs", "trm", "train", "--data", "text.txt", *COMPRESSOR, "--output_dir",
         "t", expect="text.txt"),
    case("random bytes as compressor", "trm", "train", "--data", "pairs", "--compressor_checkpoint",
         "random.pt", "--output_dir", "t", expect="random"),
    case("half a compressor checkpoint", "trm", "train", "--data", "pairs",
         "--compressor_checkpoint", "half_comp", "--output_dir", "t", expect="half_comp"),
    case("damaged compressor checkpoint", "trm", "train", "--data", "pairs",
         "--compressor_checkpoint", "bad_comp", "--output_dir", "t", expect="damaged"),
    case("zero TRM layers", "trm", "train", "--data", "pairs", *COMPRESSOR, "--output_dir", "t",
         "--n_layers", "0", expect="n_layers"),
    case("TRM over its own checkpoints", "trm", "train", "--data", "pairs", *COMPRESSOR,
         "--output_dir", "trm", expect="--overwrite"),
    case("TRM answer loss through a host without a slot", "trm", "train", "--data", "pairs",
         *COMPRESSOR, "--host", "run", "--output_dir", "t", expect="slot|think|host"),
    # --- trm eval ------------------------------------------------------------------------
    case("eval on a missing dataset", "trm", "eval", "--host", "host", "--dataset",
         "missing.jsonl", "--output", "r.json", expect="missing.jsonl"),
    case("unknown eval mode", "trm", "eval", "--host", "host", "--dataset", "test.jsonl",
         "--modes", "bogus", "--output", "r.json", expect="bogus"),
    case("random bytes as TRM checkpoint", "trm", "eval", "--host", "host", "--dataset",
         "test.jsonl", "--trm_checkpoint", "random.pt", *COMPRESSOR, "--output", "r.json",
         expect="random.pt"),
    case("negative --bootstrap", "trm", "eval", "--host", "host", "--dataset", "test.jsonl",
         "--bootstrap", "-1", "--output", "r.json", expect="bootstrap"),
    case("eval report over an existing file", "trm", "eval", "--host", "host", "--dataset",
         "test.jsonl", "--modes", "full", "--output", "text.txt", expect="already exist"),
    # --- trm grpo ------------------------------------------------------------------------
    case("missing TRM checkpoint", "trm", "grpo", "--host", "host", "--trm_checkpoint",
         "missing.pt", *COMPRESSOR, "--dataset", "train.jsonl", "--output_dir", "g",
         expect="missing.pt"),
    case("zero GRPO group size", *GRPO, "--group_size", "0", expect="group_size"),
    case("negative sampling temperature", *GRPO, "--temperature", "-1", expect="temperature"),
    case("GRPO on a host without a slot", "trm", "grpo", "--host", "run", "--trm_checkpoint",
         "trm/best.pt", *COMPRESSOR, "--dataset", "train.jsonl", "--output_dir", "g",
         expect="slot|think|host"),
    # --- export --------------------------------------------------------------------------
    case("GGUF export to a name without .gguf", "export", "run", "--format", "gguf", "--output",
         "out.hf", expect=r"\.gguf"),
    case("--outtype for a transformers export", "export", "run", "--format", "hf", "--output",
         "out", "--outtype", "q8_0", expect="outtype"),
    case("export of a missing model", "export", "missing", "--format", "hf", "--output", "out",
         expect="missing"),
    case("export of a damaged checkpoint", "export", "truncated.pt", "--format", "hf", "--output",
         "out", expect="truncated.pt"),
    case("unknown GGUF tensor type", "export", "run", "--format", "gguf", "--output", "m.gguf",
         "--outtype", "q3_k", expect="q3_k"),
    case("--overwrite of a directory LANTERN did not write", "export", "run", "--format", "hf",
         "--output", "mine", "--overwrite", expect="not a LANTERN output"),
    case("export over the model being exported", "export", "run", "--format", "hf", "--output",
         "run", expect="would replace"),
    case("export over an existing GGUF file", "export", "run", "--format", "gguf", "--output",
         "existing.gguf", expect="already exists"),
    case("zero --depth", "export", "run", "--format", "gguf", "--output", "m.gguf", "--depth", "0",
         expect="--depth"),
    case("GGUF of a character vocabulary without byte fallback", "export", "host", "--format",
         "gguf", "--output", "m.gguf", expect="byte fallback"),
    case("--ema from a checkpoint without one", "export", "run", "--format", "hf", "--output",
         "out", "--ema", expect="EMA|ema"),
    # --- push (refused before any upload) ------------------------------------------------
    case("push without --repo", "push", "run", expect="--repo"),
    case("push of a missing path", "push", "missing_dir", "--repo", "user/name",
         expect="not found"),
    case("push to a repository id that is no user/name", "push", "run", "--repo", "not-a-repo",
         expect="user/name"),
    case("push of an empty directory", "push", "folder", "--repo", "user/name",
         expect="nothing to upload"),
    case("push of half a compressor checkpoint", "push", "half_comp", "--repo", "user/name",
         expect="half a checkpoint"),
    # --- serve (start-up) ----------------------------------------------------------------
    case("port out of range", "serve", "--checkpoint", "run", "--port", "70000", expect="--port"),
    case("damaged checkpoint to serve", "serve", "--checkpoint", "random.pt", "--port", "0",
         expect="random.pt"),
    case("missing checkpoint to serve", "serve", "--checkpoint", "missing", "--port", "0",
         expect="missing"),
    case("zero --max_batch", "serve", "--checkpoint", "run", "--port", "0", "--max_batch", "0",
         expect="max_batch"),
    case("negative --max_tokens", "serve", "--checkpoint", "run", "--port", "0", "--max_tokens",
         "-1", expect="max_tokens"),
    case("--model without NAME=PATH", "serve", "--model", "nameonly", "--port", "0",
         expect="NAME=PATH"),
    case("serve without a model", "serve", "--port", "0", expect="give a model"),
    case("address that cannot be listened on", "serve", "--checkpoint", "run", "--host",
         "256.1.1.1", "--port", "0", expect="cannot listen"),
    case("empty --api_key", "serve", "--checkpoint", "run", "--port", "0", "--api_key", "",
         expect="api_key"),
    case("a port that is not a number", "serve", "--checkpoint", "run", "--port", "abc",
         expect="--port: invalid int value"),
    case("a flag the command does not have", "info", "run", "--frobnicate",
         expect="unrecognized arguments: --frobnicate"),
    case("two models of one name", "serve", "--model", "a=run", "--model", "a=run", "--port", "0",
         expect="two models"),
    # --- chat, pull, convert ---------------------------------------------------------------
    case("chat with a corrupt checkpoint", "chat", "--checkpoint", "random.pt", expect="damaged"),
    case("chat with a negative --max_new_tokens", "chat", "--checkpoint", "run",
         "--max_new_tokens", "-3", expect="max_new_tokens"),
    case("pull of an unknown model name", "pull", "no-such-model", expect="unknown model name"),
    case("convert of a text file", "convert", "text.txt", "--output", "converted",
         expect="not a GGUF file"),
    case("convert of a truncated GGUF file", "convert", "existing.gguf", "--output", "converted",
         expect="existing.gguf"),
    case("convert of a missing model", "convert", "missing.gguf", "--output", "converted",
         expect="neither a file"),
    case("convert over a run without --overwrite", "convert", "existing.gguf", "--output", "run",
         expect="run"),
    case("eval of a missing data file", "eval", "--checkpoint", "run", "--data", "missing.txt",
         expect="not found"),
]


def _env() -> dict[str, str]:
    """The subprocess runs this very source tree, on one thread."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1",  # a file-size limit must never truncate a .pyc
            "HF_HUB_OFFLINE": "1"}  # `lantern push` never reaches the network from a test


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


@pytest.fixture(scope="module")
def trm_pipeline(tmp_path_factory) -> Path:
    """Problems, a host (30-token context), a stage-1b compressor, pairs and a TRM, each as
    small as the pipeline allows; and problems too long for that host."""
    from lantern.trm.compressor import CompressorConfig, train_compressor
    from lantern.trm.datagen import DatagenConfig, generate_pairs
    from lantern.trm.host_training import HostTrainConfig, train_host
    from lantern.trm.problems import synthetic_problems, write_problems
    from lantern.trm.training import TRMTrainConfig, train_trm

    root = tmp_path_factory.mktemp("trm")
    write_problems(root / "train.jsonl", synthetic_problems("add", 2, 64))
    write_problems(root / "test.jsonl", synthetic_problems("add", 2, 16, split="test"))
    write_problems(root / "long.jsonl", synthetic_problems("mul", 9, 4))
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / "host"),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=3, batch_size=4, eval_interval=3, eval_problems=2,
                               warmup_steps=1, device="cpu"), quiet=True)
    train_compressor(CompressorConfig(host=str(root / "host"), output_dir=str(root / "comp"),
                                      stage="1b", data=str(root / "train.jsonl"), num_samples=16,
                                      num_epochs=1, d_compressed=8, batch_size=64), quiet=True)
    generate_pairs(DatagenConfig(host=str(root / "host"), dataset=str(root / "train.jsonl"),
                                 output_dir=str(root / "pairs"), num_samples=16, batch_size=16),
                   quiet=True)
    train_trm(TRMTrainConfig(data=str(root / "pairs"), output_dir=str(root / "trm"),
                             compressor_checkpoint=str(root / "comp" / "stage1b_best"),
                             num_epochs=1, batch_size=8, n_layers=1, n_heads=2,
                             n_supervision_steps=2, device="cpu"), quiet=True)
    return root


def make_workspace(root: Path, trained_run: Path, trm_pipeline: Path) -> None:
    """A tiny run and TRM pipeline plus one file of every bad kind the cases name."""
    shutil.copytree(trained_run, root / "run")
    for name in ("host", "comp", "pairs", "trm"):
        shutil.copytree(trm_pipeline / name, root / name)
    for name in ("train.jsonl", "test.jsonl", "long.jsonl"):
        shutil.copy(trm_pipeline / name, root / name)
    weights = (trm_pipeline / "comp" / "stage1b_best.safetensors").read_bytes()
    (root / "half_comp.safetensors").write_bytes(weights)
    (root / "bad_comp.safetensors").write_bytes(weights[: len(weights) // 2])
    shutil.copy(trm_pipeline / "comp" / "stage1b_best.json", root / "bad_comp.json")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("a directory of the user's own")
    (root / "existing.gguf").write_bytes(b"GGUF of the user's own")
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


class WarmRunner:
    """`python -m lantern ARGV` without paying the start-up each time: `drill_runner.py` imports
    LANTERN once and forks a child per command line (see its docstring)."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("drill_runner.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(),
                                        text=True)

    def run(self, args, cwd: Path, stdin: bytes | None = None, max_file_bytes: int | None = None
            ) -> subprocess.CompletedProcess:
        streams = {name: self.scratch / name for name in ("stdin", "stdout", "stderr")}
        streams["stdin"].write_bytes(stdin or b"")
        for name in ("stdout", "stderr"):
            streams[name].write_bytes(b"")
        job = {"argv_b64": [base64.b64encode(os.fsencode(a)).decode() for a in args],
               "cwd": str(cwd), "max_file_bytes": max_file_bytes, "timeout": 240,
               **{name: str(path) for name, path in streams.items()}}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        returncode = json.loads(self.process.stdout.readline())["returncode"]
        return subprocess.CompletedProcess(["lantern", *args], returncode,
                                           streams["stdout"].read_bytes(), streams["stderr"].read_bytes())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run_case(c: Case, root: Path, runner: WarmRunner) -> Outcome:
    before = snapshot(root)
    proc = runner.run(c.argv, root, c.stdin, c.max_file_bytes)
    temporary = [str(p.relative_to(root)) for p in root.rglob("*.tmp")]
    return Outcome(proc, before, snapshot(root), temporary)


@pytest.fixture(scope="module")
def outcomes(trained_run, trm_pipeline, tmp_path_factory) -> dict[str, Outcome]:
    """Every case, two at a time, each through a warm runner of its own thread."""
    roots = {}
    for c in CASES:
        roots[c.kind] = tmp_path_factory.mktemp("case")
        make_workspace(roots[c.kind], trained_run, trm_pipeline)
    runners: queue.Queue[WarmRunner] = queue.Queue()
    for _ in range(2):
        runners.put(WarmRunner(tmp_path_factory.mktemp("runner")))

    def run(c: Case) -> Outcome:
        runner = runners.get()
        try:
            return run_case(c, roots[c.kind], runner)
        finally:
            runners.put(runner)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {c.kind: pool.submit(run, c) for c in CASES}
            results = {kind: future.result() for kind, future in futures.items()}
    finally:
        while not runners.empty():
            runners.get().close()
    if os.environ.get("LANTERN_DRILL_DOC"):
        write_drill_page(Path(os.environ["LANTERN_DRILL_DOC"]), results)
    return results


@pytest.mark.parametrize("c", [pytest.param(c, id=c.kind.replace(" ", "_")) for c in CASES])
def test_bad_input_gives_one_clear_line_and_changes_nothing(c, outcomes):
    check_outcome(c, outcomes[c.kind])


def check_outcome(c: Case, outcome: Outcome) -> None:
    line = error_line(outcome.proc)
    assert re.search(c.expect, line, re.IGNORECASE), line
    changed = [name for name, digest in outcome.before.items() if outcome.after.get(name) != digest]
    assert not changed, f"files changed or removed: {changed}"
    assert not outcome.temporary, f"unfinished writes left behind: {outcome.temporary}"


def test_the_drill_covers_every_command_and_sixty_kinds():
    assert len({c.kind for c in CASES}) == len(CASES) >= 60
    assert {c.argv[0] for c in CASES} == {name.replace("_", "-") for name in COMMANDS}  # lr_find
    trm_steps = {c.argv[1] for c in CASES if c.argv[0] == "trm"}
    assert trm_steps == {"problems", "host", "compressor", "datagen", "train", "eval", "grpo"}


def test_the_compressor_default_window_fits_a_short_host(trm_pipeline, tmp_path, capsys):
    """The default --window (64) is longer than this host's 30-token context: it is clamped,
    with a note, rather than indexing past the host's position table."""
    from lantern.trm.compressor import CompressorConfig, train_compressor

    train_compressor(CompressorConfig(host=str(trm_pipeline / "host"), output_dir=str(tmp_path),
                                      num_samples=4, num_epochs=1, d_compressed=8))
    assert "using windows of 30" in capsys.readouterr().out
    assert (tmp_path / "stage1a_final.safetensors").is_file()


def shown(argv: tuple[str | bytes, ...]) -> str:
    """A case's command line as a user would type it in bash."""
    text = " ".join("$'" + "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in a) + "'"
                    if isinstance(a, bytes) else (a if a and " " not in a else repr(a))
                    for a in argv)
    return "lantern " + text.replace(" ".join(TINY_MODEL), "TINY")


def write_drill_page(path: Path, results: dict[str, Outcome]) -> None:
    """docs/bad-input-drill.md: every case with the line it answered."""
    rows = []
    for c in CASES:
        command = shown(c.argv)
        if c.stdin is not None:
            command = f"printf {shown((c.stdin,))[8:]} | {command}"
        if c.max_file_bytes is not None:
            command = f"(ulimit -f {c.max_file_bytes // 1024}; {command})"
        err = results[c.kind].proc.stderr.decode("utf-8", errors="replace").rstrip("\n")
        message = err.splitlines()[-1].removeprefix("lantern: error: ") if err else ""
        command, message = (text.replace("|", "\\|") for text in (command, message))  # cell ends
        rows.append(f"| {c.kind} | `{command}` | {message} |")
    clean = sum(is_clean(c, results[c.kind]) for c in CASES)
    path.write_text(DRILL_PAGE.format(tiny=" ".join(TINY_MODEL), table="\n".join(rows),
                                      count=len(CASES), clean=clean), encoding="utf-8")


def is_clean(c: Case, outcome: Outcome) -> bool:
    try:
        check_outcome(c, outcome)
    except AssertionError:
        return False
    return True


DRILL_PAGE = """# The bad-input drill

`tests/test_bad_input_drill.py` feeds every command (`train`, `generate`, `data`, `tokenizer`,
`info`, every `trm` step, `export`, `push`, and `serve`'s start-up) what a user gets wrong, and
holds each answer to the same rule: exactly one `lantern: error: ...` line on stderr (the last
line there), a non-zero exit, no traceback, no file in the working directory changed or removed,
and no unfinished `*.tmp` write left behind.

Each case runs the real command line, `python -m lantern ...`, in a process of its own (forked
from a warm process that has imported LANTERN once, `tests/drill_runner.py`) in a fresh
workspace: a tiny trained run (`run/`, 2 steps of a 1-block, 32-wide model), a tiny LLM-TRM
pipeline (`train.jsonl`, `test.jsonl`, `host/` with a 30-token context, `comp/stage1b_best`,
`pairs/`, `trm/`), problems too long for that host (`long.jsonl`), and one file of each bad kind
(empty, binary, Latin-1, too short, truncated and random checkpoints, another program's
`torch.save` dict, a zip, a safetensors file with foreign tensor names, a tokenizer of another
vocabulary, half a compressor checkpoint, a directory and a GGUF file of the user's own). Every
file there is hashed (SHA-256) before and after. A full disk is simulated with `RLIMIT_FSIZE` in
the child process (Python ignores `SIGXFSZ`, so writes fail with `EFBIG`). `lantern push` runs
with `HF_HUB_OFFLINE=1`, and every push case is refused before any upload.

```bash
.venv/bin/python -m pytest tests/test_bad_input_drill.py -rxX
# and to rewrite this page from a run of the drill:
LANTERN_DRILL_DOC=docs/bad-input-drill.md .venv/bin/python -m pytest tests/test_bad_input_drill.py
```

`TINY` below stands for `{tiny}`.

| kind | command | message |
|---|---|---|
{table}

{count} bad inputs tried, {clean} clean
"""
