"""Tokenizers: exact round trips for every type, special tokens, files, and bad input."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from lantern import chat_template
from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.tokenizers import (
    SPECIAL_TOKENS,
    CharTokenizer,
    TiktokenTokenizer,
    load_tokenizer,
    resolve_tokenizer,
    tokenizer_from_json,
)
from lantern.tokenizers.bpe import HFTokenizerAdapter
from lantern.tokenizers.training import train_tokenizer

MIXED = ("Árvíztűrő tükörfúrógép: ő, ű, Ő, Ű. The cat sleeps. 😀🎉👩‍👩‍👧 汉字かなカナ 한국어 "
         "<eos><assistant>Szia!</assistant>\n\t  tabs\r\nend")
CORPUS = ("Once upon a time a little fox found a red ball. A macska alszik a kertben.\n"
          "<user>What is 2 + 2?</user><assistant>2 + 2 = 4</assistant><eos>\n") * 200


def write_tiktoken_file(path) -> None:
    """A small real tiktoken rank file: the 256 bytes, then a few merges."""
    tokens = [bytes([b]) for b in range(256)] + [b"th", b"he", b"the", b" t", b" the"]
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(tokens)))


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(params=["bpe", "unigram", "char", "tiktoken"])
def any_tokenizer(request, corpus_file, tmp_path):
    if request.param == "tiktoken":
        rank_file = tmp_path / "tiny.tiktoken"
        write_tiktoken_file(rank_file)
        return TiktokenTokenizer(str(rank_file))
    return train_tokenizer([corpus_file], request.param, vocab_size=400)


def test_mixed_text_round_trips_exactly(any_tokenizer):
    ids = any_tokenizer.encode(MIXED)
    assert any_tokenizer.decode(ids) == MIXED
    assert all(0 <= i < any_tokenizer.vocab_size for i in ids)


def test_reloaded_tokenizer_encodes_identically(any_tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(any_tokenizer.to_json(), encoding="utf-8")
    again = load_tokenizer(path)
    assert again.encode(MIXED) == any_tokenizer.encode(MIXED)
    assert again.vocab_size == any_tokenizer.vocab_size


@pytest.mark.parametrize("kind", ["bpe", "unigram", "char"])
def test_special_tokens_are_single_ids_and_never_split(corpus_file, kind):
    tok = train_tokenizer([corpus_file], kind, vocab_size=400)
    for special in SPECIAL_TOKENS:
        ids = tok.encode(f"x{special}y")
        assert tok.token_to_id(special) in ids
        assert tok.decode(ids) == f"x{special}y"
    assert tok.encode("<eos>") == [tok.eos_id]
    # the same ids in every vocabulary, so a model's special ids never depend on its tokenizer
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_special_tokens_take_the_chat_tags_from_the_chat_template():
    assert set(chat_template.CHAT_TAGS) <= set(SPECIAL_TOKENS)
    assert chat_template.example("Hi", "Szia", "Be kind.") == (
        "<system>Be kind.</system><user>Hi</user><assistant>Szia</assistant>")


def test_bpe_reaches_vocab_size_respects_max_token_length_and_compresses(corpus_file):
    def longest(tok) -> int:
        return max(len(tok.decode([i])) for i in range(len(SPECIAL_TOKENS), tok.vocab_size))

    short = train_tokenizer([corpus_file], "bpe", vocab_size=290, max_token_length=3)
    assert short.vocab_size == 290  # the corpus has merges for more: the size asked for is kept
    assert longest(short) <= 3
    assert len(short.encode(CORPUS)) < len(CORPUS.encode("utf-8")) * 0.6
    assert longest(train_tokenizer([corpus_file], "bpe", vocab_size=400, max_token_length=16)) > 3


def test_char_vocabulary_layout_and_byte_fallback_ids():
    """Specials, then the sorted characters, then the 256 byte tokens <0x00>..<0xFF>; an unseen
    character is its UTF-8 bytes (é = C3 A9), so `héllo` never becomes `h<unk>llo`."""
    tok = CharTokenizer.train(["hello"])
    n = len(SPECIAL_TOKENS)
    assert [tok.token_to_id(c) for c in "ehlo"] == [n, n + 1, n + 2, n + 3]
    first_byte = n + 4
    assert tok.vocab_size == first_byte + 256 and tok.token_to_id("<0xC3>") == first_byte + 0xC3
    assert tok.encode("hé") == [n + 1, first_byte + 0xC3, first_byte + 0xA9]
    assert tok.encode("<0xC3>") == tok.encode("<") + tok.encode("0xC3>")  # names are not text
    assert tok.decode(tok.encode("héllo 😀 ő")) == "héllo 😀 ő"
    assert tok.decode([first_byte + 0xC3]) == "\ufffd"  # half a character: replaced, not raised


def test_char_vocabulary_saved_before_byte_fallback_loads_as_before():
    """A tokenizer.json written by db17e2b's `train` (no byte_fallback key) keeps its ids."""
    old = json.dumps({"format": "lantern-char", "special_tokens": list(SPECIAL_TOKENS),
                      "chars": list("ehlo")}, ensure_ascii=False)
    tok = tokenizer_from_json(old)
    n, unk = len(SPECIAL_TOKENS), SPECIAL_TOKENS.index("<unk>")
    assert tok.vocab_size == n + 4 and tok.token_to_id("<0xC3>") is None
    assert tok.encode("hé") == [n + 1, unk]
    assert json.loads(tok.to_json()) == json.loads(old)
    with pytest.raises(LanternError, match="outside"):
        tok.decode([n + 4])


