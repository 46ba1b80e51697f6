"""Stepwise internalization: the rows of each stage, removal smoothing, a fresh optimizer and
schedule per stage, the no-think accuracy it buys, and the bad-input paths."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from lantern.cli.main import main
from lantern.trm.host import load_host
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.internalize import InternalizeConfig, internalize, stage_batch
from lantern.trm.problems import Problem, is_held_out, write_problems


def two_step_sums() -> list[Problem]:
    """One-digit sums whose thinking is two steps: the sum written out, then its value."""
    return [Problem(f"{a}+{b}=", f"{a}+{b};={a + b:02d}", f"{a + b:02d}")
            for a in range(10) for b in range(10) if not is_held_out(a, b)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("internalize")
    write_problems(root / "train.jsonl", two_step_sums())
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / "host"),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=150, batch_size=16, learning_rate=3e-3, warmup_steps=10,
                               eval_interval=150, eval_problems=2, device="cpu"), quiet=True)
    return root


def test_stage_rows_and_targets_remove_steps_from_the_left(workdir):
    host = load_host(workdir / "host")
    problems = [Problem("3+4=", "3;+4;=07", "07"), Problem("9+9=", "99;+;=18", "18")]
    for stage in (1, 2, 3):
        ids, targets, removed = stage_batch(host, problems, stage, 0.0, random.Random(0))
        assert removed == [stage, stage]
        for row, p in enumerate(problems):
            rest = ";".join(p.thinking.split(";")[stage:])
            text = re.sub(r"(<pad>)*$", "", host.tokenizer.decode(ids[row].tolist()))
            assert text == f"{p.question}<think>{rest}</think>{p.answer}<eos>"
            scored = (targets[row] != -100).nonzero().flatten().tolist()
            first = len(p.question)  # the <think> position predicts the first token after it
            assert scored == list(range(first, first + len(rest) + 1 + len(p.answer) + 1))
            assert host.tokenizer.decode(targets[row, scored].tolist()) == \
                f"{rest}</think>{p.answer}<eos>"


def test_removal_smoothing_draws_follow_the_capped_exponential(workdir):
    host = load_host(workdir / "host")
    problem = Problem("3+4=", "3;+4;=07", "07")  # three steps: stage 1 leaves two to draw from
    lam, draws = 0.7, 3000
    ids, _, removed = stage_batch(host, [problem] * draws, 1, lam, random.Random(7))
    counts = Counter(r - 1 for r in removed)
    expected = {0: 1 - math.exp(-lam), 1: (1 - math.exp(-lam)) * math.exp(-lam),
                2: math.exp(-2 * lam)}  # the tail from 2 on is capped onto 2
    assert set(counts) <= set(expected)
    for extra, p in expected.items():
        assert abs(counts[extra] / draws - p) < 4 * math.sqrt(p * (1 - p) / draws), (extra, counts)
    for row in (removed.index(1), removed.index(2), removed.index(3)):  # each row removes its own
        rest = ";".join(problem.steps[removed[row]:])
        assert host.tokenizer.decode(ids[row].tolist()).startswith(f"3+4=<think>{rest}</think>07")
    _, _, last = stage_batch(host, [problem] * 50, 3, lam, random.Random(7))
    assert last == [3] * 50


def test_every_stage_starts_a_fresh_optimizer_and_schedule(workdir, tmp_path):
    """Stage 2's update is a fresh AdamW's first update (lr x sign of the gradient), computed
    here by hand, not a continuation of stage 1's moments."""
    problem = two_step_sums()[5]
    write_problems(tmp_path / "one.jsonl", [problem])
    lr = 1e-3
    internalize(InternalizeConfig(host=str(workdir / "host"), problems=str(tmp_path / "one.jsonl"),
                                  output_dir=str(tmp_path / "a"), steps_per_stage=1, batch_size=2,
                                  learning_rate=lr, min_lr=lr, warmup_steps=0, weight_decay=0.0,
                                  grad_clip=0.0, removal_smoothing=0.0, device="cpu",
                                  dtype="float32"), quiet=True)
    host = load_host(workdir / "host")
    model = host.model.requires_grad_(True)
    for rest in ("=" + problem.answer, ""):  # stage 1 keeps the last step; stage 2 none
        ids = torch.tensor([host.encode(f"{problem.question}<think>{rest}</think>{problem.answer}")
                            + [host.eos_id]])
        logits, _ = model(ids)
        first = len(problem.question)
        loss = F.cross_entropy(logits[0, first:-1], ids[0, first + 1:])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for param, grad in zip(model.parameters(), grads, strict=True):
                param -= lr * grad / (grad.abs() + 1e-8)
    trained = load_host(tmp_path / "a").model
    expected = torch.cat([p.detach().flatten() for p in model.parameters()])
    got = torch.cat([p.flatten() for p in trained.parameters()])
    assert ((got - expected).abs() < 1e-2 * lr).float().mean() > 0.95

    internalize(InternalizeConfig(host=str(workdir / "host"), problems=str(tmp_path / "one.jsonl"),
                                  output_dir=str(tmp_path / "b"), steps_per_stage=3, batch_size=2,
                                  learning_rate=lr, min_lr=lr / 10, warmup_steps=1, device="cpu"),
                  quiet=True)
    records = [json.loads(line) for line in (tmp_path / "b" / "training_log.jsonl").open()]
    # Warmup 1, then cosine over the stage's 3 steps: lr, lr, halfway to min_lr; in each stage.
    assert [r["stage"] for r in records] == [1, 1, 1, 2, 2, 2]
    assert [r["lr"] for r in records] == pytest.approx([lr, lr, (lr + lr / 10) / 2] * 2)


