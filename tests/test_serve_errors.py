"""Bad requests get the right status and an OpenAI-style error object, never a traceback, and
the server keeps serving after each one."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from test_serve_helpers import RunningServer, build_app, save_tiny_checkpoint

from lantern.checkpoint import load_model
from lantern.serve import ServeLimits

KEY = "k3y"
LIMITS = ServeLimits(max_body_bytes=20_000, max_tokens=64, max_n=4, max_batch=4, max_waiting=8)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = save_tiny_checkpoint(tmp_path_factory.mktemp("errors") / "tiny", context=32)
    app = build_app({"tiny": run}, LIMITS, api_key=KEY)
    with RunningServer(app) as running:
        running.http = httpx.Client(base_url=running.url, headers=AUTH, timeout=60)
        yield running


def completion(**fields) -> dict:
    return {"model": "tiny", "prompt": "Once", "max_tokens": 4, **fields}


def chat(**fields) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            **fields}


def assert_error(response: httpx.Response, status: int, words: str = "") -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert words.lower() in error["message"].lower(), error["message"]
    return error


def assert_healthy(server) -> None:
    assert server.http.get("/health").json()["status"] == "ok"
    r = server.http.post("/v1/completions", json=completion(temperature=0))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1


CASES = [
    # (name, endpoint, body (dict, or raw bytes), status, words in the message)
    ("malformed JSON", "/v1/completions", b'{"model": "tiny", "prompt": ', 400, "not valid JSON"),
    ("not an object", "/v1/completions", b"[1, 2, 3]", 400, ""),
    ("string max_tokens", "/v1/completions", completion(max_tokens="10"), 400, "max_tokens"),
    ("string prompt list", "/v1/completions", completion(prompt=[1, "a"]), 400, "prompt"),
    ("negative max_tokens", "/v1/completions", completion(max_tokens=-5), 400, "max_tokens"),
    ("huge max_tokens", "/v1/completions", completion(max_tokens=10**9), 400, "at most 64"),
    ("huge n", "/v1/completions", completion(n=1000), 400, "at most 4"),
    ("n zero", "/v1/chat/completions", chat(n=0), 400, "n"),
    ("negative temperature", "/v1/completions", completion(temperature=-1), 400, "temperature"),
    ("NaN top_p", "/v1/completions", b'{"model": "tiny", "prompt": "a", "top_p": NaN}', 400, "top_p"),
    ("empty messages", "/v1/chat/completions", chat(messages=[]), 400, "messages"),
    ("unknown role", "/v1/chat/completions", chat(messages=[{"role": "robot", "content": "x"}]),
     400, "role"),
    ("missing content", "/v1/chat/completions", chat(messages=[{"role": "user"}]), 400, "content"),
    ("unknown model", "/v1/completions", completion(model="gpt-9"), 404, "gpt-9"),
    ("unknown field", "/v1/completions", completion(logit_bias={"1": 5}), 400, "logit_bias"),
    ("prompt over context", "/v1/completions", completion(prompt="a" * 200), 400, "context is 32"),
    ("token id outside vocabulary", "/v1/completions", completion(prompt=[0, 99999]), 400,
     "vocabulary"),
    ("empty prompt list", "/v1/completions", completion(prompt=[]), 400, "at least one"),
    ("empty stop string", "/v1/completions", completion(stop=[""]), 400, "stop"),
    ("stop string too long", "/v1/completions", completion(stop=["x" * 1001]), 400,
     "at most 1000 characters"),
    ("too many stop strings", "/v1/completions", completion(stop=["x"] * 17), 400, "at most 16"),
    ("seed beyond the generator's range", "/v1/completions", completion(seed=2**64), 400, "seed"),
    ("repetition penalty that overflows", "/v1/chat/completions", chat(repetition_penalty=1e-300),
     400, "repetition_penalty"),
    ("stream_options without stream", "/v1/completions",
     completion(stream_options={"include_usage": True}), 400, "stream"),
    ("detokenize out of range", "/detokenize", {"tokens": [10**6]}, 400, "vocabulary"),
    ("adaptive thresholds out of order", "/v1/completions",
     completion(adaptive=True, tau_low=3.0, tau_mid=2.0), 400, "tau_low"),
    ("a THINK threshold for a model never trained with THINK", "/v1/completions",
     completion(adaptive=True, tau_high=1.0), 400, "tau_high"),
    ("adaptive with logprobs", "/v1/completions", completion(adaptive=True, logprobs=2), 400,
     "logprobs"),
    ("depth far beyond training", "/v1/completions", completion(depth=500), 400, "depth"),
]


@pytest.mark.parametrize(("name", "endpoint", "body", "status", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_request(server, name, endpoint, body, status, words):
    if isinstance(body, bytes):
        r = server.http.post(endpoint, content=body, headers={"Content-Type": "application/json"})
    else:
        r = server.http.post(endpoint, json=body)
    assert_error(r, status, words)
    assert_healthy(server)


def test_prompt_over_context_is_kept_from_its_end_when_asked(server):
    r = server.http.post("/v1/completions", json=completion(prompt="a" * 200, truncate=True,
                                                            temperature=0))
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 32


def test_oversized_body_is_refused_before_parsing(server):
    big = json.dumps(completion(prompt="a" * 30_000))
    assert_error(server.http.post("/v1/completions", content=big,
                                  headers={"Content-Type": "application/json"}), 413, "larger")

    def chunks():
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(30):
            yield b"a" * 1000
        yield b'"}'

    # no Content-Length (chunked): counted while it arrives
    assert_error(server.http.post("/v1/completions", content=chunks(),
                                  headers={"Content-Type": "application/json"}), 413, "larger")
    assert_healthy(server)


def test_bad_auth_unknown_endpoint_and_method(server):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEY}"}):
        r = httpx.post(f"{server.url}/v1/completions", json=completion(), headers=headers)
        assert_error(r, 401, "api key")
    assert_error(server.http.get("/v1/nothing"), 404, "no such endpoint")
    assert_error(server.http.get("/v1/completions"), 405, "method")
    assert_healthy(server)


def metric(server, name: str) -> float:
    found = re.search(rf'{name}\{{model="tiny"\}} (\S+)', server.http.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_client_disconnect_mid_stream_frees_its_slot(tmp_path):
    run = save_tiny_checkpoint(tmp_path / "tiny")
    app = build_app({"tiny": run}, ServeLimits(max_tokens=100_000))
    with RunningServer(app) as server:
        server.http = httpx.Client(base_url=server.url, timeout=60)
        eos = load_model(run)[1].eos_id
        # 40 end-of-sequence tokens in the prompt and the frequency penalty keep it from ending
        body = completion(prompt=[eos] * 40 + [20, 21], frequency_penalty=2.0, max_tokens=100_000,
                          stream=True, temperature=1.0, seed=1)
        with httpx.Client(base_url=server.url, timeout=60) as one:
            with one.stream("POST", "/v1/completions", json=body) as stream:
                data = (line for line in stream.iter_lines() if line.startswith("data: "))
                for _ in range(20):
                    assert json.loads(next(data)[6:])["choices"]
                assert metric(server, "lantern_active_rows") == 1
            # leaving the block closes the connection mid-stream
        left = time.monotonic()
        while metric(server, "lantern_active_rows") and time.monotonic() < left + 5:
            time.sleep(0.01)
        freed_after = time.monotonic() - left
        assert metric(server, "lantern_active_rows") == 0
        assert freed_after < 2.0
        made = metric(server, "lantern_completion_tokens_total")
        time.sleep(0.3)
        assert metric(server, "lantern_completion_tokens_total") == made < 100_000
        # a client that gives up on a non-streamed answer frees its rows as well
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/completions", json={**body, "stream": False, "n": 2},
                       timeout=httpx.Timeout(60, read=0.5))
        left = time.monotonic()
        while metric(server, "lantern_active_rows") and time.monotonic() < left + 5:
            time.sleep(0.01)
        assert metric(server, "lantern_active_rows") == 0
        assert time.monotonic() - left < 2.0
        # an adaptive request runs on the model's thread: leaving must free that thread too
        adaptive = {**body, "adaptive": True, "ignore_eos": True, "frequency_penalty": 0.0}
        with httpx.Client(base_url=server.url, timeout=60) as one:
            with one.stream("POST", "/v1/completions", json=adaptive) as stream:
                data = (line for line in stream.iter_lines() if line.startswith("data: "))
                for _ in range(5):
                    next(data)
        left = time.monotonic()
        assert_healthy(server)  # would wait for 100,000 adaptive tokens if the thread were held
        assert time.monotonic() - left < 5.0


def test_concurrent_burst_gets_answers_or_429_never_500(server):
    async def burst():
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120) as c:
            requests = [c.post("/v1/completions", json=completion(max_tokens=16, seed=i, n=2))
                        for i in range(30)]
            requests += [c.post("/v1/chat/completions", content=b"{oops",
                                headers={"Content-Type": "application/json"}) for _ in range(5)]
            return await asyncio.gather(*requests)

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert statuses[-5:] == [400] * 5
    assert set(statuses[:30]) <= {200, 429}
    assert statuses.count(200) >= 4
    for r in responses:
        if r.status_code == 429:
            assert_error(r, 429, "busy")
        elif r.status_code == 200:
            assert len(r.json()["choices"]) == 2
    assert_healthy(server)
