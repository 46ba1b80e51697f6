"""Prompt log-probabilities: `echo` with `logprobs` on `/v1/completions`, as evaluation clients
(lm-evaluation-harness's `local-completions`) score text through the API.

The reference is a plain forward pass of the whole sequence, no cache: log_softmax of
`model(ids)` at every position. The model is trained a few steps first, so what it predicts
depends on the tokens before (a scorer that dropped or shifted the history would show).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import httpx
import openai
import pytest
import torch
from test_serve_helpers import TEXT, RunningServer, build_app

from lantern.checkpoint import load_model
from lantern.config import LANTERNConfig
from lantern.generation.core import Decoder, score_prompt
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer
from tests.conftest import save_run

CONTEXT = 48


def trained_tiny_model(steps: int = 30) -> tuple[LANTERNModel, CharTokenizer]:
    """A tiny recursive model after a few Adam steps on TEXT: sharp, history-dependent guesses."""
    tokenizer = CharTokenizer.train([TEXT])
    config = LANTERNConfig(vocab_size=tokenizer.vocab_size, context_length=CONTEXT,
                           hidden_size=32, num_heads=4, num_blocks=1, steps_per_block=2)
    torch.manual_seed(0)
    model = LANTERNModel(config)
    data = torch.tensor(tokenizer.encode(TEXT * 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses to threads spinning on shared cores
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(data) - CONTEXT - 1, (8,), generator=generator)
            batch = torch.stack([data[s:s + CONTEXT + 1] for s in starts.tolist()])
            _, loss = model(batch[:, :-1], targets=batch[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    model, tokenizer = trained_tiny_model()
    directory = tmp_path_factory.mktemp("scoring") / "trained"
    save_run(model, tokenizer, directory, step=30)
    return directory


@pytest.fixture(scope="module")
def reference(run_dir):
    model, tokenizer, _ = load_model(run_dir)
    return model, tokenizer


@pytest.fixture(scope="module")
def server(run_dir):
    with RunningServer(build_app({"trained": run_dir})) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@torch.inference_mode()
def dense_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(L, V) log-probabilities of the next token after each position: one uncached forward."""
    logits, _ = model(torch.tensor([ids]))
    return logits[0].float().log_softmax(dim=-1)


def check_prompt_scores(logprobs: dict, ids: list[int], reference: torch.Tensor, tokenizer,
                        top: int) -> None:
    """The first len(ids) entries of a legacy logprobs object score `ids` as `reference` does."""
    n = len(ids)
    assert logprobs["tokens"][:n] == [tokenizer.decode([i]) for i in ids]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    for pos in range(1, n):
        want = reference[pos - 1]
        assert logprobs["token_logprobs"][pos] == pytest.approx(float(want[ids[pos]]), abs=1e-4)
        values, best = want.topk(top)
        expected = {tokenizer.decode([int(i)]): float(v) for v, i in zip(values, best, strict=True)}
        got = logprobs["top_logprobs"][pos]
        assert set(got) == set(expected)
        assert all(got[t] == pytest.approx(expected[t], abs=1e-4) for t in got)
    offsets = [sum(len(tokenizer.decode([i])) for i in ids[:k]) for k in range(n)]
    assert logprobs["text_offset"][:n] == offsets


def test_the_model_scores_depend_on_history(reference):
    """Guard: the same token after different text gets clearly different log-probabilities, so
    the checks below would see a scorer that lost or shifted the context."""
    model, tokenizer = reference
    a, b = tokenizer.encode("a little fox"), tokenizer.encode("the owl was ")
    fox, owl = dense_logprobs(model, a), dense_logprobs(model, b)
    assert abs(float(fox[-2, a[-1]]) - float(owl[-2, b[-1]])) > 0.5  # " " after x vs after s
    assert float(fox[:-1].gather(1, torch.tensor(a[1:])[:, None]).mean()) > -4.0  # learned (uniform: -5.7)


