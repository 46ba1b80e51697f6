"""`lantern info MODEL`: the facts a user needs about a checkpoint."""

from __future__ import annotations

import json

from conftest import TINY_TEXT, tiny_config

from lantern.checkpoint import save_checkpoint
from lantern.cli.main import main
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer


def test_info_reports_config_size_and_training_state(tmp_path, capsys):
    tokenizer = CharTokenizer.train([TINY_TEXT])
    config = tiny_config(vocab_size=tokenizer.vocab_size, context_length=48)
    model = LANTERNModel(config)
    save_checkpoint(tmp_path / "final_model.pt", {
        "model_state_dict": model.state_dict(), "config": config.to_dict(),
        "tokenizer": tokenizer.to_json(), "step": 120, "val_loss": 2.25, "best_val_loss": 2.0,
    })
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["vocab_size"] == tokenizer.vocab_size and info["tokenizer"] == "char"
    assert info["context_length"] == 48 and info["steps_trained"] == 120
    assert info["val_loss"] == 2.25 and info["dtype"] == "float32"
    assert info["file_size_bytes"] == (tmp_path / "final_model.pt").stat().st_size
    assert info["config"]["num_blocks"] == config.num_blocks
    assert main(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "steps trained" in text and "120" in text and "2.2500" in text


def test_info_on_missing_model_is_one_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
