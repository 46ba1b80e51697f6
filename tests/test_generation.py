"""KV-cache decoding: same tokens as uncached decoding, padded batches, sliding past the
context, and the `lantern generate` command end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TEXT, tiny_config

from lantern.checkpoint import save_checkpoint
from lantern.cli.main import main
from lantern.generation.decode import Decoder, left_pad, stream_tokens
from lantern.generation.sampling import SamplingConfig
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

GREEDY = SamplingConfig(temperature=0)


def make_model(**overrides) -> LANTERNModel:
    torch.manual_seed(0)
    return LANTERNModel(tiny_config(**overrides)).eval()


@torch.no_grad()
def uncached_greedy(model: LANTERNModel, ids: list[int], new: int) -> list[int]:
    """nanoGPT-style: re-run the whole (cropped) window for every token."""
    ids = list(ids)
    for _ in range(new):
        logits, _ = model(torch.tensor([ids[-model.config.context_length:]]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[-new:]


def cached_greedy(model, prompts, new, steps_per_block=None) -> list[list[int]]:
    ids, valid = left_pad(prompts, pad_id=0)
    valid = None if bool(valid.all()) else valid
    out = list(stream_tokens(model, ids, new, GREEDY, valid, steps_per_block=steps_per_block))
    return torch.cat(out, dim=1).tolist()


@pytest.mark.parametrize("overrides", [
    dict(position="learned"),
    dict(position="sinusoidal"),
    dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    dict(position="rope", num_kv_heads=2),
    dict(steps_per_block=3),
])
def test_cached_greedy_matches_uncached(overrides):
    model = make_model(**overrides)
    prompt = [5, 9, 3, 7]
    new = model.config.context_length - len(prompt)
    assert cached_greedy(model, [prompt], new)[0] == uncached_greedy(model, prompt, new)


def test_recursion_depth_chosen_per_call():
    model = make_model(steps_per_block=2)
    deep = cached_greedy(model, [[5, 9, 3]], 10, steps_per_block=4)[0]
    ids = [5, 9, 3]
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(model(torch.tensor([ids]), steps_per_block=4)[0][0, -1].argmax()))
    assert deep == ids[3:]


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_padded_batch_matches_each_prompt_alone(position):
    model = make_model(position=position)
    prompts = [[4, 8, 15, 16, 23, 2], [7], [9, 1, 3]]
    together = cached_greedy(model, prompts, 12)
    for row, prompt in enumerate(prompts):
        assert together[row] == cached_greedy(model, [prompt], 12)[0]


@pytest.mark.parametrize("padded", [False, True])
def test_sliding_past_context_never_uses_stale_cache(padded):
    model = make_model(position="learned", context_length=16)
    prompts = [[3, 4, 5, 6, 7], [8, 9]] if padded else [[3, 4, 5, 6, 7]]
    ids, valid = left_pad(prompts, pad_id=0)
    decoder = Decoder(model, ids, valid if padded else None)
    keys = decoder.cache.keys.data_ptr()
    with torch.no_grad():
        for _ in range(3 * model.config.context_length):  # slides several times
            token = decoder.last_logits.argmax(-1, keepdim=True)
            logits = decoder.step(token)
            assert decoder.length <= model.config.context_length
            # What the cache gives equals a fresh forward over exactly the tokens in view.
            for row in range(len(prompts)):
                view = decoder.tokens[row, : decoder.length][decoder.valid[row, : decoder.length]]
                fresh = model(view[None])[0][0, -1]
                torch.testing.assert_close(logits[row], fresh, atol=1e-4, rtol=1e-4)
    assert decoder.cache.keys.data_ptr() == keys  # allocated once, never grown


def test_long_generation_slides_without_error():
    model = make_model(context_length=16)
    tokens = cached_greedy(model, [[1, 2, 3]], 100)[0]
    assert len(tokens) == 100


def test_model_generate_api_keeps_working():
    model = make_model()
    gen = torch.Generator().manual_seed(0)
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=8, temperature=0.9, top_k=5,
                         top_p=0.9, generator=gen)
    assert out.shape == (1, 11) and out[0, :3].tolist() == [5, 6, 7]


@pytest.fixture
def run_dir(tmp_path):
    tokenizer = CharTokenizer.train([TINY_TEXT])
    config = tiny_config(vocab_size=tokenizer.vocab_size, context_length=32)
    torch.manual_seed(0)
    model = LANTERNModel(config)
    save_checkpoint(tmp_path / "model.pt", {
        "model_state_dict": model.state_dict(), "config": config.to_dict(),
        "tokenizer": tokenizer.to_json(), "step": 7, "val_loss": 3.5, "best_val_loss": 3.4,
    })
    return tmp_path


def generate(run_dir, *flags: str) -> int:
    return main(["generate", "--model", str(run_dir / "model.pt"), "--device", "cpu", *flags])


def test_same_seed_same_text(run_dir, capsys):
    flags = ("--prompt", "Once", "--seed", "5", "--max_new_tokens", "40", "--top_p", "0.9")
    generate(run_dir, *flags)
    first = capsys.readouterr().out
    generate(run_dir, *flags)
    assert capsys.readouterr().out == first and first.startswith("Once")


def test_output_jsonl_has_one_record_per_sample(run_dir, tmp_path):
    out = tmp_path / "samples.jsonl"
    assert generate(run_dir, "--prompt", "The", "--num_samples", "5", "--batch_size", "2",
                    "--output", str(out), "--max_new_tokens", "10", "--seed", "1") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5
    assert all(r["prompt"] == "The" and 0 < r["num_tokens"] <= 10 and r["tokens_per_second"] > 0
               for r in records)
    assert generate(run_dir, "--prompt", "The", "--output", str(out)) == 1  # never overwritten


def test_stop_string_cuts_text(run_dir, capsys):
    generate(run_dir, "--prompt", "a", "--seed", "2", "--max_new_tokens", "200", "--stop", "e")
    assert "e" not in capsys.readouterr().out.strip()


def test_beam_search_from_command_line(run_dir, capsys):
    assert generate(run_dir, "--prompt", "fox", "--num_beams", "3", "--max_new_tokens", "8") == 0
    assert capsys.readouterr().out.startswith("fox")


def test_prompt_longer_than_context_keeps_its_end(run_dir, capsys):
    assert generate(run_dir, "--prompt", "a fox " * 20, "--max_new_tokens", "5") == 0
    assert "longer than the model's context" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (("--prompt", ""), "prompt is empty"),
    (("--prompt", "zebra\u2603"), "does not know"),
    (("--prompt", "a", "--temperature", "-1"), "--temperature"),
    (("--prompt", "a", "--top_p", "2"), "--top_p"),
    (("--prompt", "a", "--max_new_tokens", "0"), "--max_new_tokens"),
    (("--prompt", "a", "--num_beams", "0"), "--num_beams"),
    (("--prompt", "a", "--num_samples", "0"), "--num_samples"),
    (("--prompt", "a", "--repetition_penalty", "0"), "--repetition_penalty"),
])
def test_bad_input_is_one_clear_error(run_dir, capsys, flags, message):
    assert generate(run_dir, *flags) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_model_is_one_clear_error(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope.pt"), "--prompt", "a"]) == 1
    assert "not found" in capsys.readouterr().err
