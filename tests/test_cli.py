"""The `lantern` command: help, train -> generate, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lantern.cli.main import main
from lantern.training.trainer import TrainConfig, train

SEED_000_FLAGS = ("--config --data_path --val_data_path --seq_length --batch_size --learning_rate "
                  "--weight_decay --max_steps --warmup_steps --grad_clip --output_dir "
                  "--eval_interval --save_interval --device --resume_from --vocab_size "
                  "--hidden_size --num_heads --num_blocks").split()
ALIASES = ("--train_data --val_data --d_model --n_heads --d_ff --n_layers --seq_len --save_dir "
           "--log_interval --epochs --lr --data --steps_per_block --tokenizer --seed --grad_accum "
           "--dtype").split()
TINY_FLAGS = ["--config", "nano", "--hidden_size", "32", "--num_heads", "2", "--seq_length", "16",
              "--batch_size", "4", "--max_steps", "2", "--eval_interval", "2", "--eval_batches", "1",
              "--num_samples", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(config="nano", hidden_size=32, num_heads=2, seq_length=16, batch_size=4,
                      corpus_chars=20_000, max_steps=3, eval_interval=3, eval_batches=1,
                      num_samples=0, output_dir=str(out), overwrite=True), quiet=True)
    return out


def error_of(capsys, *argv) -> str:
    """Run the CLI in-process; assert it failed with exactly one line on stderr."""
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: ") and "\n" not in err, err
    return err


def test_help_documents_every_seed_flag_with_defaults():
    out = subprocess.run([sys.executable, "-m", "lantern", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for flag in SEED_000_FLAGS + ALIASES:
        assert flag in out, flag
    assert "[1e-3]" in out.replace("0.001", "1e-3") or "[0.001]" in out
    top = subprocess.run([sys.executable, "-m", "lantern", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "train" in top and "generate" in top


def test_generate_from_a_run_directory(run_dir, capsys):
    assert main(["generate", "--checkpoint", str(run_dir), "--prompt", "Once", "--max_new_tokens",
                 "20", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("Once")
    main(["generate", "--checkpoint", str(run_dir / "final_model.pt"), "--prompt", "Once",
          "--max_new_tokens", "20", "--seed", "1"])
    assert capsys.readouterr().out == first  # same seed, same text


def test_missing_empty_binary_and_non_utf8_data(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02" * 100)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    (tmp_path / "short.txt").write_text("tiny")
    cases = {"missing.txt": "not found", "empty.txt": "empty", "binary.txt": "binary",
             "latin1.txt": "not UTF-8", "short.txt": "fewer than one window"}
    for name, message in cases.items():
        out = tmp_path / f"out_{name}"
        err = error_of(capsys, "train", "--data_path", str(tmp_path / name), "--output_dir",
                       str(out), *TINY_FLAGS)
        assert message in err, err
        assert not (out / "final_model.pt").exists()


def test_unknown_preset_and_bad_numbers(tmp_path, capsys):
    assert "unknown preset" in error_of(capsys, "train", "--config", "huge", "--output_dir",
                                        str(tmp_path / "a"))
    assert "--batch_size must be positive" in error_of(capsys, "train", "--batch_size", "0",
                                                       "--output_dir", str(tmp_path / "b"))


def test_existing_run_is_protected(run_dir, capsys):
    before = (run_dir / "final_model.pt").read_bytes()
    assert "already holds a training run" in error_of(capsys, "train", "--output_dir",
                                                      str(run_dir), *TINY_FLAGS)
    assert (run_dir / "final_model.pt").read_bytes() == before


def test_corrupt_checkpoint_and_mismatched_tokenizer(run_dir, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_dir / "final_model.pt").read_bytes()[:500])
    assert "cannot read checkpoint" in error_of(capsys, "generate", "--checkpoint", str(corrupt))
    other = tmp_path / "other.json"
    from lantern.tokenizers import CharTokenizer

    other.write_text(CharTokenizer.train(["only a few letters"]).to_json())
    assert "do not belong together" in error_of(capsys, "generate", "--checkpoint", str(run_dir),
                                                "--tokenizer", str(other))
    assert "not found" in error_of(capsys, "generate", "--checkpoint", str(tmp_path / "nope"))


def test_bad_generation_input(run_dir, capsys):
    assert "prompt is empty" in error_of(capsys, "generate", "--checkpoint", str(run_dir),
                                           "--prompt", "")
    assert "does not know" in error_of(capsys, "generate", "--checkpoint", str(run_dir),
                                       "--prompt", "日本")
    assert "--top_p" in error_of(capsys, "generate", "--checkpoint", str(run_dir), "--top_p", "2")


def test_errors_reach_the_shell_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lantern", "train", "--data_path",
                           str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
