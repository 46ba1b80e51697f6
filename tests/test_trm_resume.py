"""Every LLM-TRM phase runs through the one training loop: Ctrl-C saves and resumes exactly, a
kill -9 resumes exactly from the last periodic checkpoint, a non-finite loss stops naming the
last good checkpoint and leaves it untouched, and a run's directory is never written over.

"Exactly" is checked against an uninterrupted run of the same command: the same weights bit for
bit, and the same training log (timings aside).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lantern.checkpoint import load_checkpoint
from lantern.cli.main import main
from lantern.training.distributed import Distributed
from lantern.training.ema import EMA
from lantern.training.loop import NonFiniteLoss, Updates, constant_schedule
from lantern.training.optim import make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection
from lantern.trm.compressor import CompressorConfig, CompressorPhase, train_compressor
from lantern.trm.datagen import DatagenConfig, generate_pairs
from lantern.trm.grpo import GRPOPhase
from lantern.trm.host_training import HostPhase, HostTrainConfig, train_host
from lantern.trm.internalize import InternalizePhase
from lantern.trm.problems import synthetic_problems, write_problems
from lantern.trm.training import TRMTrainConfig, TRMTrainer, train_trm


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Problems, a host, its compressor, its pairs and a TRM: what the later phases start from."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume")
    write_problems(root / "one_digit.jsonl", synthetic_problems("add", 1, 40))  # GRPO finds answers
    write_problems(root / "two_digit.jsonl", synthetic_problems("add", 2, 20))  # two stages
    write_problems(root / "train.jsonl", synthetic_problems("add", 1, 40)
                   + synthetic_problems("add", 2, 20))
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / "host"),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=100, batch_size=16, learning_rate=3e-3, warmup_steps=10,
                               eval_interval=100, eval_problems=2, device="cpu"), quiet=True)
    train_compressor(CompressorConfig(host=str(root / "host"), output_dir=str(root / "comp"),
                                      stage="1b", data=str(root / "train.jsonl"), d_compressed=8,
                                      num_epochs=1, num_samples=60), quiet=True)
    generate_pairs(DatagenConfig(host=str(root / "host"), dataset=str(root / "train.jsonl"),
                                 output_dir=str(root / "pairs"), num_samples=60), quiet=True)
    train_trm(TRMTrainConfig(data=str(root / "pairs"), output_dir=str(root / "trm"),
                             compressor_checkpoint=str(root / "comp" / "stage1b_best"),
                             num_epochs=1, n_latent_steps=1, n_deep_recursions=1,
                             n_supervision_steps=2, device="cpu"), quiet=True)
    return root


@dataclass
class Spec:
    """One phase: its command line, its phase class, and the weights its run leaves."""

    argv: Callable[[Path], list[str]]
    phase: type
    weights: Callable[[Path], dict[str, torch.Tensor]]
    results: tuple[str, ...]  # files only a finished run writes


def state_of(path: Path, *keys: str) -> dict[str, torch.Tensor]:
    data = load_checkpoint(path)
    return {f"{key}.{name}": value for key in keys for name, value in data[key].items()}


def host_argv(root: Path) -> list[str]:
    return ["trm", "host", "--problems", str(root / "train.jsonl"), "--hidden_size", "32",
            "--num_heads", "2", "--num_blocks", "1", "--mlp_hidden_size", "64", "--max_steps", "6",
            "--batch_size", "4", "--eval_interval", "3", "--eval_problems", "2", "--warmup_steps",
            "1", "--dropout", "0.1", "--device", "cpu"]


def compressor_argv(root: Path) -> list[str]:
    return ["trm", "compressor", "--host", str(root / "host"), "--stage", "1b", "--data",
            str(root / "train.jsonl"), "--d_compressed", "8", "--num_epochs", "3", "--batch_size",
            "96", "--num_samples", "40", "--learning_rate", "1e-2", "--device", "cpu"]


def trm_argv(root: Path) -> list[str]:
    return ["trm", "train", "--data", str(root / "pairs"), "--compressor_checkpoint",
            str(root / "comp" / "stage1b_best"), "--host", str(root / "host"), "--batch_size",
            "12", "--num_epochs", "2", "--n_latent_steps", "1", "--n_deep_recursions", "2",
            "--n_supervision_steps", "3", "--learning_rate", "1e-3", "--ema_decay", "0.9",
            "--device", "cpu"]


def grpo_argv(root: Path) -> list[str]:
    return ["trm", "grpo", "--host", str(root / "host"), "--trm_checkpoint", str(root / "trm"),
            "--compressor_checkpoint", str(root / "comp" / "stage1b_best"), "--dataset",
            str(root / "one_digit.jsonl"), "--num_samples", "12", "--num_epochs", "2",
            "--problems_per_step", "3", "--group_size", "4", "--max_new_tokens", "4",
            "--learning_rate", "1e-2", "--kl_coef", "0.1", "--device", "cpu"]


def internalize_argv(root: Path) -> list[str]:
    return ["trm", "internalize", "--host", str(root / "host"), "--problems",
            str(root / "two_digit.jsonl"), "--val_problems", str(root / "two_digit.jsonl"),
            "--eval_problems", "2", "--steps_per_stage", "3", "--batch_size", "4",
            "--warmup_steps", "1", "--device", "cpu"]


def compressor_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "stage1b_final.safetensors")


def host_weights(out: Path) -> dict[str, torch.Tensor]:
    return {**state_of(out / "final_model.pt", "model_state_dict"),
            **load_file(out / "latent_slot.safetensors")}


def trm_weights(out: Path) -> dict[str, torch.Tensor]:
    return state_of(out / "final.pt", "model_state_dict", "raw_state_dict")  # EMA and live


def grpo_weights(out: Path) -> dict[str, torch.Tensor]:
    return {**state_of(out / "trm.pt", "model_state_dict"),
            **load_file(out / "compressor.safetensors")}


def internalize_weights(out: Path) -> dict[str, torch.Tensor]:
    return state_of(out / "final_model.pt", "model_state_dict")


PHASES = {
    "compressor": Spec(compressor_argv, CompressorPhase, compressor_weights,
                       ("stage1b_final.safetensors",)),
    "host": Spec(host_argv, HostPhase, host_weights, ("final_model.pt",)),
    "trm": Spec(trm_argv, TRMTrainer, trm_weights, ("final.pt",)),
    "grpo": Spec(grpo_argv, GRPOPhase, grpo_weights, ("trm.pt",)),
    "internalize": Spec(internalize_argv, InternalizePhase, internalize_weights,
                        ("final_model.pt",)),
}
SAVE_EVERY = ["--save_interval", "2"]


def after_step(monkeypatch, phase: type, index: int, action: Callable[[], None]) -> None:
    """Run `action` inside step `index` (0-based), once its updates are done and before the
    loop has logged or saved it: a signal that arrives mid-step."""
    original = phase.step

    def step(self, i, updates):
        records = original(self, i, updates)
        if i == index:
            action()
        return records

    monkeypatch.setattr(phase, "step", step)


def during_step(monkeypatch, phase: type, index: int, action: Callable[[], None]) -> None:
    """Run `action` inside step `index` right after its first optimizer update: a signal that
    arrives while a step that makes several updates (TRM, GRPO) is half done."""
    armed = []
    original_step, original_update = phase.step, Updates.__call__

    def step(self, i, updates):
        armed[:] = [i == index]
        return original_step(self, i, updates)

    def update(self, loss):
        value = original_update(self, loss)
        if armed == [True]:
            armed[:] = [False]
            action()
        return value

    monkeypatch.setattr(phase, "step", step)
    monkeypatch.setattr(Updates, "__call__", update)


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, file) of the run's resumable checkpoints, by step."""
    return sorted((int(p.stem.rsplit("_", 1)[1]), p) for p in out.glob("*checkpoint_step_*.pt"))


