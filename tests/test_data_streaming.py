"""Training data streams at any size: tokenizer training, encoding and the validation split read
the file block by block, and give exactly what the whole text in memory gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lantern.data.token_store as token_store
from lantern.data.batches import WindowSampler, eval_windows
from lantern.data.corpus import prepare_data, training_text
from lantern.data.stories import build_corpus
from lantern.errors import LanternError
from lantern.tokenizers import CharTokenizer, HFTokenizerAdapter

BLOCK_BYTES = 61  # tiny and odd, so byte blocks end inside multi-byte characters
MULTI_BYTE = ["Árvíztűrő tükörfúrógép", "汉字 と かな", "emoji 😀 and 🦊 fox", "naïve café"]


@dataclass
class Settings:
    """The data section of a run's settings (`DataSettings`), nothing else."""

    data_path: str | None
    tokenizer: str
    val_data_path: str | None = None
    val_fraction: float = 0.1
    corpus_chars: int = 0
    encoding: str = "gpt2"
    vocab_size: int | None = 400


def write_text(path: Path, seed: int = 3) -> str:
    stories = build_corpus(8_000, seed=seed)
    lines = [story.replace(". ", f". {MULTI_BYTE[i % len(MULTI_BYTE)]} ")
             for i, story in enumerate(stories)]
    text = "\n".join(lines) + "<eos>\n\n  indented 😀\n"
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "corpus.txt"
    return path, write_text(path)


def test_byte_blocks_end_inside_multi_byte_characters(corpus):
    """The premise of the tests below: reading in BLOCK_BYTES cuts characters apart."""
    raw = corpus[0].read_bytes()
    cut = [at for at in range(BLOCK_BYTES, len(raw), BLOCK_BYTES) if raw[at] & 0xC0 == 0x80]
    assert len(cut) > 10


def test_training_text_is_the_file_cut_at_safe_points(corpus):
    path, text = corpus
    blocks = list(training_text([path], BLOCK_BYTES))
    assert len(blocks) > 100 and "".join(blocks) == text


def test_char_vocabulary_from_blocks_equals_whole_text(corpus, tmp_path):
    path, text = corpus
    val = tmp_path / "val.txt"
    val_text = write_text(val, seed=4) + "ß only here\n"
    val.write_text(val_text, encoding="utf-8")
    streamed = CharTokenizer.train(training_text([path, val], BLOCK_BYTES))
    assert streamed.to_json() == CharTokenizer.train([text, val_text]).to_json()


def test_bpe_vocabulary_from_blocks_equals_whole_text(corpus):
    path, text = corpus
    streamed = HFTokenizerAdapter.train_bpe(training_text([path], BLOCK_BYTES), vocab_size=400)
    assert streamed.to_json() == HFTokenizerAdapter.train_bpe([text], vocab_size=400).to_json()


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_streamed_encoding_equals_whole_text_encoding(kind, corpus, monkeypatch):
    path, text = corpus
    tokenizer = (CharTokenizer.train([text]) if kind == "char"
                 else HFTokenizerAdapter.train_bpe([text], vocab_size=400))
    monkeypatch.setattr(token_store, "_BLOCK_BYTES", BLOCK_BYTES)
    monkeypatch.setattr(token_store, "_PIECE_CHARS", 37)
    streamed = np.concatenate(list(token_store.iter_file_tokens(path, tokenizer)))
    assert streamed.tolist() == tokenizer.encode(text)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_run_data_equals_the_whole_text_path(kind, corpus, monkeypatch):
    """Vocabulary, ids and the train/validation split are those of the whole text in memory,
    and both splits are views of one memory-mapped token file, not copies."""
    path, text = corpus
    monkeypatch.setattr(token_store, "_BLOCK_BYTES", BLOCK_BYTES)
    data = prepare_data(Settings(str(path), kind), None, seed=0)
    whole = (CharTokenizer.train([text]) if kind == "char"
             else HFTokenizerAdapter.train_bpe([text], vocab_size=400))
    assert data.tokenizer.to_json() == whole.to_json()
    ids = whole.encode(text)
    split = int(len(ids) * 0.9)
    assert data.train_tokens.tolist() == ids[:split]
    assert data.val_tokens.tolist() == ids[split:]
    for part in (data.train_tokens, data.val_tokens):
        assert isinstance(part, np.memmap) and not part.flags.owndata


def test_blank_training_file_gives_one_clear_error(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n" * 100, encoding="utf-8")
    with pytest.raises(LanternError, match="holds only whitespace"):
        prepare_data(Settings(str(path), "bpe"), None, seed=0)


def test_memory_mapped_batches_equal_in_memory_batches(corpus):
    path, text = corpus
    tokenizer = CharTokenizer.train([text])
    mapped = token_store.load_tokens(path, tokenizer)
    in_memory = np.array(tokenizer.encode(text), dtype=np.int64)
    assert isinstance(mapped, np.memmap)
    samplers = [WindowSampler(tokens, 32, 8, seed=5) for tokens in (mapped, in_memory)]
    for _ in range(5):
        (x1, y1), (x2, y2) = (s.next_batch() for s in samplers)
        assert x1.equal(x2) and y1.equal(y2)
    for (x1, y1), (x2, y2) in zip(eval_windows(mapped, 32, 8, 3), eval_windows(in_memory, 32, 8, 3),
                                  strict=True):
        assert x1.equal(x2) and y1.equal(y2)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_noting_training_tokens_leaves_memory_flat(tmp_path):
    """The pass over the training tokens finds the byte tokens they use, and leaves the token
    file's pages out of resident memory."""
    tokenizer = CharTokenizer.train(["ab"])
    ids = np.full(40 << 20, tokenizer.token_to_id("a"), dtype=np.uint16)
    ids[-1] = tokenizer.token_to_id("<0xC3>")
    file = tmp_path / "ids.uint16"
    ids.tofile(file)
    del ids

    def resident_file_mb() -> float:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(fields["RssFile"].split()[0]) / 1024

    tokens = np.memmap(file, dtype=np.uint16, mode="r")
    before = resident_file_mb()
    tokenizer.note_training_tokens(tokens[: len(tokens) - 7])  # a view, as the split makes
    assert tokenizer.seen_bytes == set()
    tokenizer.note_training_tokens(tokens)
    assert tokenizer.seen_bytes == {0xC3}
    assert resident_file_mb() - before < 20  # the file is 80 MB, and still mapped
