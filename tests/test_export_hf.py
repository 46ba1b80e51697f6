"""Export to transformers and import back: the same function in LANTERN and in transformers.

Every check compares LANTERN with transformers' own Llama/Mistral/Qwen2/GPT-2 code on the same
weights (an independent implementation), never LANTERN with itself.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TEXT, tiny_config
from conftest import perturbed_model as tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, Qwen2Config

from lantern.api import LLM
from lantern.chat_template import render
from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.export.architecture import plan_export
from lantern.export.hf_export import export_hf
from lantern.export.hf_import import load_hf_checkpoint
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter
from tests.conftest import save_run

MIXED = "Árvíztűrő tükörfúrógép: ő és ű 🙂 hello world!\n<user>Szia 🙂</user><assistant>ok"
CORPUS = TINY_TEXT + "Szép napot! Ő és ű. Árvíztűrő tükörfúrógép.\n"
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
CASES = {
    "llama-gqa-recursive": (LLAMA | dict(num_kv_heads=2, steps_per_block=2), "LlamaForCausalLM"),
    "llama-prelude-coda": (LLAMA | dict(num_blocks=3, prelude_blocks=1, coda_blocks=1,
                                        steps_per_block=3), "LlamaForCausalLM"),
    "llama-bias-untied": (LLAMA | dict(bias=True, tie_embeddings=False), "LlamaForCausalLM"),
    "mistral-window": (LLAMA | dict(attention_window=6), "MistralForCausalLM"),
    "qwen2-gqa-untied": (LLAMA | dict(qkv_bias=True, num_kv_heads=2, tie_embeddings=False),
                         "Qwen2ForCausalLM"),
    "gpt2-learned-gqa": (dict(position="learned", num_kv_heads=2), "GPT2LMHeadModel"),
    "gpt2-sinusoidal-nobias": (dict(position="sinusoidal", bias=False, tie_embeddings=False),
                               "GPT2LMHeadModel"),
}


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return CharTokenizer.train([CORPUS])


def prompts(tokenizer, count: int = 4, length: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, tokenizer.vocab_size, (count, length), generator=g)


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_computes_the_same_logits_and_greedy_text(case, char_tok, tmp_path):
    overrides, cls = CASES[case]
    model = tiny_model(char_tok, **overrides)
    export_hf(model, char_tok, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == cls
    assert hf.config.num_hidden_layers == model.config.num_layers()
    x = torch.cat([prompts(char_tok, length=40), prompts(char_tok, length=40).flip(1)])
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(x).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    assert ours.std().item() > 0.1  # the comparison is not between two near-constant outputs
    start = x[:2, :8]
    ours = LLM(model).generate(start, max_new_tokens=50, temperature=0)
    hf.generation_config.eos_token_id = None
    theirs = hf.generate(start, max_new_tokens=50, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_a_wrong_mapping_would_be_caught(char_tok, tmp_path):
    """The tolerance is tight enough to see the plausible mistakes: exact GELU for the tanh
    one, or RoPE applied in the interleaved layout."""
    model = tiny_model(char_tok, position="learned")
    export_hf(model, char_tok, tmp_path / "gpt2")
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    config["activation_function"] = "gelu"
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(config))
    x = prompts(char_tok, length=30)
    with torch.no_grad():
        wrong = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2").eval()(x).logits
        assert (model(x)[0] - wrong).abs().max().item() > 1e-4
    llama = tiny_model(char_tok, **LLAMA)
    export_hf(llama, char_tok, tmp_path / "llama")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()
    with torch.no_grad():
        for proj in ("q_proj", "k_proj"):  # rows of each head reordered to interleaved pairs
            for layer in hf.model.layers:
                w = getattr(layer.self_attn, proj).weight
                heads = w.shape[0] // 8
                w.copy_(w.reshape(heads, 2, 4, -1).transpose(1, 2).reshape(w.shape))
        assert (llama(x)[0] - hf(x).logits).abs().max().item() > 1e-3


def test_depth_flag_unrolls_more_steps(char_tok, tmp_path):
    model = tiny_model(char_tok, **LLAMA, steps_per_block=1)
    export_hf(model, char_tok, tmp_path / "deep", depth=3)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "deep").eval()
    assert hf.config.num_hidden_layers == 3 * model.config.num_blocks
    x = prompts(char_tok)
    with torch.no_grad():
        ours = model(x, steps_per_block=3)[0]
        assert (ours - hf(x).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", ["char", "char-no-fallback", "bpe", "unigram"])
def test_autotokenizer_gives_lanterns_ids_and_chat_layout(kind, tmp_path):
    if kind == "char":
        tok = CharTokenizer.train(["hello world <user>"])  # ő, ű, 🙂 unseen: byte fallback
    elif kind == "char-no-fallback":
        tok = CharTokenizer.train([CORPUS], byte_fallback=False)
    elif kind == "bpe":
        tok = HFTokenizerAdapter.train_bpe([CORPUS], 320)
    else:
        tok = HFTokenizerAdapter.train_unigram([CORPUS], 320)
    model = tiny_model(tok, **LLAMA)
    export_hf(model, tok, tmp_path / "hf")
    auto = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = tok.encode(MIXED)
    assert auto.encode(MIXED, add_special_tokens=False) == ids
    assert auto.decode(ids) == tok.decode(ids)
    assert (auto.eos_token_id, auto.bos_token_id, auto.pad_token_id) == (tok.eos_id, tok.bos_id, tok.pad_id)
    chat = [{"role": "system", "content": "Légy kedves."}, {"role": "user", "content": "Szia 🙂"},
            {"role": "assistant", "content": "Szia!"}, {"role": "user", "content": "Mi újság?"}]
    assert auto.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == render(chat)


@pytest.mark.parametrize("case", list(CASES))
def test_export_then_import_round_trips_exactly(case, char_tok, tmp_path):
    model = tiny_model(char_tok, **CASES[case][0])
    export_hf(model, char_tok, tmp_path / "hf")
    back, tokenizer = load_hf_checkpoint(tmp_path / "hf")
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.encode(MIXED) == char_tok.encode(MIXED)
    assert back.config.attention_window == model.config.attention_window
    x = prompts(char_tok, length=40)
    with torch.no_grad():
        assert torch.equal(model(x)[0], back(x)[0])


def test_import_of_models_made_by_transformers(tmp_path):
    """Models transformers built itself (not exported by LANTERN) compute the same in LANTERN."""
    tok = HFTokenizerAdapter.train_bpe([CORPUS], 320)
    configs = {
        "llama": LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=64, rms_norm_eps=1e-6,
                             tie_word_embeddings=False, attention_bias=True),
        "gpt2": GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2,
                           n_head=4),  # GPT-2's own default activation, gelu_new
        "qwen2": Qwen2Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    }
    from lantern.export.hf_tokenizer import save_hf_tokenizer

    for name, config in configs.items():
        torch.manual_seed(0)
        hf = AutoModelForCausalLM.from_config(config).eval()
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        hf.save_pretrained(tmp_path / name)
        save_hf_tokenizer(tok, tmp_path / name)
        model, tokenizer = load_hf_checkpoint(tmp_path / name)
        x = prompts(tok, length=30)
        with torch.no_grad():
            assert (model(x)[0] - hf(x).logits).abs().max().item() < 1e-4, name
        assert tokenizer.encode(MIXED) == tok.encode(MIXED)


def test_import_refuses_what_lantern_cannot_compute(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(LanternError, match="model_type 'bert' cannot be imported"):
        load_hf_checkpoint(tmp_path)
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=4, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                 "rope_theta": 10000.0})
    (tmp_path / "config.json").write_text(config.to_json_string())
    with pytest.raises(LanternError, match="rope scaling 'linear'"):
        load_hf_checkpoint(tmp_path)


@pytest.mark.parametrize("overrides, message", [
    (LLAMA | dict(reinject_input=True), "input re-injection"),
    (LLAMA | dict(attention_window=6, attention_sink=2), "attention sinks"),
    (dict(position="rope", norm="layernorm", mlp="gelu"), "no standard equivalent"),
    (dict(position="learned", attention_window=6), "sliding window"),
    (LLAMA | dict(attention_window=6, bias=True), "Mistral has no biases"),
    (LLAMA | dict(attention_window=6, qkv_bias=True), "Mistral has no biases"),
])
def test_features_without_an_exact_equivalent_are_refused(overrides, message):
    with pytest.raises(LanternError, match=message):
        plan_export(tiny_config(context_length=64, **overrides))


def test_cli_export_refuses_and_never_overwrites(char_tok, tmp_path, capsys):
    save_run(tiny_model(char_tok, **LLAMA, reinject_input=True), char_tok, tmp_path / "bad",
             step=7, val_loss=3.5)
    assert main(["export", str(tmp_path / "bad"), "--format", "hf", "--output", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lantern: error: input re-injection" in err
    assert not (tmp_path / "x").exists()

    save_run(tiny_model(char_tok, **LLAMA), char_tok, tmp_path / "run", step=7, val_loss=3.5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ["export", str(tmp_path / "run"), "--format", "hf", "--output", str(out)]
    assert main(args) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    fresh = ["export", str(tmp_path / "run"), "--format", "hf", "--output", str(tmp_path / "new")]
    assert main(fresh + ["--ema"]) == 1
    assert "no EMA weights" in capsys.readouterr().err
    assert main(fresh + ["--outtype", "f16"]) == 1
    assert "--outtype is for --format gguf" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run"), "--format", "hf", "--output", str(tmp_path / "run")]) == 1
    assert "would replace the model being exported" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    assert main(["export", str(tmp_path / "run"), "--format", "hf", "--overwrite",
                 "--output", str(tmp_path / "notes.txt")]) == 1
    assert "is a file; this export writes a directory" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "a file, not a directory"
    assert main(args + ["--overwrite"]) == 1  # a directory LANTERN did not write stays
    assert "not a LANTERN output" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    assert main(args + ["--overwrite"]) == 0  # an empty directory holds nothing to lose
    assert main(args + ["--overwrite"]) == 0  # an export of LANTERN's own is replaced
    assert (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / "new").exists()
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2


def test_cli_export_ema_takes_the_averaged_weights(char_tok, tmp_path):
    from lantern.checkpoint import save_checkpoint

    model = tiny_model(char_tok, **LLAMA)
    ema = {name: p.detach() + 0.5 for name, p in model.named_parameters()}  # tied weight once
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "checkpoint_step_10.pt", {
        "model_state_dict": model.state_dict(), "config": model.config.to_dict(),
        "tokenizer": char_tok.to_json(), "step": 10, "ema_state_dict": ema,
    })
    assert main(["export", str(tmp_path / "run"), "--format", "hf", "--ema",
                 "--output", str(tmp_path / "hf")]) == 0
    back, _ = load_hf_checkpoint(tmp_path / "hf")
    for name, p in back.named_parameters():
        assert torch.equal(p, ema[name])


def test_a_run_trained_with_qkv_bias_exports_as_qwen2(tmp_path, capsys):
    """`lantern train --qkv_bias` (RoPE, RMSNorm, SwiGLU, no other bias) gives query/key/value
    biases and exports as Qwen2; the same run without the flag stays a Llama."""
    from lantern.checkpoint import load_model

    (tmp_path / "data.txt").write_text(CORPUS, encoding="utf-8")
    args = ["train", "--config", "small", "--hidden_size", "32", "--num_heads", "2", "--d_ff", "64",
            "--seq_length", "16", "--batch_size", "2", "--max_steps", "1", "--eval_interval", "1",
            "--eval_batches", "1", "--num_samples", "0", "--data_path", str(tmp_path / "data.txt")]
    for flags, arch in (([], "LlamaForCausalLM"), (["--qkv_bias"], "Qwen2ForCausalLM")):
        run, out = tmp_path / f"run{len(flags)}", tmp_path / f"hf{len(flags)}"
        assert main(args + flags + ["--output_dir", str(run)]) == 0, capsys.readouterr().err
        model, _, _ = load_model(run)
        assert (model.transformer.blocks[0].attn.qkv.bias is not None) == bool(flags)
        assert main(["export", str(run), "--format", "hf", "--output", str(out)]) == 0
        hf = AutoModelForCausalLM.from_pretrained(out).eval()
        assert hf.config.architectures == [arch]
        x = prompts(load_hf_checkpoint(out)[1], length=16)
        with torch.no_grad():
            assert (model(x)[0] - hf(x).logits).abs().max().item() < 1e-4