def test_internalization_raises_no_think_accuracy(workdir, capsys):
    def no_think_accuracy(host: str, name: str) -> float:
        assert main(["trm", "eval", "--host", host, "--dataset", str(workdir / "train.jsonl"),
                     "--modes", "no_think", "--num_samples", "60", "--max_new_tokens", "8",
                     "--output", str(workdir / f"{name}.json"), "--device", "cpu"]) == 0
        return json.loads((workdir / f"{name}.json").read_text())["modes"]["no_think"]["exact_match"]

    assert main(["trm", "internalize", "--host", str(workdir / "host"), "--problems",
                 str(workdir / "train.jsonl"), "--val_problems", str(workdir / "train.jsonl"),
                 "--eval_problems", "20", "--steps_per_stage", "60", "--batch_size", "16",
                 "--learning_rate", "2e-3", "--warmup_steps", "5", "--output_dir",
                 str(workdir / "internalized"), "--device", "cpu"]) == 0
    before = no_think_accuracy(str(workdir / "host"), "before")
    after = no_think_accuracy(str(workdir / "internalized"), "after")
    assert after >= before + 0.3, (before, after)
    records = [json.loads(line) for line in (workdir / "internalized" / "training_log.jsonl").open()]
    evaluated = [r for r in records if "no_think_accuracy" in r]
    assert [r["stage"] for r in evaluated] == [0, 1, 2]
    assert evaluated[-1]["generated_tokens"] < evaluated[0]["generated_tokens"]
    assert load_host(workdir / "internalized").slot is not None  # the slot modes still load


def test_bad_input_is_one_line(workdir, tmp_path, capsys):
    mixed = tmp_path / "mixed.jsonl"
    write_problems(mixed, [*two_step_sums()[:3], Problem("1+1=", "1+1=02", "02")])
    write_problems(tmp_path / "bare.jsonl", [*two_step_sums()[:3], Problem("1+1=", "", "02")])
    write_problems(tmp_path / "odd.jsonl", [*two_step_sums()[:3], Problem("3x4=", "3x4;=12", "12")])
    run = workdir / "internalized"
    if not (run / "final_model.pt").exists():
        internalize(InternalizeConfig(host=str(workdir / "host"), problems=str(workdir / "train.jsonl"),
                                      output_dir=str(run), steps_per_stage=1, device="cpu"), quiet=True)
    before = {p.name: p.read_bytes() for d in (run, workdir / "host") for p in d.iterdir()}
    base = ["trm", "internalize", "--host", str(workdir / "host"), "--steps_per_stage", "1",
            "--device", "cpu"]
    for args, reason in (
            (["--problems", str(mixed), "--output_dir", str(tmp_path / "out")],
             "different numbers of reasoning steps"),
            (["--problems", str(tmp_path / "bare.jsonl"), "--output_dir", str(tmp_path / "out")],
             "'1+1=' has no thinking"),
            (["--problems", str(tmp_path / "odd.jsonl"), "--output_dir", str(tmp_path / "out")],
             "vocabulary lacks: 'x'"),
            (["--problems", str(workdir / "train.jsonl"), "--output_dir", str(run)],
             "already holds a trained host; pass --overwrite"),
            (["--problems", str(workdir / "train.jsonl"), "--output_dir", str(workdir / "host"),
              "--overwrite"], "holds the --host it starts from"),
            (["--problems", str(workdir / "train.jsonl"), "--output_dir", str(tmp_path / "out"),
              "--eval_problems", "5"], "give --val_problems")):
        capsys.readouterr()
        assert main(base + args) == 1
        err = capsys.readouterr().err
        assert err.startswith("lantern: error:") and err.count("\n") == 1 and reason in err, err
    assert {p.name: p.read_bytes() for d in (run, workdir / "host") for p in d.iterdir()} == before
    assert not (tmp_path / "out").exists()
