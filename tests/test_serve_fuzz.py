"""Fuzzing every endpoint of the real server with schemathesis, from the server's own OpenAPI
document (`create_app(...).openapi()`; `lantern serve` does not publish it).

schemathesis (its command line, in a subprocess) sends valid, boundary and invalid requests
(positive and negative generation, coverage and fuzzing phases) to a live server on loopback,
deterministically and in bounded number. Every answer must be no 5xx, arrive within the request
timeout, and match what the document declares (status, content type, body schema); invalid
requests must be refused. Meanwhile a fixed "innocent" request is sent again and again from
another thread and must get exactly the text it gets alone. The server's own request counter
(`/metrics`) says how many requests arrived and that none was answered with a 5xx.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import httpx
import pytest
import torch
from test_serve_helpers import RunningServer, build_app, save_tiny_checkpoint

from lantern.serve import ServeLimits

EXAMPLES_PER_OPERATION = 15
# Small limits keep each accepted request cheap (the fuzzer asks for the most it may); requests
# beyond them are refusals, which the checks cover too.
LIMITS = ServeLimits(max_tokens=16, max_n=2, max_batch=8, max_waiting=64)
REQUEST_TIMEOUT_S = 20
INNOCENT = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.9, "seed": 3,
            "ignore_eos": True}
# A request the schema allows can still be refused for this server's limits (max_tokens, n, the
# context, the vocabulary, the model's name), which no static schema states: refusing valid
# data is allowed; every other check runs.
EXCLUDED_CHECKS = "positive_data_acceptance"


@pytest.fixture
def one_torch_thread():
    """The tiny model gains nothing from more threads, and on a machine whose cores are shared
    (here with the fuzzer) spinning threads slow every step down many times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def served_requests(metrics: str) -> dict[tuple[str, str], float]:
    """`lantern_requests_total` by (endpoint, status)."""
    counts = {}
    for endpoint, status, value in re.findall(
            r'^lantern_requests_total\{endpoint="([^"]*)",status="([^"]*)"\} (\S+)$', metrics,
            flags=re.MULTILINE):
        counts[endpoint, status] = float(value)
    return counts


def test_fuzzing_every_endpoint_finds_no_server_error_and_spares_an_innocent_request(
        tmp_path, one_torch_thread):
    app = build_app({"tiny": save_tiny_checkpoint(tmp_path / "tiny")}, LIMITS)
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(app.openapi()))
    answers: list[tuple[int, str]] = []
    stop = threading.Event()
    with RunningServer(app) as server:
        url = f"{server.url}/v1/completions"
        expected = httpx.post(url, json=INNOCENT, timeout=60).json()["choices"][0]["text"]

        def innocent() -> None:
            with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
                while not stop.wait(0.05):
                    r = client.post(url, json=INNOCENT)
                    answers.append((r.status_code, r.json()["choices"][0]["text"]
                                    if r.status_code == 200 else r.text))

        thread = threading.Thread(target=innocent)
        thread.start()
        try:
            run = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", server.url,
                 "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS, "--mode", "all",
                 "--max-examples", str(EXAMPLES_PER_OPERATION), "--generation-deterministic",
                 "--request-timeout", str(REQUEST_TIMEOUT_S), "--no-color"],
                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        finally:
            stop.set()
            thread.join(REQUEST_TIMEOUT_S + 5)
        counts = served_requests(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert re.search(r"Tested: 7\b", run.stdout), run.stdout[-2000:]  # every operation
    server_errors = {key: n for key, n in counts.items() if key[1].startswith("5")}
    assert not server_errors
    assert len(answers) >= 3
    assert [a for a in answers if a != (200, expected)] == []
    fuzzed = sum(counts.values()) - len(answers) - 1
    cases = re.search(r"(\d+) generated", run.stdout)
    print(f"\nschemathesis: {cases.group(1) if cases else '?'} test cases; the server answered "
          f"{fuzzed:.0f} fuzzing requests (statuses: "
          f"{sorted({status for _, status in counts})}) and {len(answers)} innocent ones")


def test_what_fuzzing_found_stays_fixed(tmp_path):
    """An empty body is refused in words, a wrong method names the allowed ones (`Allow`), and
    the document declares the 400 the server answers instead of FastAPI's 422."""
    app = build_app({"tiny": save_tiny_checkpoint(tmp_path / "tiny")}, LIMITS)
    document = app.openapi()
    completions = document["paths"]["/v1/completions"]["post"]["responses"]
    assert "422" not in completions and "400" in completions
    assert "text/event-stream" in completions["200"]["content"]
    with RunningServer(app) as server:
        empty = httpx.post(f"{server.url}/v1/completions", timeout=30)
        assert empty.status_code == 400
        assert empty.json()["error"]["message"] == "the request body is missing; send a JSON object"
        wrong = httpx.request("TRACE", f"{server.url}/health", timeout=30)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
