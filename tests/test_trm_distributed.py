"""Datagen and TRM training under torchrun (2 CPU processes, gloo) do what one process does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lantern.checkpoint import load_checkpoint
from lantern.trm.compressor import CompressorConfig, train_compressor
from lantern.trm.datagen import DatagenConfig, generate_pairs, load_pairs
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.problems import synthetic_problems, write_problems
from lantern.trm.training import TRMTrainConfig, train_trm


def test_two_processes_make_the_same_pairs(tmp_path):
    write_problems(tmp_path / "p.jsonl", synthetic_problems("add", 2, 30))
    train_host(HostTrainConfig(problems=str(tmp_path / "p.jsonl"), output_dir=str(tmp_path / "h"),
                               hidden_size=32, num_heads=2, num_blocks=1, mlp_hidden_size=64,
                               max_steps=1, batch_size=2, eval_interval=1, eval_problems=1,
                               device="cpu"), quiet=True)
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--host", str(tmp_path / "h"), "--dataset", str(tmp_path / "p.jsonl"),
            "--num_samples", "30", "--checkpoint_every", "7", "--batch_size", "4"]
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lantern.trm",
                           "datagen", *args, "--output_dir", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    one, _ = generate_pairs(DatagenConfig(host=str(tmp_path / "h"), dataset=str(tmp_path / "p.jsonl"),
                                          output_dir=str(tmp_path / "one"), num_samples=30,
                                          checkpoint_every=7, batch_size=4), quiet=True)
    two = load_pairs(tmp_path / "two")
    assert two.problems == one.problems and len(two) == 30
    assert torch.equal(two.hidden_post, one.hidden_post)
    assert all(torch.equal(a, b) for a, b in zip(two.hidden_pre, one.hidden_pre, strict=True))
    # A changed setting is refused once, by every rank, with one line.
    again = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lantern.trm",
                            "datagen", *args[:-1], "5", "--output_dir", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0
    assert again.stderr.count("lantern: error: ") == 1 and "batch_size was 4, now 5" in again.stderr


@pytest.mark.parametrize("per_step", [True, False])
def test_two_processes_train_the_trm_like_one(tmp_path, per_step):
    """2 ranks x half of each batch = 1 rank x the whole batch, answer loss and halting included
    (the ranks must agree on when a batch halts)."""
    write_problems(tmp_path / "p.jsonl", synthetic_problems("add", 2, 40))
    host = tmp_path / "h"
    train_host(HostTrainConfig(problems=str(tmp_path / "p.jsonl"), output_dir=str(host),
                               hidden_size=32, num_heads=2, num_blocks=1, mlp_hidden_size=64,
                               max_steps=2, batch_size=4, eval_interval=2, eval_problems=1,
                               device="cpu"), quiet=True)
    train_compressor(CompressorConfig(host=str(host), output_dir=str(tmp_path / "c"), stage="1b",
                                      data=str(tmp_path / "p.jsonl"), d_compressed=8, num_epochs=1,
                                      num_samples=40), quiet=True)
    generate_pairs(DatagenConfig(host=str(host), dataset=str(tmp_path / "p.jsonl"),
                                 output_dir=str(tmp_path / "pairs"), num_samples=40), quiet=True)
    settings = dict(data=str(tmp_path / "pairs"), compressor_checkpoint=str(tmp_path / "c" / "stage1b_best"),
                    host=str(host), batch_size=12, num_epochs=2, n_latent_steps=1, n_deep_recursions=2,
                    n_supervision_steps=3, learning_rate=1e-3, bce_halt_loss=True, halt_threshold=0.0,
                    per_step_updates=per_step, device="cpu")
    flags = [f"--{k}" if v is True else f"--no-{k}" if v is False else f"--{k}={v}"
             for k, v in settings.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node",
                           "2", "-m", "lantern.trm", "train", *flags, "--output_dir", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.set_num_threads(1)
    one = train_trm(TRMTrainConfig(**settings, output_dir=str(tmp_path / "one")), quiet=True)
    two = load_checkpoint(tmp_path / "two" / "final.pt")
    ref = load_checkpoint(tmp_path / "one" / "final.pt")
    assert two["metrics"]["optimizer_steps"] == one["optimizer_steps"]
    if per_step:
        assert one["optimizer_steps"] < one["planned_optimizer_steps"]  # some batches halted early
    d = 8  # the key bias's true gradient is exactly 0 (softmax ignores a shift shared by all keys),
    # so Adam turns its rounding noise into full-size steps: it is the one part left out
    for name, value in ref["raw_state_dict"].items():
        got = two["raw_state_dict"][name]
        if name.endswith("in_proj_bias"):
            value, got = torch.cat([value[:d], value[2 * d:]]), torch.cat([got[:d], got[2 * d:]])
        torch.testing.assert_close(got, value, rtol=0, atol=1e-6, msg=name)
    assert ref["raw_state_dict"]["output.weight"].abs().sum() > 0  # it trained (starts at zero)
