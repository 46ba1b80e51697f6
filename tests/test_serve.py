"""`lantern serve` through the real `openai` client against the real server (uvicorn, loopback).

References are independent of the server's decoding: a dense forward pass with no cache for
greedy text and log-probabilities, `lantern generate` (a subprocess) for seeded sampling, and the
tokenizer itself for usage counts.
"""

from __future__ import annotations

import concurrent.futures
import re
import subprocess
import sys

import httpx
import openai
import pytest
import torch
from test_serve_helpers import RunningServer, build_app, save_tiny_checkpoint

from lantern.chat_template import render
from lantern.checkpoint import load_model

KEY = "sekret-key"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "other", seed=1)


@pytest.fixture(scope="module")
def server(run_dir, other_dir):
    with RunningServer(build_app({"tiny": run_dir, "other": other_dir})) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def reference(run_dir):
    model, tokenizer, _ = load_model(run_dir)
    return model, tokenizer


@torch.inference_mode()
def dense_greedy(model, tokenizer, prompt_ids, max_tokens, stop_ids, steps=None):
    """Greedy tokens and their log-probabilities, recomputing the whole sequence each step; byte
    tokens the training data never used are never chosen unless the prompt holds them."""
    ids, tokens, logprobs = list(prompt_ids), [], []
    never = sorted(set(tokenizer.untrained_ids()) - set(prompt_ids))
    for _ in range(max_tokens):
        logits, _ = model(torch.tensor([ids]), steps_per_block=steps)
        lp = torch.log_softmax(logits[0, -1].float(), dim=-1)
        token = int(lp.index_fill(0, torch.tensor(never, dtype=torch.long), float("-inf")).argmax())
        if token in stop_ids:
            break
        tokens.append(token)
        logprobs.append(lp)
        ids.append(token)
    return tokens, logprobs


def test_greedy_completion_text_logprobs_and_usage_match_a_dense_reference(client, reference):
    model, tokenizer = reference
    prompt = "Once upon a time"
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0,
                                  logprobs=3)
    choice = r.choices[0]
    ids = tokenizer.encode(prompt)
    tokens, logprobs = dense_greedy(model, tokenizer, ids, 12, {tokenizer.eos_id})
    assert choice.text == tokenizer.decode(tokens, skip_special_tokens=True)
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == len(tokens) == len(choice.logprobs.token_logprobs)
    assert r.usage.total_tokens == len(ids) + len(tokens)
    assert choice.finish_reason == ("length" if len(tokens) == 12 else "stop")
    for got, lp, token, top in zip(choice.logprobs.token_logprobs, logprobs, tokens,
                                   choice.logprobs.top_logprobs, strict=True):
        assert got == pytest.approx(float(lp[token]), abs=1e-4)
        best = lp.topk(3)
        want = {tokenizer.decode([int(i)]): float(v) for v, i in zip(best.values, best.indices,
                                                                     strict=True)}
        assert set(top) == set(want)
        for text, value in top.items():
            assert value == pytest.approx(want[text], abs=1e-4)


def test_chat_renders_the_template_and_stops_at_chat_tags(client, reference):
    model, tokenizer = reference
    messages = [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Hello there"}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=15,
                                       temperature=0, logprobs=True, top_logprobs=2)
    ids = tokenizer.encode(render(messages))
    stops = {tokenizer.eos_id, tokenizer.token_to_id("</assistant>"), tokenizer.token_to_id("<user>")}
    tokens, _ = dense_greedy(model, tokenizer, ids, 15, stops)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == tokenizer.decode(tokens, skip_special_tokens=True)
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == len(tokens) == len(choice.logprobs.content)
    assert all(len(entry.top_logprobs) == 2 for entry in choice.logprobs.content)


def test_streaming_gives_the_same_text_and_exact_usage(client, server):
    kwargs = dict(model="tiny", prompt="The owl", max_tokens=20, temperature=0.9, seed=11)
    whole = client.completions.create(**kwargs)
    stream = client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        pieces.extend(c.text for c in chunk.choices)
    assert "".join(pieces) == whole.choices[0].text
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=10, temperature=0.7, seed=2, stream=True)
    deltas = [c.choices[0].delta.content or "" for c in chat if c.choices]
    solo = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=10, temperature=0.7, seed=2)
    assert "".join(deltas) == solo.choices[0].message.content
    raw = httpx.post(f"{server.url}/v1/completions", json={**kwargs, "stream": True}, timeout=60)
    lines = [line for line in raw.text.splitlines() if line.strip()]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