def test_echo_scores_token_id_prompts_like_a_dense_forward(server, reference):
    """lm-evaluation-harness's loglikelihood request: several token-id prompts (two of equal
    length, prefilled together), echo, logprobs 1, max_tokens 1, greedy."""
    model, tokenizer = reference
    prompts = [tokenizer.encode(t) for t in ("Once upon a time", "The owl was happy",
                                             "A little red ball")]
    assert len(prompts[0]) != len(prompts[1]) == len(prompts[2])
    body = {"model": "trained", "prompt": prompts, "echo": True, "logprobs": 2, "max_tokens": 1,
            "temperature": 0, "seed": 1234}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    for ids, choice in zip(prompts, answer["choices"], strict=True):
        reference_lp = dense_logprobs(model, ids)
        logprobs = choice["logprobs"]
        assert len(logprobs["tokens"]) == len(ids) + 1
        check_prompt_scores(logprobs, ids, reference_lp, tokenizer, top=2)
        generated = int(reference_lp[-1].argmax())
        assert choice["text"] == tokenizer.decode(ids) + tokenizer.decode([generated])
        assert logprobs["tokens"][-1] == tokenizer.decode([generated])
        assert logprobs["token_logprobs"][-1] == pytest.approx(float(reference_lp[-1, generated]),
                                                               abs=1e-4)
        assert logprobs["text_offset"][-1] == len(tokenizer.decode(ids))
        # what lm-eval's parse_logprobs reads: the continuation's sum and "is it greedy"
        continuation = logprobs["token_logprobs"][5:-1]
        want = sum(float(reference_lp[p - 1, ids[p]]) for p in range(5, len(ids)))
        assert sum(continuation) == pytest.approx(want, abs=1e-3)
    assert answer["usage"]["prompt_tokens"] == sum(len(p) for p in prompts)
    assert answer["usage"]["completion_tokens"] == 3


def test_max_tokens_zero_returns_only_the_prompt_scores_through_the_openai_client(client,
                                                                                 reference):
    model, tokenizer = reference
    prompt = "A fox ran. The owl"
    ids = tokenizer.encode(prompt)
    r = client.completions.create(model="trained", prompt=prompt, echo=True, logprobs=1,
                                  max_tokens=0)
    choice = r.choices[0]
    assert choice.text == prompt
    assert choice.finish_reason == "length"
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 0
    assert len(choice.logprobs.tokens) == len(ids)
    check_prompt_scores(choice.logprobs.model_dump(), ids, dense_logprobs(model, ids), tokenizer,
                        top=1)
    plain = client.completions.create(model="trained", prompt=prompt, echo=True, max_tokens=0)
    assert plain.choices[0].text == prompt and plain.choices[0].logprobs is None


