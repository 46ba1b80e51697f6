"""Datagen under torchrun (2 CPU processes, gloo) makes the same pairs as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from lantern.trm.datagen import DatagenConfig, generate_pairs, load_pairs
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.problems import synthetic_problems, write_problems


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