def test_n_choices_are_seeded_rows_that_match_solo_requests(client):
    kwargs = dict(model="tiny", prompt="A fox", max_tokens=16, temperature=1.0,
                  extra_body={"top_k": 20})
    several = client.completions.create(**kwargs, n=3, seed=40)
    assert [c.index for c in several.choices] == [0, 1, 2]
    solos = [client.completions.create(**kwargs, seed=40 + i) for i in range(3)]
    assert [c.text for c in several.choices] == [s.choices[0].text for s in solos]
    assert len({c.text for c in several.choices}) > 1
    assert several.usage.completion_tokens == sum(s.usage.completion_tokens for s in solos)
    assert several.usage.prompt_tokens == solos[0].usage.prompt_tokens


def test_concurrent_requests_batch_without_changing_anyones_text(client):
    def ask(seed):
        return client.completions.create(model="tiny", prompt="Once", max_tokens=24, temperature=1.0,
                                         seed=seed).choices[0].text

    alone = {seed: ask(seed) for seed in range(6)}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        together = dict(zip(range(6), pool.map(ask, range(6)), strict=True))
    assert together == alone


def test_stop_strings_cut_the_text(client):
    base = client.completions.create(model="tiny", prompt="The park", max_tokens=30, temperature=0)
    text = base.choices[0].text
    stop = text[6:8]
    assert len(stop) == 2
    cut = client.completions.create(model="tiny", prompt="The park", max_tokens=30, temperature=0,
                                    stop=[stop, "never-there"])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_same_text_as_lantern_generate_for_the_same_settings_and_seed(client, run_dir):
    settings = ["--temperature", "0.8", "--top_k", "12", "--top_p", "0.9", "--repetition_penalty",
                "1.2", "--max_new_tokens", "25", "--seed", "9"]
    out = subprocess.run([sys.executable, "-m", "lantern", "generate", "--checkpoint", str(run_dir),
                          "--prompt", "Once upon", *settings], capture_output=True, text=True,
                         check=True).stdout
    r = client.completions.create(model="tiny", prompt="Once upon", max_tokens=25, temperature=0.8,
                                  top_p=0.9, seed=9, extra_body={"top_k": 12, "repetition_penalty": 1.2})
    assert out.removesuffix("\n") == "Once upon" + r.choices[0].text


def test_models_pick_by_name_and_depth_follows_the_recursion(client, reference, run_dir, other_dir):
    names = [m.id for m in client.models.list().data]
    assert names == ["tiny", "other"]
    a = client.completions.create(model="tiny", prompt="Once", max_tokens=10, temperature=0)
    b = client.completions.create(model="other", prompt="Once", max_tokens=10, temperature=0)
    model_b, tokenizer = load_model(other_dir)[:2]
    want_b, _ = dense_greedy(model_b, tokenizer, tokenizer.encode("Once"), 10, {tokenizer.eos_id})
    assert b.choices[0].text == tokenizer.decode(want_b, skip_special_tokens=True)
    assert a.choices[0].text != b.choices[0].text
    model, tokenizer = reference
    shallow = client.completions.create(model="tiny", prompt="Once", max_tokens=10, temperature=0,
                                        extra_body={"depth": 1})
    want, _ = dense_greedy(model, tokenizer, tokenizer.encode("Once"), 10, {tokenizer.eos_id}, steps=1)
    assert shallow.choices[0].text == tokenizer.decode(want, skip_special_tokens=True)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="Once", max_tokens=2)


