"""GGUF import: LANTERN's own exports come back (exact at f32, within each format's rounding
otherwise); a GGUF written by the `gguf` package maps its metadata to the config and tokenizer
and computes what transformers' own GGUF loader computes; text is tokenized as llama.cpp does;
bad files are one clear line. Tests on the real SmolLM2 file run when it is in the cache."""

from __future__ import annotations

import json
from dataclasses import replace

import gguf
import numpy as np
import pytest
import torch
from conftest import TINY_TEXT
from conftest import perturbed_model as tiny_model
from gguf import GGMLQuantizationType as Q
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from lantern.checkpoint import load_model
from lantern.cli.main import main
from lantern.export.describe import open_gguf
from lantern.export.gguf_export import export_gguf
from lantern.export.gguf_import import load_gguf, read_description
from lantern.export.hf_import import load_hf_checkpoint
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.pretrained.catalog import KNOWN_MODELS
from lantern.pretrained.pull import cached_path
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter, tokenizer_from_json

MIXED = "Árvíztűrő tükörfúrógép: ő és ű 🙂 hello world 1234567!\n<user>Szia 🙂</user><assistant>ok"
CORPUS = (TINY_TEXT + "Szép napot! Ő és ű. Árvíztűrő tükörfúrógép.\n"
          + "12 times 3 is 36; 2024, 1234567.\n" * 8)
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
CHATML = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
          "'<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}")
# Captured at import, before the suite points $LANTERN_CACHE at a temporary folder.
SMOLLM2 = cached_path(KNOWN_MODELS["smollm2-135m-instruct"])


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return CharTokenizer.train([CORPUS])


@pytest.fixture(scope="module")
def bpe_tok() -> HFTokenizerAdapter:
    return HFTokenizerAdapter.train_bpe([CORPUS], 400)


def prompts(vocab_size: int, count: int = 3, length: int = 24) -> torch.Tensor:
    return torch.randint(0, vocab_size, (count, length), generator=torch.Generator().manual_seed(1))


def rounding_bound(outtype: str, w: torch.Tensor) -> torch.Tensor:
    """The largest error each format's definition allows per weight: relative for floats, a
    share of the block's largest magnitude (32 values along a row) for block quantization."""
    if outtype == "f32":
        return torch.zeros_like(w)
    if outtype in ("f16", "bf16"):
        return w.abs() * (2.0 ** -11 if outtype == "f16" else 2.0 ** -8) + 1e-7
    blocks = w.reshape(w.shape[0], -1, 32).abs().amax(-1, keepdim=True)
    # The scale is stored as f16: up to |q| x 2^-11 of a step more (q8_0: |q| <= 127, q4_0: 8).
    if outtype == "q8_0":  # scale amax/127, values rounded to the nearest step
        error = blocks / 127 * (0.5 + 127 * 2.0 ** -11)
    else:  # q4_0: scale amax/8, and the far end of the block is clipped by one whole step
        error = blocks / 8 * (1 + 8 * 2.0 ** -11)
    return error.expand(-1, -1, 32).reshape(w.shape)


ROUND_TRIPS = {
    "llama-gqa-tied": LLAMA | dict(num_kv_heads=2),
    "llama-bias-untied": LLAMA | dict(bias=True, tie_embeddings=False),
    "qwen2-gqa": LLAMA | dict(qkv_bias=True, num_kv_heads=2),
    "gpt2-learned": dict(position="learned"),
}


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0", "q4_0"])
@pytest.mark.parametrize("arch", list(ROUND_TRIPS))
def test_lantern_exports_come_back_within_the_formats_rounding(arch, outtype, char_tok, tmp_path):
    model = tiny_model(char_tok, **ROUND_TRIPS[arch])
    export_gguf(model, char_tok, tmp_path / "m.gguf", outtype)
    back, tokenizer = load_gguf(tmp_path / "m.gguf")
    eps = 1e-6 if model.config.norm == "rmsnorm" else 1e-5  # what a config without norm_eps uses
    assert back.config == replace(model.config, mlp_hidden_size=model.config.ffn_size, norm_eps=eps)
    ours = back.state_dict()
    for name, w in model.state_dict().items():
        if w.ndim == 2 and "positions" not in name:
            assert ((ours[name] - w).abs() <= rounding_bound(outtype, w)).all(), name
        else:  # norms, biases and the position table stay float32
            assert torch.equal(ours[name], w), name
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.tokens == char_tok.tokens
    if outtype == "f32":
        x = prompts(char_tok.vocab_size)
        with torch.no_grad():
            assert torch.equal(back(x)[0], model(x)[0])


