"""The learning-rate range test, the warmup-stable-decay schedule and presets that bring their own
training recipe."""

from __future__ import annotations

import json
import math

import pytest

from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.training.lr_find import find_learning_rate, rates
from lantern.training.optim import learning_rate_at
from lantern.training.settings import TrainConfig


def small_run(tmp_path, tiny_text, **overrides) -> TrainConfig:
    data = tmp_path / "text.txt"
    data.write_text(tiny_text * 20)
    values = dict(config="nano", hidden_size=32, num_heads=2, num_blocks=1, seq_length=32,
                  batch_size=4, data_path=str(data), output_dir=str(tmp_path / "never"))
    return TrainConfig(**{**values, **overrides})


def test_rates_are_geometric_from_start_to_end():
    got = rates(1e-5, 1e-1, 5)
    assert got == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    with pytest.raises(LanternError, match="--start_lr"):
        rates(1e-1, 1e-3, 10)


def test_range_test_records_each_rate_smooths_and_suggests_below_the_minimum(tmp_path, tiny_text):
    result = find_learning_rate(small_run(tmp_path, tiny_text), 1e-4, 1e-1, 30, quiet=True)
    assert result.learning_rates == rates(1e-4, 1e-1, 30)[: len(result.learning_rates)]
    average, expected = 0.0, []
    for i, loss in enumerate(result.losses):  # debiased exponential average, written out
        average = 0.9 * average + 0.1 * loss
        expected.append(average / (1 - 0.9 ** (i + 1)))
    assert result.smoothed == pytest.approx(expected, rel=1e-9)
    lowest = min(range(len(expected)), key=expected.__getitem__)
    assert lowest > 0
    falls = [(expected[i] - expected[i + 1], result.learning_rates[i]) for i in range(lowest)]
    assert result.suggestion == max(falls)[1]  # geometric rates: the steepest fall per log-rate
    assert result.losses[-1] < result.losses[0] - 0.3  # the model learned: the rates were applied
    assert not (tmp_path / "never").exists()  # a throw-away run writes no run directory


def test_range_test_stops_once_the_loss_diverges(tmp_path, tiny_text):
    result = find_learning_rate(small_run(tmp_path, tiny_text, grad_clip=0.0), 1e-3, 1e4, 40,
                                quiet=True)
    assert len(result.learning_rates) < 40
    last = result.smoothed[-1]
    assert not math.isfinite(result.losses[-1]) or last > 4 * min(result.smoothed)


def test_lr_find_command_prints_a_suggestion_and_writes_the_curve(tmp_path, tiny_text, capsys):
    data = tmp_path / "text.txt"
    data.write_text(tiny_text * 20)
    plot = tmp_path / "curve.png"
    code = main(["lr-find", "--config", "nano", "--hidden_size", "32", "--num_blocks", "1",
                 "--data_path", str(data), "--seq_length", "32", "--batch_size", "4",
                 "--find_steps", "12", "--start_lr", "1e-4", "--end_lr", "1e-1",
                 "--plot", str(plot)])
    assert code == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in plot.with_suffix(".jsonl").read_text().splitlines()]
    assert len(rows) == 12 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    smoothed = [row["smoothed"] for row in rows]
    lowest = smoothed.index(min(smoothed))
    steepest = max(range(lowest), key=lambda i: smoothed[i] - smoothed[i + 1])
    assert f"suggested --learning_rate {rows[steepest]['learning_rate']:.2e}" in out


def test_lr_find_refuses_a_reversed_range_in_one_line(tmp_path, tiny_text, capsys):
    data = tmp_path / "text.txt"
    data.write_text(tiny_text)
    assert main(["lr-find", "--data_path", str(data), "--start_lr", "1", "--end_lr", "0.1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--start_lr" in err[0]


def test_wsd_holds_the_peak_then_falls_linearly_to_the_floor():
    lrs = [learning_rate_at(s, 1.0, 0.1, 10, 100, "wsd", 0.3) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warmup
    assert lrs[10:70] == [1.0] * 60  # stable until the last 30 steps
    for step in range(70, 100):
        assert lrs[step] == pytest.approx(1.0 - 0.9 * (step - 70) / 30)
    assert lrs[100] == pytest.approx(0.1)


def test_fast_preset_brings_its_recipe_and_a_given_flag_wins():
    fast = TrainConfig(config="fast")
    assert (fast.learning_rate, fast.lr_schedule, fast.max_steps) == (3e-3, "wsd", 650)
    assert TrainConfig(config="fast", learning_rate=1e-3, loop={"max_steps": 5}).learning_rate == 1e-3
    assert TrainConfig(config="fast", loop={"max_steps": 5}).max_steps == 5
    assert TrainConfig(config="nano").lr_schedule == "cosine"
    with pytest.raises(LanternError, match="--lr_schedule wsd"):
        TrainConfig(config="nano", decay_fraction=0.5)