def test_adaptive_requests_return_a_trace_per_token_and_stream(client, reference):
    eos = reference[1].eos_id
    adaptive = {"adaptive": True, "tau_low": 0.5, "tau_mid": 1.0}  # no THINK: never trained
    kwargs = dict(model="tiny", prompt="Once", max_tokens=12, temperature=0.9, seed=4, n=2,
                  extra_body=adaptive)
    r = client.completions.create(**kwargs)
    assert r.usage.completion_tokens == sum(t["token"] != eos for c in r.model_dump()["choices"]
                                            for t in c["adaptive_trace"])
    for choice in r.model_dump()["choices"]:
        trace = choice["adaptive_trace"]
        assert all(1 <= t["depth"] <= 2 and t["uncertainty"] >= 0 for t in trace)
        assert "".join(t["text"] for t in trace if not t["think"]) == choice["text"]
    texts, traces, usage = {}, {}, None
    for chunk in client.completions.create(**kwargs, stream=True,
                                           stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for c in chunk.model_dump()["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + c["text"]
            traces.setdefault(c["index"], []).extend(c.get("adaptive_trace") or [])
    assert [texts[i] for i in range(2)] == [c.text for c in r.choices]
    assert [traces[i] for i in range(2)] == [c["adaptive_trace"] for c in r.model_dump()["choices"]]
    assert usage.completion_tokens == r.usage.completion_tokens


def test_tokenize_detokenize_and_metrics(server, reference, client):
    _, tokenizer = reference
    text = "Once upon a time"
    ids = httpx.post(f"{server.url}/tokenize", json={"content": text}).json()["tokens"]
    assert ids == tokenizer.encode(text)
    back = httpx.post(f"{server.url}/detokenize", json={"tokens": ids}).json()["content"]
    assert back == text
    r = client.completions.create(model="other", prompt="Once", max_tokens=5, temperature=0)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'lantern_requests_total{endpoint="/v1/completions",status="200"}' in metrics
    found = re.search(r'lantern_completion_tokens_total\{model="other"\} (\S+)', metrics)
    assert found and float(found.group(1)) >= r.usage.completion_tokens
    assert 'lantern_queue_length{model="tiny"}' in metrics
    assert "lantern_tokens_per_second" in metrics
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def requests_by_endpoint(server) -> dict[str, float]:
    counts: dict[str, float] = {}
    for endpoint, value in re.findall(r'^lantern_requests_total\{endpoint="([^"]*)",status="[^"]*"\} '
                                      r"(\S+)$", httpx.get(f"{server.url}/metrics").text, re.M):
        counts[endpoint] = counts.get(endpoint, 0.0) + float(value)
    return counts


def test_every_route_is_counted_under_its_own_endpoint(server):
    """The labels come from the app's routes: a new route can never be counted as "other"."""
    from fastapi.routing import iter_route_contexts

    routes = [(route.path, re.sub(r"\{[^}]*\}", "x", route.path_format))
              for route in iter_route_contexts(server.app.routes)]
    assert len({label for label, _ in routes}) == len(routes) >= 9
    before = requests_by_endpoint(server)
    for _, path in routes:
        httpx.get(f"{server.url}{path}")  # any status: 200, 404, or 405 for a POST endpoint
    after = requests_by_endpoint(server)
    for label, path in routes:
        assert after.get(label, 0) > before.get(label, 0), (label, path)
    assert after.get("other", 0) == before.get("other", 0)
    httpx.get(f"{server.url}/v1/nothing")
    assert requests_by_endpoint(server)["other"] == after.get("other", 0) + 1


def test_api_key_is_required_when_set(run_dir):
    with RunningServer(build_app({"tiny": run_dir}, api_key=KEY)) as running:
        base = f"{running.url}/v1"
        anonymous = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.completions.create(model="tiny", prompt="Once", max_tokens=2)
        assert httpx.get(f"{running.url}/v1/models").status_code == 401
        assert httpx.get(f"{running.url}/health").status_code == 200
        allowed = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
        assert allowed.completions.create(model="tiny", prompt="Once", max_tokens=2).usage


def test_a_port_in_use_is_one_line(capsys, server, run_dir):
    from lantern.cli.main import main

    assert main(["serve", "--checkpoint", str(run_dir), "--port", str(server.port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: cannot listen on 127.0.0.1:") and "\n" not in err, err


def test_the_command_line_serves_on_loopback(run_dir):
    process = subprocess.Popen([sys.executable, "-m", "lantern", "serve", "--checkpoint", str(run_dir),
                                "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None and url.startswith("http://127.0.0.1:")
        r = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0).completions.create(
            model=run_dir.name, prompt="Once", max_tokens=3, temperature=0)
        assert r.usage.completion_tokens <= 3
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_ignore_eos_generates_exactly_max_tokens(client, reference):
    model, tokenizer = reference
    r = client.completions.create(model="tiny", prompt="Once", max_tokens=30, temperature=0,
                                  extra_body={"ignore_eos": True})
    tokens, _ = dense_greedy(model, tokenizer, tokenizer.encode("Once"), 30, set())
    assert r.usage.completion_tokens == 30 and r.choices[0].finish_reason == "length"
    assert r.choices[0].text == tokenizer.decode(tokens, skip_special_tokens=True)


def test_a_failure_inside_the_model_is_an_error_object_and_serving_goes_on(client, monkeypatch):
    from lantern.serve import scheduler

    real_step = scheduler.Decoder.step
    calls = {"n": 0}

    def failing_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated device failure")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(scheduler.Decoder, "step", failing_step)
    with pytest.raises(openai.InternalServerError, match="simulated device failure"):
        client.completions.create(model="tiny", prompt="Once", max_tokens=5, temperature=0)
    r = client.completions.create(model="tiny", prompt="Once", max_tokens=5, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5


@pytest.mark.parametrize(("argv", "words"), [
    ([], "give a model"),
    (["--model", "no-equals-sign"], "NAME=PATH"),
    (["--model", "a=x", "--model", "a=y"], "two models are named 'a'"),
    (["--checkpoint", "/nonexistent/run"], "not found"),
    (["--port", "70000", "--model", "a=x"], "--port"),
    (["--max_batch", "0", "--model", "a=x"], "--max_batch"),
    (["--host", "no-such-host.invalid", "--model", "a=x"], "cannot listen on"),
])
def test_command_line_refusals_are_one_line(capsys, argv, words):
    from lantern.cli.main import main

    assert main(["serve", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: ") and "\n" not in err and words in err, err
