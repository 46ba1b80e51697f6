"""`lantern data prepare` on local sources and a local HTTP server: the download code path,
the JSONL token files' names, samples that stop reading early, and one-line offline errors."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading

import pytest

from lantern.cli.main import main
from lantern.data import prepare as prep
from lantern.errors import LanternError

STORY = "Once upon a time, {i} foxes\nplayed in the park.\n\nThey were happy. Ő ű 😀\n"


def tinystories_text(n: int) -> str:
    return "".join(STORY.format(i=i) + "<|endoftext|>\n" for i in range(n))


@pytest.fixture
def tinystories_dir(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "TinyStories-train.txt").write_text(tinystories_text(50), encoding="utf-8")
    (source / "TinyStories-valid.txt").write_text(tinystories_text(8), encoding="utf-8")
    return source


def test_tinystories_sample_from_local_dir(tinystories_dir, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "prepare", "tinystories", "--sample_size", "10", "--data_dir", str(data),
                 "--source", str(tinystories_dir)]) == 0
    train = (data / "tinystories_train_sample.txt").read_text(encoding="utf-8").splitlines()
    valid = (data / "tinystories_valid_sample.txt").read_text(encoding="utf-8").splitlines()
    assert len(train) == 10 and len(valid) == 1
    assert train[3] == "Once upon a time, 3 foxes played in the park. They were happy. Ő ű 😀"
    assert "tinystories_train_sample.txt (10 documents)" in capsys.readouterr().out


def test_full_and_single_file_sources(tinystories_dir, tmp_path):
    results = prep.prepare("tinystories", tmp_path / "full", full=True, source=tinystories_dir)
    assert [(p.name, n) for p, n in results] == [("tinystories_train.txt", 50),
                                                  ("tinystories_valid.txt", 8)]
    single = tinystories_dir / "TinyStories-train.txt"
    results = prep.prepare("tinystories", tmp_path / "one", sample_size=5, valid_size=2,
                           source=single)
    train, valid = (p.read_text().splitlines() for p, _ in results)
    assert len(train) == 5 and len(valid) == 2
    assert valid[0].startswith("Once upon a time, 0 ") and train[0].startswith("Once upon a time, 2 ")


def test_opus100_and_wikipedia_from_jsonl(tmp_path):
    pairs = tmp_path / "opus_train.jsonl"
    pairs.write_text("\n".join(json.dumps({"translation": {"en": f"Hello {i}", "hu": f"Szia {i}"}})
                               for i in range(6)), encoding="utf-8")
    prep.prepare("opus100", tmp_path / "d", sample_size=4, source=tmp_path)
    lines = (tmp_path / "d" / "opus100_train_sample.txt").read_text().splitlines()
    assert lines[0] == ("<system>Translate English to Hungarian.</system><user>Hello 0</user>"
                        "<assistant>Szia 0</assistant>")
    assert lines[1].startswith("<system>Translate Hungarian to English.</system><user>Szia 1")
    wiki = tmp_path / "wiki.jsonl"
    wiki.write_text("\n".join(json.dumps({"title": f"T{i}", "text": f"Első sor {i}.\n\nMásodik."})
                              for i in range(5)), encoding="utf-8")
    prep.prepare("hu_wikipedia", tmp_path / "w", sample_size=3, source=wiki)
    assert (tmp_path / "w" / "hu_wikipedia_train_sample.txt").read_text().splitlines() == [
        f"Első sor {i}. Második." for i in range(3)]


def test_existing_output_is_not_overwritten(tinystories_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tinystories_train_sample.txt").write_text("precious")
    assert main(["data", "prepare", "tinystories", "--sample_size", "3", "--data_dir", str(data),
                 "--source", str(tinystories_dir)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (data / "tinystories_train_sample.txt").read_text() == "precious"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def http_root(tmp_path):
    """A real local HTTP server: the download path runs unchanged, with no internet."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_sample_streams_and_full_download_is_cached(http_root, tmp_path, monkeypatch):
    root, base = http_root
    (root / "train.txt").write_text(tinystories_text(2000), encoding="utf-8")
    (root / "valid.txt").write_text(tinystories_text(20), encoding="utf-8")
    corpus = dataclasses.replace(prep.CORPORA["tinystories"], hf_path=None,
                                 text_urls={"train": f"{base}/train.txt",
                                            "valid": f"{base}/valid.txt"})
    monkeypatch.setitem(prep.CORPORA, "tinystories", corpus)
    results = prep.prepare("tinystories", tmp_path / "d", sample_size=7)
    assert [n for _, n in results] == [7, 1]
    assert results[0][0].read_text(encoding="utf-8").splitlines() == [
        f"Once upon a time, {i} foxes played in the park. They were happy. Ő ű 😀" for i in range(7)]
    cache = prep.datasets_cache() / "tinystories"
    assert not cache.exists()  # a sample is streamed, never downloaded whole
    prep.prepare("tinystories", tmp_path / "f", full=True)
    assert (cache / "train.txt").read_bytes() == (root / "train.txt").read_bytes()
    full = (tmp_path / "f" / "tinystories_train.txt").read_text(encoding="utf-8").splitlines()
    assert len(full) == 2000 and full[1999].startswith("Once upon a time, 1999 foxes")
    (root / "train.txt").unlink()  # the cached copy now serves later runs
    results = prep.prepare("tinystories", tmp_path / "g", sample_size=4)
    assert [n for _, n in results] == [4, 1]


def test_unreachable_source_is_one_clear_line(tmp_path, monkeypatch, capsys):
    corpus = dataclasses.replace(prep.CORPORA["shakespeare"],
                                 text_urls={"train": "http://127.0.0.1:9/input.txt"})
    monkeypatch.setitem(prep.CORPORA, "shakespeare", corpus)
    assert main(["data", "prepare", "shakespeare", "--full", "--data_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach 127.0.0.1:9" in err and "--source" in err
    assert not list(tmp_path.iterdir())


def test_shakespeare_keeps_its_lines(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n"
                      "Speak, speak.\n", encoding="utf-8")
    results = prep.prepare("shakespeare", tmp_path / "d", sample_size=3, source=tmp_path)
    assert [(p.name, n) for p, n in results] == [("shakespeare_sample.txt", 3)]
    assert results[0][0].read_text() == "First Citizen:\nBefore we proceed any further, hear me " \
                                        "speak.\n\n"


@pytest.mark.parametrize("options, message", [
    (dict(name="tinystories", sample_size=4, valid_size=-2), "--valid_size must be positive"),
    (dict(name="tinystories", sample_size=4, valid_size=0), "--valid_size must be positive"),
    (dict(name="shakespeare", sample_size=4, valid_size=2), "no validation split"),
    (dict(name="tinystories", full=True, valid_size=2), "applies to samples"),
])
def test_valid_size_is_refused_where_it_would_be_ignored(options, message, tinystories_dir,
                                                          tmp_path):
    with pytest.raises(LanternError, match=message):
        prep.prepare(data_dir=tmp_path / "d", source=tinystories_dir, **options)
    assert not (tmp_path / "d").exists()


def test_data_dir_through_a_file_is_one_clear_line(tinystories_dir, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("precious")
    assert main(["data", "prepare", "tinystories", "--sample_size", "3", "--data_dir",
                 str(blocker / "data"), "--source", str(tinystories_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt is a file, not a directory" in err
    assert blocker.read_text() == "precious"
