"""GGUF export, checked by llama.cpp itself (xllamacpp): log-probabilities, greedy tokens and
tokenization against LANTERN on the same weights; every bad input is one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_TEXT
from conftest import perturbed_model as tiny_model

from lantern.api import LLM
from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.export.gguf_export import export_gguf
from lantern.generation.backends.llamacpp import LlamaCppModel
from lantern.generation.settings import GenerationConfig
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter
from tests.conftest import save_run

MIXED = "Árvíztűrő tükörfúrógép: ő és ű 🙂 hello world!\n<user>Szia 🙂</user><assistant>ok"
CORPUS = TINY_TEXT + "Szép napot! Ő és ű. Árvíztűrő tükörfúrógép.\n"
LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
ARCHS = {
    "llama-gqa-recursive": LLAMA | dict(num_kv_heads=2, steps_per_block=2),
    "llama-bias-untied": LLAMA | dict(bias=True, tie_embeddings=False),
    "qwen2-gqa": LLAMA | dict(qkv_bias=True, num_kv_heads=2),
    "gpt2-learned": dict(position="learned"),
    "gpt2-sinusoidal-gqa-nobias": dict(position="sinusoidal", bias=False, num_kv_heads=2,
                                       tie_embeddings=False),
}
F32_TOLERANCE = 1e-3  # measured: llama 2e-6; gpt2 9e-4 (ggml's GELU reads an fp16 table)
F16_TOLERANCE = 2e-2  # weights rounded to 11 significant bits


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    return CharTokenizer.train([CORPUS])


def lantern_logprobs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids]))[0][0, -1].double(), -1).numpy()


def worst_logprob_gap(model, gguf, prompts: list[list[int]]) -> float:
    gaps = []
    for ids in prompts:
        for end in range(1, len(ids) + 1, 3):
            gap = lantern_logprobs(model, ids[:end]) - gguf.next_token_logprobs(ids[:end])
            gaps.append(np.abs(gap).max())
    return float(max(gaps))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_llamacpp_f32_matches_lantern(arch, char_tok, tmp_path):
    model = tiny_model(char_tok, **ARCHS[arch])
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    prompts = [char_tok.encode("Once upon a time, ő 🙂"), char_tok.encode("<user>Szia</user>")]
    with LlamaCppModel(tmp_path / "m.gguf", exact=True) as gguf:
        assert worst_logprob_gap(model, gguf, prompts) < F32_TOLERANCE
        for ids in prompts:
            ours = LLM(model).generate(torch.tensor([ids]), max_new_tokens=40, temperature=0)[0, len(ids):]
            ours = ours.tolist()
            if char_tok.eos_id in ours:  # llama.cpp stops at end-of-sequence; compare up to it
                ours = ours[: ours.index(char_tok.eos_id)]
            assert gguf.greedy(ids, 40)[: len(ours)] == ours


def test_f16_and_quantized_files_load_and_stay_close(char_tok, tmp_path):
    model = tiny_model(char_tok, **LLAMA)
    prompts = [char_tok.encode("Once upon a time, ő 🙂")]
    gaps = {}
    for outtype in ("f16", "bf16", "q8_0", "q4_0"):
        export_gguf(model, char_tok, tmp_path / f"{outtype}.gguf", outtype)
        with LlamaCppModel(tmp_path / f"{outtype}.gguf", exact=True) as gguf:
            gaps[outtype] = worst_logprob_gap(model, gguf, prompts)
    assert gaps["f16"] < F16_TOLERANCE
    # measured on this model: f16 2e-3, bf16 2e-2, q8_0 8e-2, q4_0 1.1 (llama.cpp also
    # quantizes activations for q8_0/q4_0 matrix products)
    assert gaps["f16"] < gaps["bf16"] < 0.1 and gaps["q8_0"] < 0.3
    assert gaps["q4_0"] < 3.0
    sizes = {t: (tmp_path / f"{t}.gguf").stat().st_size for t in gaps}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"]


def test_wrong_rope_layout_would_be_caught(char_tok, tmp_path, monkeypatch):
    """Without llama.cpp's query/key permutation the log-probabilities are far off."""
    from lantern.export.arches import llama

    model = tiny_model(char_tok, **LLAMA)
    monkeypatch.setattr(llama, "rope_permute", lambda w, heads: w)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    with LlamaCppModel(tmp_path / "m.gguf", exact=True) as gguf:
        assert worst_logprob_gap(model, gguf, [char_tok.encode("Once upon a time")]) > 1e-2


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizers_agree_in_lantern_and_llamacpp(kind, tmp_path):
    if kind == "char":
        tok = CharTokenizer.train(["hello world <user> once upon"])  # ő, ű, 🙂: byte fallback
    else:
        tok = HFTokenizerAdapter.train_bpe([CORPUS], 320)
    model = tiny_model(tok, **LLAMA)
    export_gguf(model, tok, tmp_path / "m.gguf", "f32")
    texts = [MIXED, "  two  spaces\n\nand tabs\t🙂🙂 ő", "ű"]
    with LlamaCppModel(tmp_path / "m.gguf") as gguf:
        for text in texts:
            assert gguf.tokenize(text) == tok.encode(text)
        assert gguf.detokenize(tok.encode("ő és ű 🙂")) == "ő és ű 🙂"


