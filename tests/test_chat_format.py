"""Chat in a model's own template: rendering equals transformers' `apply_chat_template` (ChatML as
SmolLM2 ships it, Llama 3 Instruct's), answers stop at the end-of-turn token (the decoding core,
the server and llama.cpp), and GGUF files keep template and roles through convert/--init_from.
The real SmolLM2 file is used when it is in the cache."""

from __future__ import annotations

import io

import httpx
import pytest
import torch
from conftest import tiny_config
from gguf import GGMLQuantizationType as Q
from test_gguf_import import SMOLLM2, hf_llama, vocabulary, write_llama_gguf
from test_serve_helpers import RunningServer, build_app
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer
from transformers import PreTrainedTokenizerFast

from lantern.checkpoint import load_model
from lantern.cli.main import main
from lantern.export.gguf_import import load_gguf
from lantern.generation.backends.gguf import LlamaCppEngine
from lantern.generation.engine import TorchEngine
from lantern.generation.interactive import InteractiveSession
from lantern.generation.settings import GenerationConfig
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import HFTokenizerAdapter
from tests.conftest import TINY_TEXT, save_run

# As SmolLM2-135M-Instruct ships it (a default system turn when the chat has none).
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
          "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
# As Meta-Llama-3-8B-Instruct ships it (bos_token from the tokenizer, contents trimmed).
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
          "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
          "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MARKERS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
           "<|end_header_id|>", "<|eot_id|>"]
# template -> (bos, eos, end of turn)
FORMATS = {"chatml": (CHATML, "<|im_start|>", "<|im_end|>", None),
           "llama3": (LLAMA3, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")}
CONVERSATIONS = [
    [{"role": "user", "content": "What is 12 times 3?"}],
    [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": " Hi there\n"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "12 x 3?"}],
]


@pytest.fixture(scope="module")
def base_bpe() -> HFTokenizerAdapter:
    return HFTokenizerAdapter.train_bpe([TINY_TEXT + "What is 12 times 3? Be brief. Hi there!"], 320)


def with_template(base: HFTokenizerAdapter, name: str) -> HFTokenizerAdapter:
    """The vocabulary plus the chat markers, with the template's roles (as a GGUF states them)."""
    template, bos, eos, eot = FORMATS[name]
    hf = HFTokenizer.from_str(base.hf.to_str())
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in MARKERS])
    roles = {"bos": hf.token_to_id(bos), "eos": hf.token_to_id(eos)}
    if eot is not None:
        roles["eot"] = hf.token_to_id(eot)
    return HFTokenizerAdapter(hf, "bpe", roles=roles, chat_template=template)


def transformers_tokenizer(tokenizer: HFTokenizerAdapter, name: str) -> PreTrainedTokenizerFast:
    """The reference: transformers' own tokenizer on the same vocabulary and template."""
    template, bos, eos, _ = FORMATS[name]
    return PreTrainedTokenizerFast(tokenizer_object=HFTokenizer.from_str(tokenizer.hf.to_str()),
                                   bos_token=bos, eos_token=eos, pad_token="<pad>", chat_template=template)


def forced_model(tokenizer, token: int) -> LANTERNModel:
    """A tiny real model whose greedy choice is always `token` (hidden unit 0 is constant 1,
    and only `token`'s output row reads it)."""
    torch.manual_seed(0)
    model = LANTERNModel(tiny_config(vocab_size=tokenizer.vocab_size, tie_embeddings=False,
                                     context_length=128))
    with torch.no_grad():
        model.transformer.norm.weight[0] = 0.0
        model.transformer.norm.bias[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[token, 0] = 50.0
    return model.eval()


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["user-only", "multi-turn"])
@pytest.mark.parametrize("name", list(FORMATS))
def test_rendering_equals_transformers_apply_chat_template(name, messages, base_bpe):
    tokenizer = with_template(base_bpe, name)
    engine = TorchEngine(forced_model(tokenizer, 0), tokenizer)
    theirs = transformers_tokenizer(tokenizer, name)
    text = engine.chat_format.render(messages)
    assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert engine.encode(text) == list(ids)
    assert engine.knows_chat()


@pytest.mark.parametrize("name", list(FORMATS))
def test_chat_stops_at_the_end_of_turn_token_where_plain_text_runs_on(name, base_bpe, tmp_path):
    """The model always chooses the end-of-turn token (Llama 3's <|eot_id|>, ChatML's eos
    <|im_end|>): a chat answer is empty and ends on it, at the core and through the server;
    a plain completion (which stops at eos only) runs to its length unless it is the eos."""
    tokenizer = with_template(base_bpe, name)
    end = tokenizer.end_of_turn_id if name == "llama3" else tokenizer.eos_id
    model = forced_model(tokenizer, end)
    engine = TorchEngine(model, tokenizer)
    assert engine.stop_ids(chat=True) == {tokenizer.eos_id, end}
    out = io.StringIO()
    session = InteractiveSession(engine, GenerationConfig(max_new_tokens=6, temperature=0.0),
                                 chat=True, seed=0, out=out)
    session.handle("What is 12 times 3?")
    assert session.history == [("What is 12 times 3?", "")]
    ids = engine.encode(engine.chat_format.render([{"role": "user", "content": "Hi"}]))
    done = engine.complete(["Hi"], [ids], GenerationConfig(max_new_tokens=6, temperature=0.0),
                           engine.stop_ids(chat=True))[0]
    assert (done.num_tokens, done.stop_reason) == (0, "stop_token")

    save_run(model, tokenizer, tmp_path / "run")
    with RunningServer(build_app({"m": tmp_path / "run"})) as server:
        chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}).json()
        plain = httpx.post(f"{server.url}/v1/completions", timeout=60, json={
            "prompt": "Hi", "max_tokens": 6, "temperature": 0}).json()
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert chat["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
    expected = (0, "stop") if end == tokenizer.eos_id else (6, "length")
    assert (plain["usage"]["completion_tokens"], plain["choices"][0]["finish_reason"]) == expected


@pytest.fixture(scope="module")
def llama3_gguf(tmp_path_factory):
    """A Llama GGUF written by the gguf package, with Llama 3's template and an end-of-turn id."""
    from test_gguf_import import CORPUS

    bpe = HFTokenizerAdapter.train_bpe([CORPUS], 400)
    tokens, merges, types = vocabulary(bpe)
    path = tmp_path_factory.mktemp("llama3") / "llama3.gguf"
    write_llama_gguf(path, hf_llama(len(tokens)), tokens, merges, types, template=LLAMA3, quant=Q.Q8_0)
    return path, tokens


def test_llamacpp_engine_renders_the_files_template_and_stops_at_its_end_of_turn(llama3_gguf):
    path, tokens = llama3_gguf
    _, imported = load_gguf(path)
    reference = PreTrainedTokenizerFast(tokenizer_object=HFTokenizer.from_str(imported.hf.to_str()),
                                        bos_token="<|begin_of_text|>", eos_token="<|im_end|>",
                                        pad_token="<pad>", chat_template=LLAMA3)
    engine = LlamaCppEngine(path)
    try:
        for messages in CONVERSATIONS:
            assert engine.chat_format.render(messages) == reference.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)
        assert engine.stop_ids(chat=True) == {tokens.index("<|im_end|>"), tokens.index("<|eot_id|>")}
        assert engine.stop_ids(chat=False) == {tokens.index("<|im_end|>")}
        assert engine.knows_chat()
    finally:
        engine.close()


