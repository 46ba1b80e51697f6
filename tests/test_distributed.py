"""Training under torchrun on CPU (gloo): 2 processes x B/2 equal 1 process x B (DDP and
FSDP2, plain and weight-shared blocks at sampled depths), rank 0 alone prints and writes, exact
resume after a SIGKILL of the whole job, checkpoints move between process counts, FSDP resumes
from its sharded copy (at 2 processes and at 1), two "nodes" on 127.0.0.1, and a bad setting, a
bad sharded copy or a killed rank stops the job with one line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lantern.checkpoint import load_checkpoint, save_checkpoint
from lantern.cli.main import main
from lantern.fileio import OUTPUT_MARKER
from lantern.training.trainer import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")

TINY = dict(config="nano", hidden_size=32, num_heads=2, num_blocks=2, seq_length=16, batch_size=8,
            corpus_chars=20_000, eval_batches=2, sample_length=8, num_samples=0, log_interval=5,
            device="cpu", max_steps=10, grad_accum=2, eval_interval=5, save_interval=5)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def flags(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        out += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return out


def torchrun(out: Path, *launcher: str, **settings) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "lantern", "train",
            *flags({**TINY, **settings, "output_dir": str(out)})]


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a torchrun job; on a timeout kill it whole, workers included, then fail."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(proc.pid)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def kill_job(agent: int) -> None:
    """SIGKILL torchrun and its workers at once (each worker runs in its own session)."""
    workers = subprocess.run(["pgrep", "-P", str(agent)], capture_output=True, text=True).stdout.split()
    for pid in [agent, *map(int, workers)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state_dict"]


def max_difference(a: Path, b: Path) -> float:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    return max((first[k] - second[k]).abs().max().item() for k in first)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    train(TrainConfig(**{**TINY, "output_dir": str(out / "run")}), quiet=True)
    return out / "run"


RECURSIVE = dict(steps_per_block=3, reinject_input=True, depth_schedule="random:1-3")


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "ddp-recursive", "fsdp-recursive"])
def test_two_processes_with_half_batches_equal_one_process(tmp_path, one_process, mode):
    """Each rank takes a disjoint half of every batch, gradients are averaged (skipped on the
    inner micro-batch), so 10 steps end with the one-process weights; also for weight-shared
    blocks at a sampled depth per step (all ranks draw the same depth). Rank 0 alone prints
    and writes: rank 1's output is empty and the log has each line once."""
    extra = {"fsdp": True} if mode.startswith("fsdp") else {}
    if mode.endswith("recursive"):
        extra.update(RECURSIVE)
        train(TrainConfig(**{**TINY, **RECURSIVE, "output_dir": str(tmp_path / "one")}), quiet=True)
        one_process = tmp_path / "one"
    logs = tmp_path / "logs"
    result = run(torchrun(tmp_path / "run", "--standalone", "--nproc_per_node", "2", "--log-dir",
                          str(logs), "--redirects", "3", **extra))
    assert result.returncode == 0, result.stderr[-2000:]
    rank0 = "".join(p.read_text() for p in logs.rglob("*.log") if p.parent.name == "0")
    rank1 = [p for p in logs.rglob("*.log") if p.parent.name == "1"]
    assert "x 2 micro-batches" in rank0 and "2 process(es) x 4 sequences" in rank0
    rank1_lines = "".join(p.read_text() for p in rank1).splitlines()
    assert rank1 and all("Warning:" in line for line in rank1_lines)  # torch's own notes at most
    run_dir = tmp_path / "run"
    assert max_difference(one_process / "final_model.pt", run_dir / "final_model.pt") < 1e-5
    assert max_difference(one_process / "checkpoint_step_5.pt", run_dir / "checkpoint_step_5.pt") < 1e-5
    records = [json.loads(line) for line in (run_dir / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [5, 10]
    assert not [p.name for p in run_dir.iterdir()
                if p.name.startswith(".") and p.name != OUTPUT_MARKER]  # no stray temporaries
    if mode.startswith("fsdp"):
        assert (run_dir / "checkpoint_step_10.dcp" / ".metadata").is_file()


def test_a_killed_two_process_run_resumes_exactly(tmp_path):
    """SIGKILL the whole torchrun job mid-run, resume it under torchrun: the final weights equal
    an uninterrupted 2-process run bit for bit (dropout on, so every rank's RNG matters)."""
    settings = dict(max_steps=400, save_interval=10, eval_interval=1000, dropout=0.1, log_interval=10)
    launcher = ("--standalone", "--nproc_per_node", "2")
    result = run(torchrun(tmp_path / "full", *launcher, **settings))
    assert result.returncode == 0, result.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(torchrun(out, *launcher, **settings), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint_step_20.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    kill_job(proc.pid)
    proc.wait()
    assert not (out / "final_model.pt").exists(), "the run ended before the kill"
    resumed = run([*torchrun(out, *launcher, **settings), "--resume_from", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resumed from" in resumed.stdout
    assert max_difference(tmp_path / "full" / "final_model.pt", out / "final_model.pt") == 0.0


def test_checkpoints_move_between_process_counts(tmp_path, one_process):
    """A 1-process checkpoint resumes under 2 processes and vice versa (weights and optimizer
    state are consolidated and keyed by name); without dropout the result is the same run."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint_step_5.pt").write_bytes((one_process / "checkpoint_step_5.pt").read_bytes())
    result = run([*torchrun(out, "--standalone", "--nproc_per_node", "2"), "--resume_from", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert max_difference(one_process / "final_model.pt", out / "final_model.pt") < 1e-5
    back = tmp_path / "back"
    back.mkdir()
    (back / "checkpoint_step_5.pt").write_bytes((out / "checkpoint_step_10.pt").read_bytes())
    from lantern.training.trainer import resolve_resume

    cfg, _ = resolve_resume({"resume_from": str(back), "max_steps": 12})
    assert train(cfg, quiet=True)["step"] == 12


SHARDED = dict(fsdp=True, dropout=0.1, ema_decay=0.9)  # every rank's RNG and the EMA matter


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """An uninterrupted 2-process FSDP run: the resumes below start from its step-5 sharded copy
    and must end with its step-10 state."""
    out = tmp_path_factory.mktemp("fsdp") / "run"
    result = run(torchrun(out, "--standalone", "--nproc_per_node", "2", **SHARDED))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def poisoned(state: dict) -> dict:
    """Every floating-point tensor moved by 1."""
    return {key: poisoned(value) if isinstance(value, dict)
            else value + 1 if isinstance(value, torch.Tensor) and value.is_floating_point()
            else value for key, value in state.items()}


def sharded_start(run_dir: Path, out: Path) -> Path:
    """A run directory holding step 5's sharded copy, beside a consolidated file whose weights,
    optimizer state and EMA are all off by 1: a resume that read the .pt would end elsewhere."""
    out.mkdir()
    shutil.copytree(run_dir / "checkpoint_step_5.dcp", out / "checkpoint_step_5.dcp")
    state = load_checkpoint(run_dir / "checkpoint_step_5.pt")
    for part in ("model_state_dict", "optimizer_state_dict", "ema_state_dict"):
        state[part] = poisoned(state[part])
    save_checkpoint(out / "checkpoint_step_5.pt", state)
    return out


def assert_same_state(a: Path, b: Path) -> None:
    """Weights, EMA and optimizer moments equal bit for bit."""
    first, second = load_checkpoint(a), load_checkpoint(b)
    for part in ("model_state_dict", "ema_state_dict"):
        assert first[part].keys() == second[part].keys()
        assert all(torch.equal(first[part][k], second[part][k]) for k in first[part]), part
    moments, others = first["optimizer_state_dict"]["state"], second["optimizer_state_dict"]["state"]
    assert all(torch.equal(moments[p][k], others[p][k]) for p in moments for k in moments[p])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One thread in this process, as in the workers (OMP_NUM_THREADS=1): another thread count
    splits the sums of a matrix product otherwise, and bit-exact comparisons see it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_fsdp_resumes_from_the_sharded_copy_exactly(tmp_path, fsdp_run):
    """2 -> 2 processes: each rank reads its own shards, and the run ends bit for bit where the
    uninterrupted one did; the consolidated file beside the copy is poisoned, so this also
    proves it was not read."""
    out = sharded_start(fsdp_run, tmp_path / "run")
    result = run([*torchrun(out, "--standalone", "--nproc_per_node", "2", **SHARDED),
                  "--resume_from", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_state(fsdp_run / "checkpoint_step_10.pt", out / "checkpoint_step_10.pt")
    assert f"Resumed from {out / 'checkpoint_step_5.dcp'} at step 5" in result.stdout


def test_the_sharded_copy_resumes_on_one_process(tmp_path, fsdp_run):
    """2 -> 1: torch.distributed.checkpoint reshards on load, into a 1-process FSDP model under
    torchrun and into a plain model without torchrun (`--no-fsdp`). Both end bit for bit where a
    1-process resume of the consolidated file ends; that, not the 2-process run, is the
    reference, since another process count reduces gradients in another order and reseeds
    dropout."""
    from lantern.training.trainer import resolve_resume

    reference = tmp_path / "consolidated"
    reference.mkdir()
    shutil.copy(fsdp_run / "checkpoint_step_5.pt", reference)
    plain = sharded_start(fsdp_run, tmp_path / "plain")
    with one_thread():
        train(resolve_resume({"resume_from": str(reference), "fsdp": False})[0], quiet=True)
        assert main(["train", "--resume_from", str(plain / "checkpoint_step_5.dcp"), "--no-fsdp"]) == 0
    sharded = sharded_start(fsdp_run, tmp_path / "fsdp")
    result = run([*torchrun(sharded, "--standalone", "--nproc_per_node", "1", **SHARDED),
                  "--resume_from", str(sharded)])
    assert result.returncode == 0, result.stderr[-2000:]
    for out in (plain, sharded):
        assert_same_state(reference / "checkpoint_step_10.pt", out / "checkpoint_step_10.pt")
    assert f"Resumed from {sharded / 'checkpoint_step_5.dcp'} at step 5" in result.stdout


@pytest.mark.parametrize("damage", ["another model", "a missing shard"])
def test_a_bad_sharded_copy_stops_with_one_line(tmp_path, fsdp_run, capsys, damage):
    copy = tmp_path / "checkpoint_step_5.dcp"
    shutil.copytree(fsdp_run / copy.name, copy)
    if damage == "another model":  # shards of a 32-wide model under a 48-wide model's settings
        state = load_checkpoint(copy / "train_state.pt", required="train_config")
        state["config"]["hidden_size"] = state["train_config"]["model"]["hidden_size"] = 48
        save_checkpoint(copy / "train_state.pt", state)
    else:
        (copy / "__1_0.distcp").unlink()
    assert main(["train", "--resume_from", str(copy), "--no-fsdp"]) == 1
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("lantern: error:")]
    assert len(ours) == 1 and "Traceback" not in err, err
    if damage == "another model":
        assert "does not fit this model: model.embed_tokens.weight is [" in ours[0]
        assert "32] there and [" in ours[0] and "48] here" in ours[0]
    else:
        assert "cannot read the sharded checkpoint" in ours[0] and "__1_0.distcp" in ours[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_train_together(tmp_path, one_process):
    port = free_port()
    nodes = []
    for node in (0, 1):
        launcher = ("--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
                    "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "t")
        nodes.append(subprocess.Popen(torchrun(tmp_path / "run", *launcher), env=ENV,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [node.communicate(timeout=180) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                kill_job(node.pid)
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert max_difference(one_process / "final_model.pt", tmp_path / "run" / "final_model.pt") < 1e-5


def test_a_bad_setting_stops_every_rank_with_one_line(tmp_path):
    result = run(torchrun(tmp_path / "run", "--standalone", "--nproc_per_node", "2", batch_size=3))
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("lantern: error:")]
    assert ours == ["lantern: error: --batch_size 3 does not split evenly over 2 processes; "
                    "use a multiple of 2"]
    assert not (tmp_path / "run").exists()


def test_a_killed_rank_brings_the_job_down_with_one_line(tmp_path):
    cmd = torchrun(tmp_path / "run", "--standalone", "--nproc_per_node", "2", max_steps=1_000_000,
                   eval_interval=1_000_000, save_interval=1_000_000, log_interval=1_000_000)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("Batch:"):  # rank 0 is about to train
                break
        time.sleep(1.0)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        os.kill(int(workers.stdout.split()[-1]), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            kill_job(proc.pid)
    assert proc.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("lantern: error:")]
    assert len(ours) == 1 and "lost another process of the job" in ours[0], stderr[-2000:]


def test_lora_fine_tuning_under_two_processes_equals_one_process(tmp_path, one_process):
    """LoRA adapters on a LANTERN run (`--init_from RUN`) train under DDP as in one process:
    the merged weights after 6 steps agree, and they moved away from the run's own."""
    settings = dict(TINY, init_from=str(one_process), lora_rank=4, learning_rate=1e-2, max_steps=6,
                    eval_interval=6, save_interval=6)
    for shape in ("config", "hidden_size", "num_heads", "num_blocks"):
        settings.pop(shape)  # the shape is the run's
    train(TrainConfig(**{**settings, "output_dir": str(tmp_path / "one")}), quiet=True)
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                  "2", "-m", "lantern", "train", *flags({**settings, "output_dir": str(tmp_path / "two")})])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LoRA: rank 4" in result.stdout and "DDP, 2 process(es)" in result.stdout
    assert max_difference(tmp_path / "one" / "final_model.pt", tmp_path / "two" / "final_model.pt") < 1e-5
    assert max_difference(one_process / "final_model.pt", tmp_path / "two" / "final_model.pt") > 1e-3
