"""The `lantern` command: help, train -> generate, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

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


@torch.no_grad()
def greedy_reference(model, tokenizer, prompt: str, new_tokens: int) -> str:
    """Argmax decoding by full forward passes over the whole text: no cache, no sampler."""
    ids = tokenizer.encode(prompt)
    for _ in range(new_tokens):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] == tokenizer.eos_id:
            break
    return prompt + tokenizer.decode(ids[len(tokenizer.encode(prompt)):], skip_special_tokens=True)


def test_greedy_generate_equals_a_forward_pass_reference(run_dir, capsys):
    """The command line, from a run directory or a file in it, decodes what the weights say;
    12 new tokens keep prompt + answer inside the 16-token context (no window slide)."""
    from lantern.checkpoint import load_model

    model, tokenizer, _ = load_model(run_dir, device=torch.device("cpu"))
    expected = greedy_reference(model.eval(), tokenizer, "Once", 12)
    for checkpoint in (run_dir, run_dir / "final_model.pt"):
        assert main(["generate", "--checkpoint", str(checkpoint), "--prompt", "Once",
                     "--max_new_tokens", "12", "--temperature", "0"]) == 0
        assert capsys.readouterr().out.rstrip("\n") == expected


def test_sampling_seed_decides_the_text(run_dir, capsys):
    def sample(seed: int) -> str:
        assert main(["generate", "--checkpoint", str(run_dir), "--prompt", "Once",
                     "--max_new_tokens", "12", "--temperature", "1", "--seed", str(seed)]) == 0
        return capsys.readouterr().out

    first = sample(1)
    assert sample(1) == first  # same seed, same text
    assert any(sample(seed) != first for seed in (2, 3, 4))  # the seed is not ignored


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
    assert "lone surrogate U+DCFF" in error_of(capsys, "generate", "--checkpoint", str(run_dir),
                                               "--prompt", "caf\udcff")  # argv bytes not UTF-8
    assert "--top_p" in error_of(capsys, "generate", "--checkpoint", str(run_dir), "--top_p", "2")


def test_unseen_characters_round_trip_through_a_trained_runs_tokenizer(run_dir, capsys):
    """Defect 9 (failed on db17e2b: `héllo` came back as `h<unk>llo`): the vocabulary `train`
    builds falls back to UTF-8 byte tokens for characters its corpus never had."""
    text = "héllo 日本 🙂 Ő"
    assert main(["tokenizer", "encode", "--tokenizer", str(run_dir), text]) == 0
    ids = capsys.readouterr().out
    assert main(["tokenizer", "decode", "--tokenizer", str(run_dir), ids]) == 0
    assert capsys.readouterr().out == text + "\n"
    assert main(["generate", "--checkpoint", str(run_dir), "--prompt", "héllo 日本",
                 "--max_new_tokens", "3", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("héllo 日本")


def test_errors_reach_the_shell_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lantern", "train", "--data_path",
                           str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