def log_without_timings(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


_references: dict[str, Path] = {}


def reference(name: str, root: Path) -> Path:
    """The uninterrupted run of a phase (made once per module)."""
    if name not in _references:
        out = root / f"reference_{name}"
        assert main([*PHASES[name].argv(root), *SAVE_EVERY, "--output_dir", str(out)]) == 0
        _references[name] = out
    return _references[name]


def assert_same_run(out: Path, ref: Path, spec: Spec) -> None:
    got, want = spec.weights(out), spec.weights(ref)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    assert log_without_timings(out) == log_without_timings(ref)


def interrupted(name: str, root: Path, out: Path, monkeypatch, capsys, index: int) -> str:
    """Run a phase with Ctrl-C arriving during step `index`; returns what it printed."""
    spec = PHASES[name]
    during_step(monkeypatch, spec.phase, index, lambda: signal.raise_signal(signal.SIGINT))
    capsys.readouterr()
    assert main([*spec.argv(root), *SAVE_EVERY, "--output_dir", str(out)]) == 130
    monkeypatch.undo()
    printed = capsys.readouterr()
    return printed.out + printed.err


@pytest.mark.parametrize("name", PHASES)
def test_ctrl_c_saves_and_resumes_exactly(name, root, tmp_path, monkeypatch, capsys):
    spec, out = PHASES[name], tmp_path / "run"
    printed = interrupted(name, root, out, monkeypatch, capsys, index=2)
    # The step under way finishes (step 3 of a save-every-2 run) and is saved.
    saved = checkpoints(out)
    assert [step for step, _ in saved] == [2, 3]
    assert f"Interrupted: saved {saved[-1][1]}; continue with `lantern trm {spec.argv(root)[1]} " \
           f"--resume_from {out}`" in printed
    assert not any((out / name).exists() for name in spec.results)
    stopped = load_checkpoint(saved[-1][1])["model_state_dict"]
    assert main(["trm", spec.argv(root)[1], "--resume_from", str(out)]) == 0
    ref = reference(name, root)
    assert_same_run(out, ref, spec)
    assert [step for step, _ in checkpoints(out)] == [step for step, _ in checkpoints(ref)][-2:]
    end = load_checkpoint(checkpoints(ref)[-1][1])["model_state_dict"]
    assert any(not torch.equal(stopped[k], end[k]) for k in end)  # the steps after it trained


@pytest.mark.parametrize("name", PHASES)
def test_kill_9_resumes_exactly_from_the_last_checkpoint(name, root, tmp_path, monkeypatch):
    """The process is killed during step 6, after the checkpoint of step 4 and the log lines of
    step 5 were written."""
    spec, out = PHASES[name], tmp_path / "run"
    after_step(monkeypatch, spec.phase, 5, lambda: os.kill(os.getpid(), signal.SIGKILL))
    child = os.fork()
    if child == 0:  # the run, killed by itself mid-step
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            main([*spec.argv(root), *SAVE_EVERY, "--output_dir", str(out)])
        finally:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    monkeypatch.undo()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert [step for step, _ in checkpoints(out)] == [2, 4]
    assert not any((out / name).exists() for name in spec.results)
    assert main(["trm", spec.argv(root)[1], "--resume_from", str(out)]) == 0
    assert_same_run(out, reference(name, root), spec)


@pytest.mark.parametrize("name", PHASES)
def test_nonfinite_loss_stops_and_names_the_last_good_checkpoint(name, root, tmp_path,
                                                                 monkeypatch, capsys):
    spec, out = PHASES[name], tmp_path / "run"
    interrupted(name, root, out, monkeypatch, capsys, index=2)  # stops saved at step 3
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "training_log.jsonl"}
    saved = checkpoints(out)[-1][1]
    assert saved.name.endswith("checkpoint_step_3.pt")
    code = main(["trm", spec.argv(root)[1], "--resume_from", str(out), "--learning_rate", "1e30",
                 "--save_interval", "1000"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("lantern: error: loss became ") and f"last good checkpoint: {saved}" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "training_log.jsonl"}
    assert after == before  # the checkpoint is untouched and nothing was written after it


@pytest.mark.parametrize("name", PHASES)
def test_an_interrupted_run_is_not_written_over(name, root, tmp_path, monkeypatch, capsys):
    spec, out = PHASES[name], tmp_path / "run"
    interrupted(name, root, out, monkeypatch, capsys, index=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*spec.argv(root), "--output_dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lantern: error:") and err.count("\n") == 1, err
    assert "--overwrite" in err and f"--resume_from {out}" in err
    assert main(["trm", spec.argv(root)[1], "--resume_from", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give one" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_nonfinite_loss_never_reaches_the_weights():
    """The check comes before the backward pass: no gradient, no optimizer state, no change."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, OptimizerSection(1e-2))
    ema = EMA(model, 0.5)
    updates = Updates(model, optimizer, Precision(PrecisionSection("cpu", "float32")),
                      constant_schedule(1e-2), 1.0, ema, Distributed())
    x = torch.randn(2, 4)
    updates(model(x).square().mean())  # a finite loss steps
    stepped = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(stepped[k], before[k]) for k in before)
    moments = {k: v.clone() for k, v in optimizer.state[model.weight].items()}
    shadow = [s.clone() for s in ema.shadow]
    with pytest.raises(NonFiniteLoss):
        updates(model(x).square().mean() * float("inf"))
    assert all(torch.equal(model.state_dict()[k], stepped[k]) for k in stepped)
    assert all(torch.equal(optimizer.state[model.weight][k], v) for k, v in moments.items())
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow, shadow, strict=True))
    assert model.weight.grad is None and updates.count == 1