def test_generate_front_streams_llamacpp_text(char_tok, tmp_path, capsys):
    """`lantern generate --checkpoint FILE.gguf` (greedy) prints what LANTERN's greedy text is."""
    model = tiny_model(char_tok, **LLAMA)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    prompt = "Once upon"
    ids = char_tok.encode(prompt)
    ours = LLM(model).generate(torch.tensor([ids]), max_new_tokens=20, temperature=0)[0, len(ids):].tolist()
    if char_tok.eos_id in ours:
        ours = ours[: ours.index(char_tok.eos_id)]
    argv = ["generate", "--checkpoint", str(tmp_path / "m.gguf"), "--prompt", prompt,
            "--max_new_tokens", "20", "--temperature", "0"]
    assert main(argv) == 0
    assert capsys.readouterr().out == prompt + char_tok.decode(ours) + "\n"
    assert main(argv[:-2] + ["--num_beams", "2"]) == 1
    assert "--num_beams: not available for a .gguf" in capsys.readouterr().err


def test_sampling_settings_reach_llamacpp(char_tok, tmp_path):
    model = tiny_model(char_tok, **LLAMA)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    ids = char_tok.encode("Once upon")
    with LlamaCppModel(tmp_path / "m.gguf") as gguf:
        config = GenerationConfig(max_new_tokens=12, temperature=1.5, seed=5)
        a, b = gguf.generate(ids, config), gguf.generate(ids, config)
        assert a.text == b.text and a.num_tokens == 12 and a.stop_reason == "length"
        assert gguf.generate(ids, config, row=1).text != a.text  # row i samples with seed + i
        greedy = gguf.generate(ids, GenerationConfig(max_new_tokens=12, temperature=0.0, top_k=1))
        top1 = gguf.generate(ids, GenerationConfig(max_new_tokens=12, temperature=5.0, top_k=1, seed=1))
        assert greedy.text == top1.text  # top_k 1 leaves only the argmax, whatever the temperature
        stop = greedy.text[3:5]
        cut = gguf.generate(ids, GenerationConfig(max_new_tokens=12, temperature=0.0, stop_strings=(stop,)))
        assert cut.stop_reason == "stop_string" and cut.text == greedy.text[: greedy.text.index(stop)]
        letter = next(c for c in greedy.text[1:] if len(char_tok.encode(c)) == 1)  # a vocabulary char
        halted = gguf.generate(ids, GenerationConfig(max_new_tokens=12, temperature=0.0),
                               stop_ids={char_tok.token_to_id(letter)})
        assert halted.stop_reason == "stop_token" and halted.text == greedy.text[: greedy.text.index(letter)]


