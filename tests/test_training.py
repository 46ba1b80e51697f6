"""Training end to end on tiny models: outputs, logs, schedule, exact resume, Ctrl-C, the
trainer's parts (config sections, parameter groups, precision, EMA) and the defects of issue 9
(Ctrl-C between micro-batches, non-finite losses, RNG states, float16 scaling, weight decay,
durable writes), each tested against behaviour the previous trainer (db17e2b) did not have."""

from __future__ import annotations

import json
import math
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
from lantern.training.optim import learning_rate_at, parameter_groups
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


def test_weight_decay_only_on_linear_matrices():
    """nanoGPT's rule (issue 9, defect 8): the previous trainer decayed every 2-D parameter,
    including the embedding (tied to the head), the position table and the re-injection gate."""
    from lantern.models.lantern_model import LANTERNModel

    model = LANTERNModel(tiny_config(position="learned", reinject_input=True))
    names = {id(p): n for n, p in model.named_parameters()}
    decay, plain = parameter_groups(model)
    block = [f"transformer.blocks.{i}.{m}.weight" for i in range(2)
             for m in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")]
    assert sorted(names[id(p)] for p in decay) == sorted(block)
    assert {"embed_tokens.weight", "positions.table", "transformer.reinject_gate",
            "transformer.norm.weight", "transformer.blocks.0.attn.qkv.bias",
            "transformer.blocks.1.mlp_norm.weight"} <= {names[id(p)] for p in plain}
    assert len(decay) + len(plain) == len(list(model.parameters()))


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
    assert model.config.vocab_size == tokenizer.vocab_size < 1000  # never a default 32000
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


TINY_FLAGS = ["--config", "nano", "--hidden_size", "32", "--num_heads", "2", "--num_blocks", "2",
              "--seq_length", "16", "--batch_size", "4", "--corpus_chars", "20000",
              "--eval_batches", "2", "--sample_length", "8", "--num_samples", "0", "--device", "cpu"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_ctrl_c_saves_at_a_step_boundary_and_resumes_exactly(tmp_path):
    """Ctrl-C saves a checkpoint, says how to resume, and exits 130. Issue 9, defect 3: with
    --grad_accum 4 a Ctrl-C almost always lands inside a step. The previous trainer saved that
    half-done step's data and dropout positions, so the resumed run drifted; now the step
    finishes and the checkpoint is taken at its boundary."""
    settings = dict(max_steps=200, grad_accum=4, dropout=0.1, log_interval=2, eval_interval=1000,
                    save_interval=1000, sample_length=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess below: float sums depend on the thread count
    try:
        run_interrupted_and_resumed(tmp_path, settings)
    finally:
        torch.set_num_threads(threads)


def run_interrupted_and_resumed(tmp_path: Path, settings: dict) -> None:
    tiny_train(tmp_path / "full", **settings)
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "lantern", "train", *TINY_FLAGS, "--max_steps", "200",
           "--grad_accum", "4", "--dropout", "0.1", "--log_interval", "2", "--eval_interval", "1000",
           "--save_interval", "1000", "--output_dir", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("Iter"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "Traceback" not in rest and "resume_from" in rest
    [saved] = out.glob("checkpoint_step_*.pt")
    assert 2 <= load_checkpoint(saved)["step"] < 200, "the interrupt came too late to test anything"
    cfg, _ = resolve_resume({"resume_from": str(out)})
    train(cfg, quiet=True)
    assert_same_weights(tmp_path / "full" / "final_model.pt", out / "final_model.pt")


def test_a_nonfinite_loss_stops_at_its_step_and_keeps_good_files(tmp_path, capsys):
    """Issue 9, defect 4: the previous trainer went on training on NaN weights (and wrote
    them over the final files). A learning rate of 1e30 makes step 6's loss NaN."""
    from lantern.cli.main import main

    tiny_train(tmp_path, max_steps=4, eval_interval=2, save_interval=2)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    argv = ["train", "--resume_from", str(tmp_path), "--max_steps", "10", "--learning_rate", "1e30",
            "--warmup_steps", "0", "--grad_clip", "0"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: loss became nan at step 6") and "\n" not in err, err
    assert err.endswith(f"last good checkpoint: {tmp_path / 'checkpoint_step_4.pt'}")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before

    assert main([*argv, "--skip_nonfinite", "2"]) == 1
    assert "after skipping 2 bad batch(es)" in capsys.readouterr().err
    skipped = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert [r["skipped_nonfinite"] for r in skipped if "skipped_nonfinite" in r] == [1, 2]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before


def test_a_skipped_nonfinite_batch_leaves_no_trace_in_the_weights(tmp_path):
    """--skip_nonfinite: a bad batch's NaN gradients (and those of the good micro-batch before it
    in the same step) must be dropped, so the run ends exactly where a run that never saw that
    step's batches ends. The bad batch is a real forward whose embeddings turn NaN."""
    from lantern.training.trainer import Trainer

    settings = dict(TINY, max_steps=6, grad_accum=2, dropout=0.0, eval_interval=6,
                    save_interval=6, sample_length=0, num_samples=0)
    bad_step = 3  # its micro-batches are the 5th and 6th batches drawn; the 6th is poisoned
    skipping = Trainer(TrainConfig(output_dir=str(tmp_path / "skips"), skip_nonfinite=1,
                                   **settings), quiet=True)
    forwards = []

    def poison(module, inputs, output):
        if module.training:
            forwards.append(1)
            if len(forwards) == 2 * bad_step:
                return output * float("nan")
        return None

    skipping.model.embed_tokens.register_forward_hook(poison)
    skipping.fit()
    assert len(forwards) == 2 * (settings["max_steps"] + 1)  # one step's batches were skipped

    never_saw = Trainer(TrainConfig(output_dir=str(tmp_path / "clean"), **settings), quiet=True)
    draw, drawn = never_saw.sampler.next_batch, []

    def skip_the_bad_steps_batches():
        drawn.append(1)
        if len(drawn) == 2 * bad_step - 1:
            draw(), draw()
        return draw()

    never_saw.sampler.next_batch = skip_the_bad_steps_batches
    never_saw.fit()
    assert_same_weights(tmp_path / "skips" / "final_model.pt", tmp_path / "clean" / "final_model.pt")
    log = (tmp_path / "skips" / "training_log.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log]
    assert [r for r in logged if "skipped_nonfinite" in r] == [{"step": bad_step, "skipped_nonfinite": 1}]


def test_checkpoints_hold_every_rng_state_in_use(tmp_path):
    """Issue 9, defect 5: CPU, and CUDA / MPS where they are in use, per process."""
    from lantern.training.checkpointer import capture_rng_state, restore_rng_state

    tiny_train(tmp_path, max_steps=2, eval_interval=2, save_interval=2)
    [rng] = load_checkpoint(tmp_path / "checkpoint_step_2.pt")["rng_per_rank"]
    assert set(rng) == set(capture_rng_state()) >= {"cpu"}
    state = capture_rng_state()
    first = torch.rand(3)
    if torch.cuda.is_available():
        first_cuda = torch.rand(3, device="cuda")
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), first)
    if torch.cuda.is_available():
        assert torch.equal(torch.rand(3, device="cuda"), first_cuda)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_with_dropout_is_exact(tmp_path):
    """The previous trainer re-seeded the CUDA generator on resume, so dropout masks changed."""
    settings = dict(max_steps=12, eval_interval=6, save_interval=6, dropout=0.2, device="cuda",
                    dtype="float32")
    tiny_train(tmp_path / "full", **settings)
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "checkpoint_step_6.pt").write_bytes(
        (tmp_path / "full" / "checkpoint_step_6.pt").read_bytes())
    train(resolve_resume({"resume_from": str(tmp_path / "resumed")})[0], quiet=True)
    assert_same_weights(tmp_path / "full" / "final_model.pt", tmp_path / "resumed" / "final_model.pt")


def test_float16_trains_with_a_gradient_scaler_and_resumes_exactly(tmp_path):
    """Issue 9, defect 6: float16 autocast without a scaler lets small gradients underflow.
    The scaler's state (scale, growth tracker) is saved and restored with the run."""
    settings = dict(max_steps=8, eval_interval=4, save_interval=4, dtype="float16", device="cpu")
    result = tiny_train(tmp_path / "full", **settings)
    scaler = load_checkpoint(tmp_path / "full" / "checkpoint_step_8.pt")["scaler"]
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 8  # 8 finite steps
    assert math.isfinite(result["val_loss"])
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / "checkpoint_step_4.pt").write_bytes(
        (tmp_path / "full" / "checkpoint_step_4.pt").read_bytes())
    train(resolve_resume({"resume_from": str(tmp_path / "resumed")})[0], quiet=True)
    assert_same_weights(tmp_path / "full" / "final_model.pt", tmp_path / "resumed" / "final_model.pt")
    fp32 = weights(tmp_path / "full" / "final_model.pt")
    assert all(v.dtype == torch.float32 for v in fp32.values())  # master weights stay float32


def test_a_dtype_the_device_cannot_run_is_refused():
    from lantern.training.precision import check_dtype_runs

    with pytest.raises(LanternError, match="unknown dtype"):
        train(TrainConfig(dtype="float8", device="cpu"))
    with pytest.raises(LanternError, match="does not run on meta"):
        check_dtype_runs(torch.device("meta"), torch.bfloat16)


def durability_calls(monkeypatch) -> list[tuple[str, str]]:
    """Every os.fsync (with the path its descriptor names) and os.replace (with its source and
    target), in the order they happen; the real calls still run."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append(("replace", f"{Path(src).resolve()} -> {Path(dst).resolve()}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_atomic_writes_fsync_the_file_then_rename_then_fsync_the_directory(tmp_path, monkeypatch):
    """Issue 9, defect 10: a rename is durable only once the directory is flushed too, and only
    a directory flushed after the rename holds the new entry."""
    from lantern import fileio

    tmp_path = tmp_path.resolve()
    calls = durability_calls(monkeypatch)
    fileio.atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    [(kind, written), *rest] = calls
    assert kind == "fsync" and Path(written).parent == tmp_path and written != str(tmp_path / "a.txt")
    assert rest == [("replace", f"{written} -> {tmp_path / 'a.txt'}"), ("fsync", str(tmp_path))]

    calls.clear()
    staged = tmp_path / "staged"
    (staged / "inner").mkdir(parents=True)
    (staged / "inner" / "w.bin").write_bytes(b"w")
    fileio.atomic_replace_directory(staged, tmp_path / "export")
    assert calls == [("fsync", str(staged / "inner" / "w.bin")), ("fsync", str(staged)),
                     ("replace", f"{staged} -> {tmp_path / 'export'}"), ("fsync", str(tmp_path))]


def test_settings_come_in_sections_and_flat_names_route_to_them():
    nested = TrainConfig(loop={"max_steps": 7, "grad_accum": 2}, optimizer={"learning_rate": 0.01})
    flat = TrainConfig(max_steps=7, grad_accum=2, learning_rate=0.01)
    assert nested == flat and flat.loop.max_steps == flat.max_steps == 7
    assert flat.to_dict()["optimizer"]["learning_rate"] == 0.01
    with pytest.raises(LanternError, match="unknown training setting 'max_step'"):
        TrainConfig(max_step=3)
    with pytest.raises(LanternError, match="unknown setting loop.learning_rate"):
        TrainConfig(loop={"learning_rate": 3})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_reproduces_a_run(tmp_path, suffix):
    from lantern.cli.main import main

    tiny_train(tmp_path / "a", max_steps=6, eval_interval=3, save_interval=3, dropout=0.1,
               learning_rate=3e-3, grad_accum=2)
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["loop"]["grad_accum"] == 2 and saved["optimizer"]["learning_rate"] == 3e-3
    config_file = tmp_path / "a" / "train_config.json"
    if suffix == ".yaml":
        import yaml

        config_file = tmp_path / "run.yaml"
        config_file.write_text(yaml.safe_dump(saved))
    assert main(["train", "--config_file", str(config_file), "--output_dir", str(tmp_path / "b")]) == 0
    assert_same_weights(tmp_path / "a" / "final_model.pt", tmp_path / "b" / "final_model.pt")
    assert main(["train", "--config_file", str(config_file), "--output_dir", str(tmp_path / "c"),
                 "--max_steps", "2", "--eval_interval", "2"]) == 0  # flags win over the file
    assert load_checkpoint(tmp_path / "c" / "final_model.pt")["step"] == 2


def test_a_runs_model_config_stands_for_its_training_settings(tmp_path, capsys):
    from lantern.cli.main import main

    tiny_train(tmp_path / "a", max_steps=2, eval_interval=2, save_interval=2, learning_rate=2e-3)
    assert main(["train", "--config_file", str(tmp_path / "a" / "config.json"), "--output_dir",
                 str(tmp_path / "b")]) == 0
    assert_same_weights(tmp_path / "a" / "final_model.pt", tmp_path / "b" / "final_model.pt")
    (tmp_path / "a" / "train_config.json").unlink()
    assert main(["train", "--config_file", str(tmp_path / "a" / "config.json")]) == 1
    assert "training settings are in a run's train_config.json" in capsys.readouterr().err


def test_resume_refuses_a_model_shape_flag(tmp_path):
    """The model (and its context) come from the checkpoint: a flag that disagrees is refused."""
    tiny_train(tmp_path, max_steps=2, eval_interval=2, save_interval=2)
    with pytest.raises(LanternError, match="--hidden_size cannot change when resuming"):
        resolve_resume({"resume_from": str(tmp_path), "hidden_size": 64})
    with pytest.raises(LanternError, match="--seq_length cannot change when resuming"):
        resolve_resume({"resume_from": str(tmp_path), "seq_length": 64})
    assert resolve_resume({"resume_from": str(tmp_path), "hidden_size": 32})[0].hidden_size == 32


def test_ema_follows_its_definition():
    """shadow_t = d * shadow_{t-1} + (1 - d) * w_t, checked against the formula by hand."""
    from lantern.training.ema import EMA

    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema = EMA(layer, decay=0.5)
    expected = torch.ones(1, 2)
    for value in (3.0, 5.0, -1.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        ema.update()
        expected = 0.5 * expected + 0.5 * value
    assert torch.equal(ema.state_dict()["weight"], expected)
    with ema.applied():
        assert torch.equal(layer.weight, expected)
    assert torch.equal(layer.weight, torch.full((1, 2), -1.0))


def test_eval_ema_evaluates_and_saves_the_average(tmp_path):
    result = tiny_train(tmp_path, max_steps=8, eval_interval=8, save_interval=8, ema_decay=0.9,
                        eval_ema=True, learning_rate=1e-2, warmup_steps=0)
    final = load_checkpoint(tmp_path / "final_model.pt")
    full = load_checkpoint(tmp_path / "checkpoint_step_8.pt")
    assert final["weights"] == "ema" and full["weights"] == "live"
    for name, tensor in full["ema_state_dict"].items():
        assert torch.equal(final["model_state_dict"][name], tensor)
    assert not torch.equal(final["model_state_dict"]["transformer.norm.weight"],
                           full["model_state_dict"]["transformer.norm.weight"])
    model, tokenizer, _ = load_model(tmp_path / "final_model.pt")
    from lantern.data.batches import eval_windows
    from lantern.training.trainer import prepare_data

    data = prepare_data(TrainConfig(**{**TINY, "output_dir": str(tmp_path)}), tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in eval_windows(data.val_tokens, 16, 4, 2):
            total += model(x, y)[1].item() * y.numel()
            count += y.numel()
    assert result["val_loss"] == pytest.approx(total / count, rel=1e-6)
    with pytest.raises(LanternError, match="--eval_ema needs --ema_decay"):
        TrainConfig(eval_ema=True)


def test_every_setting_has_a_flag_and_old_aliases_still_work():
    import argparse

    from lantern.cli import train as train_cli
    from lantern.training.settings import FLAG_SECTION

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in sub._actions}
    assert set(FLAG_SECTION) <= dests
    args = parser.parse_args(["train", "--preset", "nano", "--lr", "0.01", "--n_layers", "3",
                              "--d_model", "64", "--seq_len", "32", "--save_dir", "x", "--data", "d.txt"])
    assert (args.config, args.learning_rate, args.num_blocks, args.hidden_size, args.seq_length,
            args.output_dir, args.data_path) == ("nano", 0.01, 3, 64, 32, "x", "d.txt")


def test_logged_speed_matches_the_logged_clock(tmp_path):
    """tokens/s over each interval = tokens trained / seconds elapsed (no evals or saves inside)."""
    tiny_train(tmp_path, max_steps=60, eval_interval=1000, save_interval=1000, log_interval=20)
    records = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    lines = [r for r in records if "tokens_per_second" in r]
    for before, after in zip(lines[1:], lines[2:], strict=False):
        seconds = after["elapsed_time"] - before["elapsed_time"]
        assert after["tokens_per_second"] == pytest.approx(20 * 4 * 16 / seconds, rel=0.05)


def test_init_from_a_hugging_face_directory_continues_its_weights(tmp_path):
    from lantern.cli.main import main

    tiny_train(tmp_path / "a", max_steps=3, eval_interval=3, save_interval=3)
    assert main(["export", str(tmp_path / "a"), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    tiny_train(tmp_path / "b", init_from=str(tmp_path / "hf"), config="small", hidden_size=None,
               num_heads=None, num_blocks=None, seq_length=None, max_steps=1, eval_interval=1,
               save_interval=1, learning_rate=1e-12, warmup_steps=0)
    before, after = weights(tmp_path / "a" / "final_model.pt"), weights(tmp_path / "b" / "final_model.pt")
    assert before.keys() == after.keys()
    assert max((before[k] - after[k]).abs().max().item() for k in before) < 1e-6
    assert load_tokenizer(tmp_path / "b").to_json() == load_tokenizer(tmp_path / "a").to_json()
    with pytest.raises(LanternError, match="--init_from takes the model's shape"):
        tiny_train(tmp_path / "c", init_from=str(tmp_path / "hf"), max_steps=1)


def test_a_torn_last_log_line_is_skipped_on_resume(tmp_path, capfd):
    """A crash mid-append leaves half a JSON line at the end of training_log.jsonl (appends are
    not fsynced one by one); resuming skips it with a warning and keeps every whole line."""
    tiny_train(tmp_path, max_steps=4, eval_interval=2, save_interval=2, log_interval=1)
    log = tmp_path / "training_log.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"step": 5, "epoch": 0.1, "train_lo')
    cfg, _ = resolve_resume({"resume_from": str(tmp_path), "max_steps": 6})
    train(cfg, quiet=True)
    assert "last line of" in capfd.readouterr().err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r for r in records if r["step"] <= 4] == [json.loads(x) for x in whole.splitlines()]
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]


def test_the_log_reaches_the_disk_before_each_checkpoint(tmp_path, monkeypatch):
    """What a checkpoint resumes from is logged durably: the log is fsynced before the file."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file behind a descriptor")
    monkeypatch.setattr(os, "fsync", spy)
    tiny_train(tmp_path, max_steps=4, eval_interval=10, save_interval=2, log_interval=1)
    checkpoints = [i for i, name in enumerate(synced) if name.startswith(".checkpoint_step_")]
    assert len(checkpoints) == 2
    for index in checkpoints:
        assert "training_log.jsonl" in synced[index - 1:index], synced[:index + 1]


def test_no_checkpoint_is_written_from_nonfinite_weights(tmp_path):
    """An infinite gradient with a finite loss steps the weights to NaN; the checkpoint due at
    that step must not be written from them (the loss alone only shows it a step later)."""
    from lantern.training.trainer import Trainer

    cfg = TrainConfig(output_dir=str(tmp_path), **{**TINY, "max_steps": 3, "eval_interval": 100,
                                                   "save_interval": 1, "num_samples": 0})
    trainer = Trainer(cfg, quiet=True)
    trainer.model.transformer.norm.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    with torch.enable_grad(), pytest.raises(LanternError, match="not finite at step 1") as error:
        trainer.fit()
    assert "checkpoint_step_1.pt was not written" in str(error.value)
    assert not list(tmp_path.glob("*.pt"))
