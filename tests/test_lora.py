"""LoRA fine-tuning (`--lora_rank`, through peft) of a tiny pretrained LANTERN model: only the
adapters learn; the merged weights compute what the unmerged peft model computes; a stopped and
resumed run ends where an uninterrupted one does; the run directory is a plain LANTERN model that
exports; flags that could not act are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TEXT
from conftest import perturbed_model as tiny_model
from peft.tuners.lora import LoraLayer

from lantern.checkpoint import load_checkpoint, load_model
from lantern.cli.main import main
from lantern.export.gguf_export import export_gguf
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer
from lantern.training.lora import LoraSettings, attach_lora, merged_weights
from lantern.training.trainer import TrainConfig, Trainer, resolve_resume

LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, num_kv_heads=2)
SETTINGS = LoraSettings(rank=4, alpha=8.0, dropout=0.0, targets=("qkv", "proj", "up", "down"))


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return CharTokenizer.train([TINY_TEXT])


@pytest.fixture
def pretrained(char_tok, tmp_path):
    """A tiny 'pretrained' model as a GGUF file (what --init_from takes), and a data file."""
    export_gguf(tiny_model(char_tok, **LLAMA), char_tok, tmp_path / "base.gguf", "f32")
    (tmp_path / "data.txt").write_text(TINY_TEXT, encoding="utf-8")
    return tmp_path / "base.gguf", tmp_path / "data.txt"


def lora_run(pretrained, out, *extra: str) -> list[str]:
    model, data = pretrained
    return ["train", "--init_from", str(model), "--data_path", str(data), "--lora_rank", "4",
            "--seq_length", "32", "--batch_size", "4", "--learning_rate", "1e-2", "--warmup_steps", "0",
            "--eval_interval", "100", "--eval_batches", "1", "--sample_length", "0",
            "--num_samples", "0", "--output_dir", str(out), *extra]


def adapted(char_tok, seed: int = 0) -> LANTERNModel:
    model = tiny_model(char_tok, **LLAMA)
    torch.manual_seed(seed)
    attach_lora(model, SETTINGS)
    with torch.no_grad():  # B starts at zero (an adapter that does nothing): give it weights
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.1)
    return model.eval()


def test_only_adapter_parameters_get_gradients(char_tok):
    model = adapted(char_tok).train()
    x = torch.randint(0, char_tok.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    _, loss = model(x, x)
    loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    adapters = {name for name, _ in model.named_parameters() if ".lora_" in name}
    assert with_grad == adapters
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == 4 * model.config.num_blocks  # qkv, proj, up, down in every block
    assert all(m.lora_A["default"].weight.grad.abs().sum() > 0 for m in layers)


def test_merged_weights_compute_what_the_peft_model_computes(char_tok):
    model = adapted(char_tok)
    plain = LANTERNModel(model.config)
    plain.load_state_dict(merged_weights(model.state_dict(), SETTINGS.scaling))
    base = tiny_model(char_tok, **LLAMA)
    x = torch.randint(0, char_tok.vocab_size, (3, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        peft_logits, merged_logits, base_logits = model(x)[0], plain.eval()(x)[0], base(x)[0]
    assert (merged_logits - peft_logits).abs().max() < 1e-4
    assert (merged_logits - base_logits).abs().max() > 0.1  # the adapters do change the model


def test_a_lora_run_trains_adapters_only_and_leaves_a_plain_model(char_tok, pretrained, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lora_run(pretrained, out, "--max_steps", "6", "--save_interval", "3")) == 0, \
        capsys.readouterr().err
    assert "LoRA: rank 4, alpha 8" in capsys.readouterr().out
    final = load_checkpoint(out / "final_model.pt")["model_state_dict"]
    step = load_checkpoint(out / "checkpoint_step_6.pt")["model_state_dict"]
    assert not any(".lora_" in key or "base_layer" in key for key in final)
    base = tiny_model(char_tok, **LLAMA).state_dict()
    changed = {key for key, w in final.items() if not torch.equal(w, base[key])}
    assert changed and all(key.rsplit(".", 2)[-2] in SETTINGS.targets for key in changed)
    frozen = {key.replace(".base_layer.", "."): w for key, w in step.items() if ".lora_" not in key}
    assert all(torch.equal(w, base[key]) for key, w in frozen.items())  # W itself never moved
    model, _, _ = load_model(out)  # final_model.pt: a plain LANTERN model
    from_step, _, _ = load_model(out / "checkpoint_step_6.pt")  # merged on load
    x = torch.randint(0, char_tok.vocab_size, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(x)[0], from_step(x)[0])
    from safetensors.torch import load_file

    assert set(load_file(out / "model.safetensors")) <= set(final)
    assert json.loads((out / "train_config.json").read_text())["lora"]["lora_rank"] == 4


def test_a_stopped_lora_run_resumes_to_the_same_weights(pretrained, tmp_path, capsys):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(lora_run(pretrained, whole, "--max_steps", "6", "--save_interval", "3",
                         "--lora_dropout", "0.1")) == 0
    stopped.mkdir()  # a run that stopped after step 3
    (stopped / "checkpoint_step_3.pt").write_bytes((whole / "checkpoint_step_3.pt").read_bytes())
    Trainer(resolve_resume({"resume_from": str(stopped)})[0], quiet=True).fit()
    for name in ("checkpoint_step_6.pt", "final_model.pt"):  # adapters, and merged weights
        a = load_checkpoint(whole / name)["model_state_dict"]
        b = load_checkpoint(stopped / name)["model_state_dict"]
        assert a.keys() == b.keys()
        for key, w in a.items():
            assert torch.equal(w, b[key]), (name, key)


def refusal(argv: list[str], capsys) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lantern: error:"), err
    return err


def test_lora_flags_that_cannot_act_are_refused(pretrained, tmp_path, capsys):
    out = tmp_path / "run"
    data = str(pretrained[1])
    assert "need --lora_rank" in refusal(["train", "--data_path", data, "--lora_alpha", "16",
                                          "--output_dir", str(out)], capsys)
    assert "--lora_rank needs --init_from" in refusal(
        ["train", "--data_path", data, "--lora_rank", "4", "--output_dir", str(out)], capsys)
    assert "--ema_decay" in refusal(lora_run(pretrained, out, "--ema_decay", "0.9"), capsys)
    assert "--lora_targets" in refusal(lora_run(pretrained, out, "--lora_targets", "qkv,lm_head"), capsys)
    assert "smallest adapted layer" in refusal(lora_run(pretrained, out, "--lora_rank", "4096"), capsys)
    assert "--lora_dropout must be in" in refusal(lora_run(pretrained, out, "--lora_dropout", "1.5"), capsys)
    assert not out.exists()


def test_lora_settings_cannot_change_on_resume(pretrained, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(lora_run(pretrained, out, "--max_steps", "2", "--save_interval", "2")) == 0
    assert "cannot change when resuming" in refusal(
        ["train", "--resume_from", str(out), "--lora_rank", "8", "--max_steps", "4"], capsys)


def test_settings_default_to_every_block_layer_and_twice_the_rank():
    settings = LoraSettings.from_section(TrainConfig(init_from="x.gguf", lora_rank=8).lora)
    assert settings == LoraSettings(8, 16.0, 0.0, ("qkv", "proj", "up", "down"))
