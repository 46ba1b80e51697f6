"""`lantern info PATH`: the facts a user needs about a model, in every format."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_TEXT, save_run, tiny_config

from lantern.cli.main import main
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as the trainer writes it: checkpoint, config, tokenizer, safetensors."""
    from safetensors.torch import save_model

    tokenizer = CharTokenizer.train([TINY_TEXT])
    config = tiny_config(vocab_size=tokenizer.vocab_size, context_length=48, num_kv_heads=2,
                         steps_per_block=2, **LLAMA)
    model = LANTERNModel(config)
    run = tmp_path / "run"
    save_run(model, tokenizer, run, step=120, val_loss=2.25, best_val_loss=2.0)
    (run / "config.json").write_text(config.to_json())
    (run / "tokenizer.json").write_text(tokenizer.to_json())
    save_model(model, str(run / "model.safetensors"))
    (run / "training_log.jsonl").write_text('{"step": 120, "train_loss": 2.4}\n'
                                            '{"step": 120, "val_loss": 2.25}\n{"step": 1')
    return run, model, tokenizer


def info(path, capsys) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_on_a_run_reports_config_size_and_training_state(run_dir, capsys):
    run, model, tokenizer = run_dir
    data = info(run, capsys)
    assert data["parameters"] == sum(p.numel() for p in model.parameters())
    assert data["vocab_size"] == tokenizer.vocab_size and data["tokenizer"] == "char"
    assert data["context_length"] == 48 and data["steps_trained"] == 120
    assert data["val_loss"] == 2.25 and data["best_val_loss"] == 2.0
    assert data["layers"] == 4 and data["heads"] == 4 and data["kv_heads"] == 2
    assert data["tensor_types"].startswith("float32 x ")
    assert data["file_size_bytes"] == (run / "final_model.pt").stat().st_size
    assert data["exports_as"] == "llama" and data["config"]["num_blocks"] == 2
    assert main(["info", str(run)]) == 0
    text = capsys.readouterr().out
    assert "steps trained" in text and "120" in text and "2.2500" in text and "(2 key/value)" in text


def test_info_on_safetensors_reads_the_config_beside_it(run_dir, capsys):
    run, model, tokenizer = run_dir
    data = info(run / "model.safetensors", capsys)
    # the file stores the tied embedding once
    assert data["parameters"] == sum(p.numel() for p in model.parameters())
    assert data["hidden_size"] == 32 and data["layers"] == 4 and data["tokenizer"] == "char"
    assert data["format"] == "safetensors"
    assert data["steps_trained"] == 120 and data["val_loss"] == 2.25  # from training_log.jsonl


def test_info_on_exports_hf_and_gguf(run_dir, tmp_path, capsys):
    run, model, tokenizer = run_dir
    assert main(["export", str(run), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    assert main(["export", str(run), "--format", "gguf", "--outtype", "q8_0",
                 "--output", str(tmp_path / "m.gguf")]) == 0
    capsys.readouterr()
    hf = info(tmp_path / "hf", capsys)
    assert hf["architecture"] == "LlamaForCausalLM" and hf["layers"] == 4 and hf["kv_heads"] == 2
    assert hf["vocab_size"] == tokenizer.vocab_size and hf["context_length"] == 48
    assert hf["tokenizer"] == "char" and hf["steps_trained"] == 120 and hf["val_loss"] == 2.25
    blocks = sum(p.numel() for p in model.transformer.blocks.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert hf["parameters"] == total + blocks  # 2 steps unrolled: block weights twice, tied once
    gguf = info(tmp_path / "m.gguf", capsys)
    assert gguf["architecture"] == "llama" and gguf["layers"] == 4 and gguf["tokenizer"] == "llama"
    assert gguf["vocab_size"] == tokenizer.vocab_size and gguf["hidden_size"] == 32
    assert gguf["tensor_types"] == "F32 x 9, Q8_0 x 29"  # norms F32; 4 x 7 matrices + embedding
    assert gguf["file_size_bytes"] == (tmp_path / "m.gguf").stat().st_size
    assert gguf["steps_trained"] == 120 and gguf["val_loss"] == 2.25
    assert main(["info", str(tmp_path / "m.gguf")]) == 0
    assert "Q8_0" in capsys.readouterr().out


@pytest.mark.parametrize("name, content, message", [
    ("missing.pt", None, "not found"),
    ("broken.gguf", b"GGUF\x03\x00\x00\x00" + b"\x00" * 3, "damaged GGUF"),
    ("text.gguf", b"hello", "not a GGUF file"),
    ("broken.safetensors", b"\x00\x01", "cannot read"),
    ("notes.txt", b"hello", "not a model file LANTERN reads"),
])
def test_info_on_bad_input_is_one_clear_error(tmp_path, capsys, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert main(["info", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
