"""Token files (streamed text, JSONL, shards), stats and dedupe, and the data CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

import lantern.data.token_store as token_store
from lantern.cli.main import main
from lantern.data.quality import dedupe, file_stats
from lantern.data.stories import build_corpus
from lantern.errors import LanternError
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter
from lantern.tokenizers.gguf_vocab import PRE_TOKENIZERS
from lantern.tokenizers.training import train_tokenizer

LINES = ["Árvíztűrő tükörfúrógép 😀", "The cat sleeps.", "", "The cat sleeps.", "汉字 <eos> x"]


@pytest.fixture
def stories(tmp_path):
    path = tmp_path / "stories.txt"
    text = "\n".join(build_corpus(60_000, seed=3)) + "\n\n  indented\nÁrvíztűrő 😀\n"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def bpe(stories):
    return train_tokenizer([stories], "bpe", vocab_size=600)


def documents_reference(path, tokenizer) -> list[int]:
    """Independent reference: every non-blank line is a document, encoded alone, closed by <eos>."""
    return [i for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            for i in [*tokenizer.encode(line), tokenizer.eos_id]]


def test_streamed_encoding_equals_whole_text_encoding(stories, bpe, monkeypatch):
    monkeypatch.setattr(token_store, "_PIECE_CHARS", 777)
    monkeypatch.setattr(token_store, "_BLOCK_BYTES", 5000)
    text = stories.read_text(encoding="utf-8")
    streamed = np.concatenate(list(token_store.iter_file_tokens(stories, bpe)))
    blocks = list(token_store.read_text_blocks(stories, block_bytes=4096))
    assert len(blocks) > 10 and "".join(blocks) == text
    assert streamed.tolist() == bpe.encode(text)


@pytest.mark.parametrize("split", ["gpt-2", "llama-bpe"])
def test_streamed_encoding_of_paragraphs_equals_whole_text_encoding(tmp_path, monkeypatch, split):
    """Blank lines between paragraphs, runs of spaces and punctuation before newlines: GPT-2's
    split reads "\n\n" before a word as two tokens, Llama 3's keeps ".\n\n" together; a piece
    boundary must change neither."""
    stories = build_corpus(40_000, seed=5)
    paragraphs = ["\n".join(stories[i:i + 2]) for i in range(0, len(stories), 2)]
    text = "".join(p + ("\n\n", "\n\n\n")[i % 2] for i, p in enumerate(paragraphs))
    text = text.replace(". ", ".  ", 50) + "  end.\n"
    path = tmp_path / "paragraphs.txt"
    path.write_text(text, encoding="utf-8")
    trained = train_tokenizer([path], "bpe", vocab_size=800)
    hf = HFTokenizer.from_str(trained.hf.to_str())
    split_fn, ignore_merges = PRE_TOKENIZERS[split]
    hf.pre_tokenizer = split_fn()
    hf.model.ignore_merges = ignore_merges
    tokenizer = HFTokenizerAdapter(hf, "bpe")
    assert tokenizer.token_to_id("\u010a\u010a") is not None  # "\n\n" is one token in this vocabulary
    monkeypatch.setattr(token_store, "_PIECE_CHARS", 300)
    monkeypatch.setattr(token_store, "_BLOCK_BYTES", 2000)
    streamed = np.concatenate(list(token_store.iter_file_tokens(path, tokenizer)))
    assert streamed.tolist() == tokenizer.encode(text)


def test_load_tokens_caches_text_and_reads_jsonl_and_shards(stories, bpe, tmp_path, capsys):
    ids = token_store.load_tokens(stories, bpe)
    assert isinstance(ids, np.memmap) and bpe.decode(ids.tolist()) == stories.read_text()
    tok_file = tmp_path / "bpe.json"
    tok_file.write_text(bpe.to_json())
    for out, extra in (("t.jsonl", ["--max_length", "16"]), ("t.bin", []),
                       ("shards", ["--shard_tokens", "500"])):
        assert main(["data", "tokenize", str(stories), str(tmp_path / out), "--tokenizer",
                     str(tok_file), *extra]) == 0
    jsonl = token_store.load_tokens(tmp_path / "t.jsonl", bpe)
    single = token_store.load_tokens(tmp_path / "t.bin", bpe)
    sharded = token_store.load_tokens(tmp_path / "shards", bpe)
    assert len(list((tmp_path / "shards").glob("*.bin"))) > 1
    assert jsonl.tolist() == single.tolist() == sharded.tolist()
    rows = [json.loads(r) for r in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert max(len(r) for r in rows) <= 16
    assert single.tolist() == documents_reference(stories, bpe)


def test_shard_without_eos_keeps_the_text(stories, bpe, tmp_path):
    paths = token_store.write_shards(token_store.iter_file_tokens(stories, bpe),
                                     tmp_path / "raw.bin", bpe.vocab_size)
    assert bpe.decode(token_store.read_shard(paths[0]).tolist()) == stories.read_text()


def test_damaged_or_foreign_shards_are_rejected(stories, bpe, tmp_path):
    path = token_store.write_shards([np.arange(10)], tmp_path / "a.bin", bpe.vocab_size)[0]
    with pytest.raises(LanternError, match="vocabulary of 600"):
        token_store.read_shard(path, vocab_size=999)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(LanternError, match="truncated"):
        token_store.read_shard(path)
    (tmp_path / "b.bin").write_bytes(b"not a shard at all, just bytes..")
    with pytest.raises(LanternError, match="not a LANTERN token shard"):
        token_store.read_shard(tmp_path / "b.bin")


def test_stats_and_dedupe(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    tok = CharTokenizer.train(["\n".join(LINES)])
    stats = file_stats(path, tok, top=3)
    assert (stats.lines, stats.non_empty, stats.unique, stats.duplicates) == (5, 4, 3, 1)
    assert stats.unique_share == pytest.approx(0.75)
    assert stats.characters == sum(len(x) + 1 for x in LINES)
    assert stats.tokens == len(tok.encode(path.read_text()))
    assert stats.top_tokens[0] == (" ", path.read_text().count(" "))
    kept, dropped = dedupe(path, tmp_path / "out.txt")
    assert (kept, dropped) == (3, 1)
    assert (tmp_path / "out.txt").read_text().splitlines() == [LINES[0], LINES[1], LINES[4]]


def test_cli_stats_prints_the_figures(tmp_path, capsys):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    assert main(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unique non-empty lines  3 (75.0%)" in out and "duplicate lines         1" in out


TOKENIZE_ERRORS = {"missing": "not found", "binary": "binary", "latin1": "not UTF-8",
                   "bad_tokenizer": "not a LANTERN or Hugging Face tokenizer",
                   "same_file": "overwrite the input", "existing": "already exists"}


@pytest.mark.parametrize("case", list(TOKENIZE_ERRORS))
def test_cli_tokenize_bad_input(case, stories, bpe, tmp_path, capsys):
    tok_file = tmp_path / "bpe.json"
    tok_file.write_text(bpe.to_json())
    source, out = stories, tmp_path / "out.jsonl"
    out.write_text("precious")
    if case == "missing":
        source = tmp_path / "nope.txt"
    elif case == "binary":
        source = tmp_path / "blob.dat"
        source.write_bytes(b"\x00\x01\x02" * 100)
    elif case == "latin1":
        source = tmp_path / "latin1.txt"
        source.write_bytes("árvíztűrő".encode("latin-1", errors="replace"))
    elif case == "bad_tokenizer":
        tok_file.write_text('{"name": "not a tokenizer"}')
    elif case == "same_file":
        out = stories.with_suffix(".jsonl")
        source = stories.rename(out)
    before = out.read_bytes()
    assert main(["data", "tokenize", str(source), str(out), "--tokenizer", str(tok_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lantern: error: ") and err.count("\n") == 1
    assert TOKENIZE_ERRORS[case] in err
    assert out.read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["t.bin", "--max_length", "8"], "--max_length sets the rows of a .jsonl output"),
    (["t.jsonl", "--encoding", "gpt2"], "--encoding picks a tiktoken encoding"),
    (["t.jsonl", "--shard_tokens", "8"], "--shard_tokens writes binary shards"),
    (["t.txt"], "must end in .jsonl or .bin"),
    (["lines.txt/t.jsonl"], "is a file, not a directory"),
])
def test_cli_tokenize_refuses_flags_it_would_ignore(extra, message, bpe, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("lines.txt").write_text("\n".join(LINES), encoding="utf-8")
    Path("bpe.json").write_text(bpe.to_json())
    before = sorted(tmp_path.iterdir())
    assert main(["data", "tokenize", "lines.txt", extra[0], "--tokenizer", "bpe.json",
                 *extra[1:]]) == 1
    assert message in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before  # refused before writing anything


def test_cli_tokenize_overwrite_drops_stale_shards(stories, bpe, tmp_path):
    tok_file = tmp_path / "bpe.json"
    tok_file.write_text(bpe.to_json())
    argv = ["data", "tokenize", str(stories), str(tmp_path / "shards"), "--tokenizer", str(tok_file)]
    assert main([*argv, "--shard_tokens", "500"]) == 0
    assert main([*argv, "--shard_tokens", "100000"]) == 1  # a directory of shards is kept
    assert main([*argv, "--shard_tokens", "100000", "--overwrite"]) == 0
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["shard-00000.bin"]
    shard = token_store.read_shard(tmp_path / "shards" / "shard-00000.bin")
    assert shard.tolist() == documents_reference(stories, bpe)


def test_trainer_reads_shards(stories, bpe, tmp_path):
    from lantern.training.trainer import TrainConfig, prepare_data

    tok_file = tmp_path / "bpe.json"
    tok_file.write_text(bpe.to_json())
    assert main(["data", "tokenize", str(stories), str(tmp_path / "t.bin"), "--tokenizer",
                 str(tok_file)]) == 0
    data = prepare_data(TrainConfig(data_path=str(tmp_path / "t.bin"), tokenizer=str(tok_file)),
                        None)
    assert data.tokenizer.vocab_size == bpe.vocab_size
    joined = np.concatenate([np.asarray(data.train_tokens), np.asarray(data.val_tokens)])
    assert joined.tolist() == token_store.read_shard(tmp_path / "t.bin").tolist()