def test_streamed_echo_carries_the_same_scores_as_the_whole_answer(server, reference):
    _, tokenizer = reference
    body = {"prompt": "Once upon", "echo": True, "logprobs": 3, "max_tokens": 4,
            "temperature": 0}
    whole = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60).json()["choices"][0]
    streamed = httpx.post(f"{server.url}/v1/completions", json={**body, "stream": True},
                          timeout=60)
    chunks = [httpx.Response(200, content=line[6:]).json()
              for line in streamed.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    text, joined = "", {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text += choice["text"]
            for key in joined:
                joined[key] += (choice["logprobs"] or {}).get(key, [])
    assert chunks[0]["choices"][0]["text"] == "Once upon"  # the echo comes first
    assert text == whole["text"]
    assert joined == whole["logprobs"]


def test_scoring_joins_a_running_batch_and_changes_no_ones_text(server, reference):
    """Scoring requests sent while a long generation decodes are answered before it ends (they
    join its batch, not wait for it), exactly; the generation's text is what it is alone."""
    model, tokenizer = reference
    long_body = {"prompt": "Once", "max_tokens": 400, "temperature": 0.8, "seed": 5,
                 "ignore_eos": True}
    alone = httpx.post(f"{server.url}/v1/completions", json=long_body, timeout=60).json()
    chunks: list[tuple[float, dict]] = []
    started = threading.Event()

    def read_stream() -> None:
        with httpx.stream("POST", f"{server.url}/v1/completions",
                          json={**long_body, "stream": True}, timeout=60) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunks.append((time.monotonic(), json.loads(line[6:])))
                    started.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert started.wait(30)
    prompts = ["a red ball", "Hi, how are you?", "The owl was happy."]
    with httpx.Client(timeout=60) as http, concurrent.futures.ThreadPoolExecutor(3) as pool:
        scored = list(pool.map(lambda p: http.post(
            f"{server.url}/v1/completions",
            json={"prompt": p, "echo": True, "logprobs": 1, "max_tokens": 0}).json(), prompts))
    scored_at = time.monotonic()
    reader.join(60)
    assert scored_at < chunks[-1][0]  # the generation was still decoding
    text = "".join(chunk["choices"][0]["text"] for _, chunk in chunks)
    assert text == alone["choices"][0]["text"]
    for prompt, answer in zip(prompts, scored, strict=True):
        ids = tokenizer.encode(prompt)
        check_prompt_scores(answer["choices"][0]["logprobs"], ids, dense_logprobs(model, ids),
                            tokenizer, top=1)


def test_a_prompt_beyond_the_context_is_refused_with_the_limit(server, reference):
    _, tokenizer = reference
    ids = tokenizer.encode(TEXT)[:CONTEXT + 1]
    r = httpx.post(f"{server.url}/v1/completions",
                   json={"prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 0}, timeout=60)
    assert r.status_code == 400
    assert str(CONTEXT) in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "context_length_exceeded"
    refused = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Once", "max_tokens": 0},
                         timeout=60)
    assert refused.status_code == 400 and "echo" in refused.json()["error"]["message"]


def test_a_truncated_prompt_echoes_and_scores_what_the_model_saw(server, reference):
    model, tokenizer = reference
    ids = tokenizer.encode(TEXT)[:CONTEXT + 7]
    kept = ids[-CONTEXT:]
    r = httpx.post(f"{server.url}/v1/completions",
                   json={"prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 0,
                         "truncate": True}, timeout=60)
    choice = r.json()["choices"][0]
    assert choice["text"] == tokenizer.decode(kept)
    assert len(choice["logprobs"]["tokens"]) == CONTEXT
    check_prompt_scores(choice["logprobs"], kept, dense_logprobs(model, kept), tokenizer, top=1)


def test_the_decoder_scores_a_prompt_joining_a_running_batch(reference):
    """The decoding core: a scored row added while another decodes gets its prompt's dense
    scores, and the running row's next logits are still its own dense ones."""
    model, tokenizer = reference
    running = tokenizer.encode("Once upon")
    decoder = Decoder(model)
    decoder.add([running])
    for token in tokenizer.encode(" a time"):
        decoder.step(torch.tensor([token]))
        running.append(token)
    joining = tokenizer.encode("The owl was")
    [handle] = decoder.add([joining], score=[0])
    scores = score_prompt(decoder.prompt_logits.pop(handle), joining, 2)
    want = dense_logprobs(model, joining)
    assert scores.logprobs[0] is None and scores.top_logprobs[0] is None
    for pos in range(1, len(joining)):
        assert scores.logprobs[pos] == pytest.approx(float(want[pos - 1, joining[pos]]), abs=1e-4)
        assert [t for t, _ in scores.top_logprobs[pos]] == want[pos - 1].topk(2).indices.tolist()
    after = decoder.step(torch.tensor([tokenizer.encode(".")[0], tokenizer.encode(" ")[0]]))
    expected = dense_logprobs(model, running + tokenizer.encode("."))[-1]
    assert torch.allclose(after[0].log_softmax(-1), expected, atol=1e-4)
