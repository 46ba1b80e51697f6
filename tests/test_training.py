"""Training end to end on tiny models: outputs, logs, schedule, exact resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lantern.checkpoint import load_checkpoint, load_model
from lantern.errors import LanternError
from lantern.tokenizers import load_tokenizer
from lantern.training.optim import learning_rate_at, make_optimizer
from lantern.training.trainer import TrainConfig, resolve_resume, train
from tests.conftest import tiny_config

TINY = dict(config="nano", hidden_size=32, num_heads=2, num_blocks=2, seq_length=16, batch_size=4,
            corpus_chars=20_000, eval_batches=2, sample_length=20, num_samples=1, log_interval=5)


def tiny_train(out: Path, **overrides) -> dict:
    return train(TrainConfig(output_dir=str(out), **{**TINY, **overrides}), quiet=True)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    lrs = [learning_rate_at(s, 1e-3, 1e-4, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(1e-4)


def test_no_weight_decay_on_norms_and_biases():
    from lantern.models.lantern_model import LANTERNModel

    model = LANTERNModel(tiny_config())
    decayed, plain = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99)).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])


def test_training_writes_every_output_the_guide_names(tmp_path):
    result = tiny_train(tmp_path, max_steps=20, eval_interval=10, save_interval=10)
    for name in ("checkpoint_step_10.pt", "checkpoint_step_20.pt", "best_model.pt",
                 "final_model.pt", "training_log.jsonl", "tokenizer.json", "config.json",
                 "model.safetensors", "loss_curve.png"):
        assert (tmp_path / name).is_file(), name
    for name in ("checkpoint_step_10.pt", "best_model.pt", "final_model.pt"):
        data = torch.load(tmp_path / name, weights_only=True)
        assert "model_state_dict" in data
    records = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    train_lines = [r for r in records if "train_loss" in r]
    assert {"step", "epoch", "train_loss", "learning_rate", "elapsed_time",
            "tokens_per_second"} <= set(train_lines[0])
    val_lines = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in val_lines] == [10, 20]
    assert {"val_perplexity", "val_accuracy"} <= set(val_lines[0])
    assert train_lines[-1]["train_loss"] < train_lines[0]["train_loss"]
    assert result["samples"] and isinstance(result["samples"][0], str)


def test_vocabulary_is_the_tokenizers_and_travels_with_the_model(tmp_path):
    tiny_train(tmp_path, max_steps=4, eval_interval=4, save_interval=4)
    model, tokenizer, _ = load_model(tmp_path)
    assert model.config.vocab_size == tokenizer.vocab_size < 100  # never a default 32000
    assert load_tokenizer(tmp_path).to_json() == tokenizer.to_json()


def test_train_and_validation_files_share_one_vocabulary(tmp_path):
    (tmp_path / "train.txt").write_text("abc abc abc " * 50)
    (tmp_path / "val.txt").write_text("xyz abc " * 50)
    out = tmp_path / "run"
    tiny_train(out, data_path=str(tmp_path / "train.txt"), val_data_path=str(tmp_path / "val.txt"),
               max_steps=2, eval_interval=2, save_interval=2)
    tokenizer = load_tokenizer(out)
    assert tokenizer.token_to_id("<unk>") not in tokenizer.encode("xyz abc")


def test_bpe_tokenizer_training(tmp_path):
    tiny_train(tmp_path, tokenizer="bpe", vocab_size=300, max_steps=2, eval_interval=2,
               save_interval=2)
    _, tokenizer, _ = load_model(tmp_path)
    assert tokenizer.kind == "bpe" and tokenizer.vocab_size <= 300


def test_jsonl_token_files_are_accepted(tmp_path):
    tiny_train(tmp_path / "a", max_steps=1, eval_interval=1, save_interval=1)
    tokenizer = load_tokenizer(tmp_path / "a")
    rows = [tokenizer.encode("the cat sat on the mat. " * 8) for _ in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tiny_train(tmp_path / "b", data_path=str(tmp_path / "train.jsonl"),
               tokenizer=str(tmp_path / "a" / "tokenizer.json"), max_steps=2, eval_interval=2,
               save_interval=2)
    assert load_model(tmp_path / "b")[0].config.vocab_size == tokenizer.vocab_size


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    settings = dict(max_steps=12, eval_interval=4, save_interval=6, dropout=0.1, grad_accum=2)
    tiny_train(tmp_path / "full", **settings)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "checkpoint_step_6.pt").write_bytes(
        (tmp_path / "full" / "checkpoint_step_6.pt").read_bytes())
    cfg, _ = resolve_resume({"resume_from": str(interrupted)})
    assert cfg.max_steps == 12 and cfg.output_dir == str(interrupted)
    train(cfg, quiet=True)
    full = load_checkpoint(tmp_path / "full" / "final_model.pt")["model_state_dict"]
    resumed = load_checkpoint(interrupted / "final_model.pt")["model_state_dict"]
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_resume_needs_a_full_checkpoint(tmp_path):
    tiny_train(tmp_path, max_steps=2, eval_interval=2, save_interval=2)
    with pytest.raises(LanternError, match="weights only"):
        resolve_resume({"resume_from": str(tmp_path / "final_model.pt")})


def test_an_existing_run_is_never_overwritten_without_asking(tmp_path):
    tiny_train(tmp_path, max_steps=2, eval_interval=2, save_interval=2)
    before = (tmp_path / "final_model.pt").read_bytes()
    with pytest.raises(LanternError, match="already holds a training run"):
        tiny_train(tmp_path, max_steps=4, eval_interval=2, save_interval=2)
    assert (tmp_path / "final_model.pt").read_bytes() == before
    tiny_train(tmp_path, max_steps=3, eval_interval=3, save_interval=3, overwrite=True)
    assert load_checkpoint(tmp_path / "final_model.pt")["step"] == 3


def test_ctrl_c_saves_a_checkpoint_then_exits(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lantern", "train", "--config", "nano", "--hidden_size", "32",
           "--num_heads", "2", "--seq_length", "16", "--batch_size", "4", "--corpus_chars",
           "20000", "--max_steps", "100000", "--log_interval", "5", "--eval_interval", "100000",
           "--save_interval", "100000", "--output_dir", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("Iter"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in rest and "resume_from" in rest
    saved = list(out.glob("checkpoint_step_*.pt"))
    assert len(saved) == 1 and load_checkpoint(saved[0])["step"] >= 5
