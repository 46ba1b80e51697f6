"""`lantern serve --checkpoint FILE.gguf`: the file is imported onto the decoding core and served
behind the same API; its chat answer is the text `lantern generate` (llama.cpp) gives on that
file for the same rendered prompt; a file that is not what it is named is one line naming it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import httpx
import pytest
import torch
from conftest import TINY_TEXT, tiny_config
from safetensors.torch import save_file
from test_serve_helpers import RunningServer, build_app

from lantern.chat_template import render
from lantern.cli.main import main
from lantern.cli.serve import model_specs
from lantern.export.gguf_export import export_gguf
from lantern.models.lantern_model import LANTERNModel
from lantern.pretrained.catalog import KNOWN_MODELS
from lantern.pretrained.pull import cached_path
from lantern.tokenizers import CharTokenizer

MESSAGES = [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Once upon a"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    """A tiny float32 GGUF from LANTERN's exporter (LANTERN's chat layout in its metadata) whose
    model never picks a special or byte token, so llama.cpp and the server both write 12 tokens."""
    tokenizer = CharTokenizer.train([TINY_TEXT])
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(vocab_size=tokenizer.vocab_size, context_length=64,
                                     tie_embeddings=False))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.transformer.norm.weight[0] = 0.0  # hidden unit 0 is always 1 ...
        model.transformer.norm.bias[0] = 1.0
        never = sorted(tokenizer.special_ids() | set(tokenizer.untrained_ids()))
        model.lm_head.weight[never] = 0.0  # ... and pushes these tokens far down
        model.lm_head.weight[never, 0] = -50.0
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    export_gguf(model.eval(), tokenizer, path, "f32")
    return path


def test_a_gguf_is_served_with_the_text_lantern_generate_gives(gguf_file):
    with RunningServer(build_app({"tiny": gguf_file})) as server:
        models = httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"]
        chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "messages": MESSAGES, "max_tokens": 12, "temperature": 0}).json()
    assert [(m["id"], m["context_length"]) for m in models] == [("tiny", 64)]
    prompt = render(MESSAGES)  # LANTERN's layout, which the file's template states
    generated = subprocess.run(
        [sys.executable, "-m", "lantern", "generate", "--checkpoint", str(gguf_file), "--prompt", prompt,
         "--temperature", "0", "--max_new_tokens", "12"], capture_output=True, text=True, check=True).stdout
    answer = chat["choices"][0]["message"]["content"]
    assert generated == prompt + answer + "\n"
    assert chat["usage"]["completion_tokens"] == 12 and len(answer) >= 12


def test_a_gguf_is_named_after_its_file_and_a_known_model_by_its_name(gguf_file):
    args = argparse.Namespace(checkpoint=str(gguf_file), model=["smol=smollm2-135m-instruct"])
    assert model_specs(args) == [("tiny", str(gguf_file)), ("smol", "smollm2-135m-instruct")]
    args = argparse.Namespace(checkpoint="smollm2-135m-instruct", model=[])
    assert model_specs(args) == [("smollm2-135m-instruct", "smollm2-135m-instruct")]


def test_a_known_name_in_the_cache_is_generated_from_and_served(gguf_file, tmp_path, monkeypatch, capsys):
    """`--checkpoint NAME` finds the pulled file (here a tiny stand-in placed in a private cache)."""
    monkeypatch.setenv("LANTERN_CACHE", str(tmp_path))
    target = cached_path(KNOWN_MODELS["smollm2-135m-instruct"])
    target.parent.mkdir(parents=True)
    shutil.copy(gguf_file, target)
    outputs = []
    for checkpoint in ("smollm2-135m-instruct", str(gguf_file)):
        assert main(["generate", "--checkpoint", checkpoint, "--prompt", "Once", "--temperature", "0",
                     "--max_new_tokens", "6"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0]) > len("Once\n")
    app = build_app({"named": "smollm2-135m-instruct"})
    assert app.state.registry.get("named").context_length == 64


@pytest.mark.parametrize(("name", "content", "words"), [
    ("notes.gguf", b"just some notes\n", "is not a GGUF file: it is a text file"),
    ("weights.gguf", None, "is not a GGUF file: it is a safetensors file"),
    ("model.safetensors", None, "is not a LANTERN checkpoint (.pt): it is a safetensors file"),
    ("cut.gguf", "half", "is a damaged GGUF file"),
])
def test_a_file_that_is_no_gguf_or_checkpoint_is_one_line_naming_what_it_is(
        name, content, words, gguf_file, tmp_path, capsys):
    path = tmp_path / name
    if content is None:
        save_file({"w": torch.zeros(4)}, str(path))
    elif content == "half":
        data = gguf_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    assert main(["serve", "--checkpoint", str(path), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: ") and "\n" not in err and words in err, err