def test_bad_text_is_a_clear_error_for_every_kind(any_tokenizer):
    with pytest.raises(LanternError, match="lone surrogate U\\+DCFF at character 3"):
        any_tokenizer.encode("caf\udcff")
    with pytest.raises(LanternError, match="not bytes"):
        any_tokenizer.encode(b"cafe")


def test_tiktoken_maps_eos_to_endoftext(tmp_path):
    rank_file = tmp_path / "tiny.tiktoken"
    write_tiktoken_file(rank_file)
    tok = resolve_tokenizer("tiktoken", str(rank_file))
    assert tok.eos_id == 261 and tok.vocab_size == 262  # ranks 0..260, then <|endoftext|>
    ids = tok.encode("the end<eos>the")
    # by hand: "the" merges t+h (256) then th+e (258); " end" has no merges: its bytes
    assert ids == [258, 32, 101, 110, 100, 261, 258]
    assert tok.decode(ids) == "the end<eos>the"
    assert tok.decode(ids, skip_special_tokens=True) == "the endthe"


def test_tiktoken_missing_or_bad_file_is_a_clear_error(tmp_path):
    with pytest.raises(LanternError, match="not found"):
        TiktokenTokenizer(str(tmp_path / "missing.tiktoken"))
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("this is not a rank file\n")
    with pytest.raises(LanternError, match="not a tiktoken rank file"):
        TiktokenTokenizer(str(bad))


def test_tiktoken_found_in_lantern_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERN_CACHE", str(tmp_path))
    (tmp_path / "tiktoken").mkdir()
    write_tiktoken_file(tmp_path / "tiktoken" / "r50k_base.tiktoken")
    tok = TiktokenTokenizer("gpt2")
    assert tok.decode(tok.encode("the cat")) == "the cat"
    assert json.loads(tok.to_json()) == {"format": "lantern-tiktoken", "encoding": "gpt2"}


def test_foreign_json_is_rejected(tmp_path):
    other = tmp_path / "package.json"
    other.write_text(json.dumps({"name": "something", "version": "1.0"}))
    with pytest.raises(LanternError, match="not a LANTERN or Hugging Face tokenizer"):
        load_tokenizer(other)
    with pytest.raises(LanternError, match="not valid JSON"):
        tokenizer_from_json("{oops")