def test_convert_and_init_from_keep_the_template_and_roles(llama3_gguf, tmp_path, capsys):
    path, tokens = llama3_gguf
    (tmp_path / "data.txt").write_text(TINY_TEXT, encoding="utf-8")
    assert main(["convert", str(path), "--output", str(tmp_path / "converted")]) == 0
    assert main(["train", "--init_from", str(path), "--data_path", str(tmp_path / "data.txt"),
                 "--max_steps", "1", "--batch_size", "2", "--eval_interval", "1",
                 "--eval_batches", "1", "--sample_length", "0", "--num_samples", "0",
                 "--output_dir", str(tmp_path / "tuned")]) == 0, capsys.readouterr().err
    roles = {"bos": tokens.index("<|begin_of_text|>"), "eos": tokens.index("<|im_end|>"),
             "eot": tokens.index("<|eot_id|>"), "pad": tokens.index("<pad>")}
    for run in ("converted", "tuned"):
        _, tokenizer, _ = load_model(tmp_path / run)
        assert (tokenizer.chat_template, dict(tokenizer.roles)) == (LLAMA3, roles), run
        assert TorchEngine(load_model(tmp_path / run)[0], tokenizer).stop_ids(chat=True) == {
            roles["eos"], roles["eot"]}


# --- the real SmolLM2-135M-Instruct file, when `lantern pull smollm2-135m-instruct` has fetched it --

@pytest.mark.skipif(not SMOLLM2.is_file(),
                    reason=f"{SMOLLM2} is not in the cache; `lantern pull smollm2-135m-instruct`")
def test_smollm2_chat_answers_as_generate_does_on_the_hand_written_chatml_prompt():
    """`lantern chat` (the file's own template, llama.cpp) and `lantern generate` on ChatML written
    by hand, with the default system turn SmolLM2's template adds: the same greedy answer."""
    hand_written = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 12 times 3?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    config = GenerationConfig(max_new_tokens=12, temperature=0.0)
    engine = LlamaCppEngine(SMOLLM2)
    try:
        out = io.StringIO()
        session = InteractiveSession(engine, config, chat=engine.knows_chat(), seed=0, out=out)
        session.handle("What is 12 times 3?")
        generated = engine.complete([hand_written], [engine.encode(hand_written)], config,
                                    engine.stop_ids(chat=False))[0]
    finally:
        engine.close()
    answer = session.history[0][1]
    assert answer == generated.text and generated.stop_reason == "stop_token"
    assert answer.strip()