def test_cli_bad_input_is_one_clear_line(char_tok, tmp_path, capsys):
    save_run(tiny_model(char_tok, **LLAMA, hidden_size=48, num_heads=4), char_tok, tmp_path / "run",
             step=7, val_loss=3.5)
    out = tmp_path / "m.gguf"

    def export(*extra: str) -> str:
        assert main(["export", str(tmp_path / "run"), "--format", "gguf", "--output", str(out), *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith("lantern: error: ") and err.count("\n") == 1 and "Traceback" not in err
        return err

    assert "unknown --outtype 'q5_k'" in export("--outtype", "q5_k")
    assert "hidden_size is 48" in export("--outtype", "q4_0")
    assert not out.exists()
    assert main(["export", str(tmp_path / "run"), "--format", "gguf", "--output", str(out),
                 "--outtype", "f32"]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert "already exists" in export("--outtype", "f16")
    assert out.read_bytes() == before
    unigram = HFTokenizerAdapter.train_unigram([CORPUS], 320)
    save_run(tiny_model(unigram, **LLAMA), unigram, tmp_path / "uni", step=7, val_loss=3.5)
    assert main(["export", str(tmp_path / "uni"), "--format", "gguf",
                 "--output", str(tmp_path / "u.gguf")]) == 1
    assert "no exact equivalent of a unigram tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-gguf"])
def test_corrupt_gguf_is_refused_by_info_and_generate(damage, char_tok, tmp_path, capsys):
    model = tiny_model(char_tok, **LLAMA)
    good = tmp_path / "good.gguf"
    export_gguf(model, char_tok, good, "f32")
    data = good.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": data[:24] + b"\xff" * 500,
                     "not-gguf": b"hello"}[damage])
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lantern: error: ") and err.count("\n") == 1
    with pytest.raises(LanternError, match="GGUF"):
        LlamaCppModel(bad)


def test_chat_front_runs_commands_and_answers(char_tok, tmp_path, monkeypatch, capsys):
    """`lantern chat --checkpoint FILE.gguf --template plain`: /commands, then a greedy answer."""
    model = tiny_model(char_tok, **LLAMA)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    lines = iter(["/temp 0", "/len 8", "/topk nope", "Once upon", "/quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(lines))
    assert main(["chat", "--checkpoint", str(tmp_path / "m.gguf"), "--template", "plain",
                 "--max_new_tokens", "100", "--temperature", "1.0"]) == 0
    captured = capsys.readouterr()
    assert "error: /topk: 'nope' is not a number" in captured.out
    ids = char_tok.encode("Once upon")
    ours = LLM(model).generate(torch.tensor([ids]), max_new_tokens=8, temperature=0)[0, len(ids):].tolist()
    if char_tok.eos_id in ours:
        ours = ours[: ours.index(char_tok.eos_id)]
    assert "Once upon" + char_tok.decode(ours) + "\n" in captured.out


@pytest.mark.parametrize("penalties", [dict(repetition_penalty=1.5), dict(presence_penalty=1.0),
                                       dict(frequency_penalty=0.7)])
def test_penalties_mean_the_same_in_llamacpp(penalties, char_tok, tmp_path):
    """Greedy decoding with each penalty: LANTERN's PyTorch path and llama.cpp pick the same
    tokens, so the penalties count the same tokens (prompt included) the same way."""
    from lantern.generation.textgen import complete

    model = tiny_model(char_tok, **LLAMA)
    export_gguf(model, char_tok, tmp_path / "m.gguf", "f32")
    # llama.cpp may emit any byte token; so may LANTERN's path here, and only penalties differ
    char_tok = CharTokenizer.train([CORPUS])
    char_tok.seen_bytes.update(range(256))
    prompt = "Once upon a time, a little fox"
    ids = char_tok.encode(prompt)
    config = GenerationConfig(max_new_tokens=30, temperature=0.0, **penalties)
    plain = GenerationConfig(max_new_tokens=30, temperature=0.0)
    ours = complete(model, char_tok, [prompt], [ids], config, {char_tok.eos_id})[0]
    assert ours.text != complete(model, char_tok, [prompt], [ids], plain, {char_tok.eos_id})[0].text
    with LlamaCppModel(tmp_path / "m.gguf", exact=True) as gguf:
        theirs = gguf.generate(ids, config)
    assert (theirs.text, theirs.num_tokens) == (ours.text, ours.num_tokens)