def test_cli_train_encode_decode(corpus_file, tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--data", str(corpus_file), "--vocab_size", "400",
                 "--type", "unigram", "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "Szia ő 😀"]) == 0
    ids = json.loads(capsys.readouterr().out)
    assert main(["tokenizer", "decode", "--tokenizer", str(out), json.dumps(ids)]) == 0
    assert capsys.readouterr().out == "Szia ő 😀\n"


CLI_ERRORS = {"missing": "not found", "binary": "binary", "small_vocab": "too small for BPE",
              "not_tokens": "not valid JSON", "output_is_data": "is one of the --data files",
              "unused_flag": "--min_freq does not apply to --type unigram"}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_bad_input_one_line_error_nothing_overwritten(case, corpus_file, tmp_path, capsys):
    out = tmp_path / "tok.json"
    out.write_text("precious")
    corpus_before = corpus_file.read_bytes()
    data = corpus_file
    argv = ["tokenizer", "train", "--vocab_size", "400", "--output", str(out), "--overwrite"]
    if case == "missing":
        data = tmp_path / "nope.txt"
    elif case == "binary":
        data = tmp_path / "blob.bin"
        data.write_bytes(bytes(range(256)) * 10)
    elif case == "small_vocab":
        argv[3] = "100"
    elif case == "output_is_data":
        argv[5] = str(corpus_file)
    elif case == "unused_flag":
        argv += ["--type", "unigram", "--min_freq", "3"]
    if case == "not_tokens":
        argv = ["tokenizer", "decode", "--tokenizer", str(corpus_file), "[1, 2]"]
    else:
        argv += ["--data", str(data)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lantern: error: ") and err.count("\n") == 1
    assert CLI_ERRORS[case] in err
    assert out.read_text() == "precious" and corpus_file.read_bytes() == corpus_before


def test_cli_train_refuses_to_overwrite(corpus_file, tmp_path, capsys):
    out = tmp_path / "tok.json"
    out.write_text("precious")
    assert main(["tokenizer", "train", "--data", str(corpus_file), "--output", str(out),
                 "--vocab_size", "400"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "precious"


def test_trainer_uses_tiktoken_with_a_local_encoding_file(tmp_path):
    from lantern.training.trainer import TrainConfig, prepare_data

    rank_file = tmp_path / "tiny.tiktoken"
    write_tiktoken_file(rank_file)
    data = prepare_data(TrainConfig(tokenizer="tiktoken", encoding=str(rank_file),
                                    corpus_chars=3000), None)
    assert data.tokenizer.kind == "tiktoken" and data.tokenizer.vocab_size == 262
    assert data.tokenizer.eos_id in np.asarray(data.train_tokens).tolist()


def test_a_vocabularys_own_special_tokens_are_never_split():
    """Special tokens given to the constructor (e.g. `</think>`, `<lat>`) are single ids in text."""
    from lantern.tokenizers.base import SPECIAL_TOKENS

    specials = (*SPECIAL_TOKENS, "</think>", "<lat>")
    tok = CharTokenizer(list("0123+"), special_tokens=specials, byte_fallback=False)
    ids = tok.encode("1+2<think><lat></think>3<eos>")
    assert [tok.tokens[i] for i in ids] == ["1", "+", "2", "<think>", "<lat>", "</think>", "3",
                                            "<eos>"]
    assert tok.decode(ids) == "1+2<think><lat></think>3<eos>"


@pytest.mark.parametrize(("specials", "eos", "bos"), [
    (["<s>", "</s>"], "</s>", "<s>"),  # SentencePiece Llama / Mistral
    (["<|begin_of_text|>", "<|end_of_text|>"], "<|end_of_text|>", "<|begin_of_text|>"),  # Llama 3
    (["</s>", "<eos>", "<bos>", "<s>"], "<eos>", "<bos>"),  # LANTERN's own names win
    (["<unk>"], None, None),
])
def test_end_and_start_markers_of_imported_vocabularies(specials, eos, bos):
    """Generation stops at a vocabulary's end marker whatever it is called: an imported Llama's
    `</s>` used to give no eos_id, so its generations never stopped."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    hf = HFTokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    hf.add_special_tokens(specials)
    tok = HFTokenizerAdapter(hf, "wordlevel")
    assert tok.eos_id == (None if eos is None else hf.token_to_id(eos))
    assert tok.bos_id == (None if bos is None else hf.token_to_id(bos))