def test_recursive_model_comes_back_unrolled_as_the_same_function(char_tok, tmp_path):
    model = tiny_model(char_tok, **LLAMA, num_kv_heads=2, steps_per_block=2)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    back, _ = load_gguf(tmp_path / "m.gguf")
    assert back.config.num_blocks == 4 and back.config.steps_per_block == 1
    x = prompts(char_tok.vocab_size)
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])


def test_bpe_vocabulary_comes_back_with_its_ids_and_roles(bpe_tok, tmp_path):
    model = tiny_model(bpe_tok, **LLAMA)
    export_gguf(model, bpe_tok, tmp_path / "m.gguf", "f32")
    _, tokenizer = load_gguf(tmp_path / "m.gguf")
    assert tokenizer.encode(MIXED) == bpe_tok.encode(MIXED)
    assert tokenizer.decode(tokenizer.encode(MIXED)) == MIXED
    assert (tokenizer.eos_id, tokenizer.bos_id, tokenizer.pad_id) == (bpe_tok.eos_id, bpe_tok.bos_id,
                                                                      bpe_tok.pad_id)


# --- a GGUF written with the gguf package, as llama.cpp's converter writes real models ------------

EXTRA_TOKENS = ["<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
WHOLE_WORD = "\u0120zqxj"  # " zqxj": in the vocabulary, but no merge leads to it


def vocabulary(bpe: HFTokenizerAdapter) -> tuple[list[str], list[str], list[int]]:
    """(tokens, merges, types) of a byte-level BPE vocabulary in llama.cpp's form."""
    data = json.loads(bpe.to_json())
    vocab = data["model"]["vocab"] | {t["content"]: t["id"] for t in data["added_tokens"]}
    tokens = sorted(vocab, key=vocab.get) + EXTRA_TOKENS + [WHOLE_WORD]
    specials = {t["content"] for t in data["added_tokens"]} | set(EXTRA_TOKENS)
    types = [int(gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges, types


def hf_llama(vocab_size: int) -> torch.nn.Module:
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rms_norm_eps=0.05, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def llamacpp_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's query/key row order (llama.cpp's convert_hf_to_gguf.py permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path, hf, tokens, merges, types, pre="gpt-2", template=CHATML, quant=Q.Q4_1,
                     arch="llama", extra_tensor=None) -> None:
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_eot_token_id(tokens.index("<|eot_id|>"))
    w.add_pad_token_id(tokens.index("<pad>"))
    w.add_add_bos_token(False)
    w.add_chat_template(template)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for name, t in hf.state_dict().items():
        a = t.detach().numpy().astype(np.float32)
        if name == "model.embed_tokens.weight":
            w.add_tensor("token_embd.weight", gguf.quants.quantize(a, Q.Q8_0), raw_dtype=Q.Q8_0)
            continue
        if name == "model.norm.weight":
            w.add_tensor("output_norm.weight", a)
            continue
        if name == "lm_head.weight":
            continue  # tied
        layer, rest = name.split(".")[2], name.split(".", 3)[3].removesuffix(".weight")
        if rest == "self_attn.q_proj":
            a = llamacpp_rows(a, c.num_attention_heads)
        elif rest == "self_attn.k_proj":
            a = llamacpp_rows(a, c.num_key_value_heads)
        if a.ndim == 2:
            w.add_tensor(f"blk.{layer}.{names[rest]}.weight", gguf.quants.quantize(a, quant), raw_dtype=quant)
        else:
            w.add_tensor(f"blk.{layer}.{names[rest]}.weight", a)
    if extra_tensor:
        w.add_tensor(extra_tensor, np.ones(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def written(bpe_tok, tmp_path_factory):
    """A Q4_1 llama GGUF (Q8_0 embeddings, like SmolLM2's) written by the gguf package."""
    tokens, merges, types = vocabulary(bpe_tok)
    hf = hf_llama(len(tokens))
    path = tmp_path_factory.mktemp("written") / "tiny.gguf"
    write_llama_gguf(path, hf, tokens, merges, types)
    return path, tokens


def test_metadata_becomes_the_config_and_the_tokenizer_roles(written):
    path, tokens = written
    model, tokenizer = load_gguf(path)
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.num_blocks) == (len(tokens), 64, 2)
    assert (c.num_heads, c.num_kv_heads) == (4, 2)
    assert (c.mlp_hidden_size, c.context_length, c.rope_theta, c.norm_eps) == (96, 128, 500000.0, 0.05)
    assert c.tie_embeddings and not c.bias and (c.position, c.norm, c.mlp) == ("rope", "rmsnorm", "swiglu")
    assert model.lm_head.weight is model.embed_tokens.weight
    # roles come from the ids in the file, not from names (the vocabulary also holds <eos>, <bos>)
    assert tokenizer.eos_id == tokens.index("<|im_end|>") != tokenizer.token_to_id("<eos>")
    assert tokenizer.bos_id == tokens.index("<|begin_of_text|>")
    assert tokenizer.end_of_turn_id == tokens.index("<|eot_id|>")
    assert tokenizer.pad_id == tokens.index("<pad>")
    assert tokenizer.chat_template == CHATML
    again = tokenizer_from_json(tokenizer.to_json())  # what a run's tokenizer.json holds
    assert (again.eos_id, again.end_of_turn_id, again.chat_template) == (tokenizer.eos_id,
                                                                         tokenizer.end_of_turn_id, CHATML)
    assert tokenizer.encode("<|im_start|>user\nhi<|im_end|>")[0] == tokens.index("<|im_start|>")


def test_quantized_llama_computes_what_transformers_gguf_loader_computes(written):
    """transformers dequantizes and un-permutes the same file with its own code."""
    path, tokens = written
    model, _ = load_gguf(path)
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                  dtype=torch.float32).eval()
    x = prompts(len(tokens), length=40)
    with torch.no_grad():
        assert (model(x)[0] - theirs(x).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe"])
def test_text_is_tokenized_as_llamacpp_does(pre, bpe_tok, tmp_path):
    tokens, merges, types = vocabulary(bpe_tok)
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, hf_llama(len(tokens)), tokens, merges, types, pre=pre, quant=Q.Q8_0)
    _, tokenizer = load_gguf(path)
    texts = [MIXED, "  12 times 3 is 36;\n\n  2024 it's   DONE\t'LL x99y, 1234567", "a zqxj b",
             "<|im_start|>user\nhi<|im_end|>\n"]
    with LlamaCppModel(path, context=128) as llama:
        for text in texts:
            assert tokenizer.encode(text) == llama.tokenize(text), text


@pytest.mark.parametrize("template", [CHATML, LLAMA3])
def test_convert_writes_a_run_that_keeps_roles_and_template(template, bpe_tok, tmp_path, capsys):
    tokens, merges, types = vocabulary(bpe_tok)
    hf = hf_llama(len(tokens))
    write_llama_gguf(tmp_path / "m.gguf", hf, tokens, merges, types, template=template, quant=Q.Q8_0)
    assert main(["convert", str(tmp_path / "m.gguf"), "--output", str(tmp_path / "run")]) == 0
    assert {"final_model.pt", "config.json", "tokenizer.json", "model.safetensors"} <= {
        p.name for p in (tmp_path / "run").iterdir()}
    model, tokenizer, _ = load_model(tmp_path / "run")
    direct, _ = load_gguf(tmp_path / "m.gguf")
    x = prompts(len(tokens))
    with torch.no_grad():
        assert torch.equal(model(x)[0], direct(x)[0])
    assert tokenizer.chat_template == template and tokenizer.eos_id == tokens.index("<|im_end|>")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["norm_eps"] == 0.05


@pytest.mark.parametrize("pre", ["smollm", "llama-bpe"])
def test_an_imported_model_exports_back_with_its_split_roles_and_template(pre, bpe_tok, tmp_path):
    """A fine-tuned import goes back to llama.cpp and transformers as it came: the text split
    the same way (SmolLM2 writes every digit alone), its own end markers and chat template."""
    tokens, merges, types = vocabulary(bpe_tok)
    write_llama_gguf(tmp_path / "m.gguf", hf_llama(len(tokens)), tokens, merges, types, pre=pre,
                     template=LLAMA3, quant=Q.Q8_0)
    model, tokenizer = load_gguf(tmp_path / "m.gguf")
    export_gguf(model, tokenizer, tmp_path / "back.gguf", "f32")
    text = "  12 times 3 is 36;\n 2024 it's DONE x99y, 1234567 <|im_end|>"
    with LlamaCppModel(tmp_path / "back.gguf", context=128) as llama:
        assert llama.tokenize(text) == tokenizer.encode(text)
    _, again = load_gguf(tmp_path / "back.gguf")
    assert again.chat_template == LLAMA3
    assert (again.bos_id, again.eos_id, again.end_of_turn_id, again.pad_id) == (
        tokens.index("<|begin_of_text|>"), tokens.index("<|im_end|>"), tokens.index("<|eot_id|>"),
        tokens.index("<pad>"))
    assert main(["convert", str(tmp_path / "m.gguf"), "--output", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "hf", "--output", str(tmp_path / "hf")]) == 0
    theirs = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert theirs.chat_template == LLAMA3 and theirs.eos_token == "<|im_end|>"
    assert theirs.bos_token == "<|begin_of_text|>" and theirs.encode(text) == tokenizer.encode(text)


def test_init_from_a_gguf_fine_tunes_it(char_tok, tmp_path, capsys):
    model = tiny_model(char_tok, **LLAMA, num_kv_heads=2)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    (tmp_path / "data.txt").write_text(CORPUS, encoding="utf-8")
    code = main(["train", "--init_from", str(tmp_path / "m.gguf"), "--data_path", str(tmp_path / "data.txt"),
                 "--max_steps", "2", "--batch_size", "2", "--eval_interval", "2", "--eval_batches", "1",
                 "--sample_length", "0", "--num_samples", "0", "--output_dir", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    trained, tokenizer, data = load_model(tmp_path / "run")
    imported, _ = load_gguf(tmp_path / "m.gguf")
    assert trained.config == imported.config and tokenizer.tokens == char_tok.tokens and data["step"] == 2
    start = imported.state_dict()
    for name, w in trained.state_dict().items():  # two small steps away from the file's weights
        assert (w - start[name]).abs().max() < 0.01, name


def test_hf_import_keeps_the_norm_epsilon(bpe_tok, tmp_path, capsys):
    """A Llama whose rms_norm_eps is far from LANTERN's old fixed 1e-6 computes the same, read
    directly or converted to a run."""
    from lantern.export.hf_tokenizer import save_hf_tokenizer

    hf = hf_llama(bpe_tok.vocab_size)
    hf.save_pretrained(tmp_path / "hf")
    save_hf_tokenizer(bpe_tok, tmp_path / "hf")
    model, _ = load_hf_checkpoint(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--output", str(tmp_path / "run")]) == 0
    converted, _, _ = load_model(tmp_path / "run")
    x = prompts(bpe_tok.vocab_size)
    with torch.no_grad():
        assert (model(x)[0] - hf(x).logits).abs().max().item() < 1e-4
        assert torch.equal(converted(x)[0], model(x)[0])


def test_configs_without_norm_eps_keep_their_old_epsilon():
    """Checkpoints saved before norm_eps existed: RMSNorm 1e-6, LayerNorm 1e-5, as they had."""
    from conftest import tiny_config

    from lantern.models.lantern_model import LANTERNModel

    x = (torch.arange(32.0) - 15.5) * 1e-4  # values so small that the epsilon dominates
    for norm, eps in (("rmsnorm", 1e-6), ("layernorm", 1e-5)):
        layer = LANTERNModel(tiny_config(norm=norm)).transformer.norm
        expected = x / torch.sqrt((x * x).mean() + eps)  # x has mean 0: LayerNorm's centring is a no-op
        with torch.no_grad():
            assert torch.allclose(layer(x), expected, rtol=1e-4), norm


# --- bad input: one line, exit 1, nothing written -----------------------------------------------

def refused(args: list[str], capsys, tmp_path) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lantern: error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    return err


def test_bad_models_are_refused_in_one_line(bpe_tok, char_tok, tmp_path, capsys):
    out = str(tmp_path / "out")
    err = refused(["convert", "no-such-model", "--output", out], capsys, tmp_path)
    assert "no-such-model is neither a file" in err and "smollm2-135m-instruct" in err

    tokens, merges, types = vocabulary(bpe_tok)
    hf = hf_llama(len(tokens))
    write_llama_gguf(tmp_path / "falcon.gguf", hf, tokens, merges, types, arch="falcon", quant=Q.Q8_0)
    assert "architecture 'falcon' cannot be imported" in refused(
        ["convert", str(tmp_path / "falcon.gguf"), "--output", out], capsys, tmp_path)

    write_llama_gguf(tmp_path / "q5.gguf", hf, tokens, merges, types, quant=Q.Q5_0)
    assert "is Q5_0; LANTERN reads F32, F16, BF16, Q8_0, Q4_0, Q4_1" in refused(
        ["convert", str(tmp_path / "q5.gguf"), "--output", out], capsys, tmp_path)

    write_llama_gguf(tmp_path / "extra.gguf", hf, tokens, merges, types, quant=Q.Q8_0,
                     extra_tensor="rope_freqs.weight")
    assert "tensor rope_freqs.weight has no counterpart" in refused(
        ["convert", str(tmp_path / "extra.gguf"), "--output", out], capsys, tmp_path)

    write_llama_gguf(tmp_path / "pre.gguf", hf, tokens, merges, types, pre="deepseek-coder", quant=Q.Q8_0)
    assert "splits text as 'deepseek-coder'" in refused(
        ["convert", str(tmp_path / "pre.gguf"), "--output", out], capsys, tmp_path)

    export_gguf(tiny_model(char_tok, **LLAMA), char_tok, tmp_path / "whole.gguf", "f32")
    data = (tmp_path / "whole.gguf").read_bytes()
    for cut in (len(data) // 2, 200):
        (tmp_path / "cut.gguf").write_bytes(data[:cut])
        assert "damaged GGUF file" in refused(
            ["convert", str(tmp_path / "cut.gguf"), "--output", out], capsys, tmp_path)
    (tmp_path / "text.gguf").write_text("hello")
    assert "is not a GGUF file" in refused(
        ["convert", str(tmp_path / "text.gguf"), "--output", out], capsys, tmp_path)
    assert "is not a GGUF file" in refused(
        ["train", "--init_from", str(tmp_path / "text.gguf"), "--output_dir", out], capsys, tmp_path)


def test_convert_never_replaces_a_run_without_overwrite(char_tok, tmp_path, capsys):
    export_gguf(tiny_model(char_tok, **LLAMA), char_tok, tmp_path / "m.gguf", "f32")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert main(["convert", str(tmp_path / "m.gguf"), "--output", str(tmp_path / "out")]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


# --- the real SmolLM2-135M-Instruct file, when `lantern pull smollm2-135m-instruct` has fetched it --

needs_smollm2 = pytest.mark.skipif(
    not SMOLLM2.is_file(), reason=f"{SMOLLM2} is not in the cache; `lantern pull smollm2-135m-instruct`")


@needs_smollm2
def test_smollm2_metadata_and_tokenizer():
    """What the file says becomes the config and tokenizer (the whole model against transformers
    and llama.cpp: benchmarks/pretrained_parity.py; the gguf reader alone takes ~10 s here)."""
    config, tokenizer = read_description(open_gguf(SMOLLM2))
    assert (config.num_blocks, config.hidden_size, config.num_heads, config.num_kv_heads) == (30, 576, 9, 3)
    assert (config.vocab_size, config.context_length, config.rope_theta, config.norm_eps) == (
        49152, 8192, 100000.0, 1e-5)
    assert config.tie_embeddings and config.mlp_hidden_size == 1536
    assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>") == 2
    assert "<|im_start|>" in tokenizer.chat_template
    # ids checked by hand against llama.cpp's tokenizer on this file: digits one by one
    assert tokenizer.encode("In 2024, 12 times 3") == [788, 216, 34, 32, 34, 36, 28, 216, 33, 34, 1711,
                                                       216, 35]
