"""One request cannot harm another: a row that fails fails its own request only, values the
model cannot meet are refused (or cannot reach it), adaptive requests share the model thread and
the queue, and only the host names served may address the server. The command line refuses the
same values with one line."""

from __future__ import annotations

import argparse
import json
import time

import httpx
import pytest
from test_serve_helpers import RunningServer, build_app, save_tiny_checkpoint

from lantern.cli.main import main
from lantern.serve import ServeLimits

INNOCENT = {"model": "tiny", "prompt": "Once", "max_tokens": 60, "temperature": 1.0, "seed": 3,
            "ignore_eos": True}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("isolation") / "tiny")


@pytest.fixture(scope="module")
def server(run_dir):
    with RunningServer(build_app({"tiny": run_dir})) as running:
        running.http = httpx.Client(base_url=running.url, timeout=120)
        yield running


def streamed_text(response: httpx.Response, lines) -> str:
    """The text of an SSE completion stream (after the chunks already read); fails on an error."""
    text = ""
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        assert "error" not in chunk, chunk
        text += "".join(c["text"] for c in chunk["choices"])
    return text


def during_innocent_stream(server, act) -> tuple[str, object]:
    """Run `act()` while INNOCENT streams (after its first chunks); its whole text, act's result."""
    with httpx.Client(base_url=server.url, timeout=120) as other:
        with other.stream("POST", "/v1/completions", json={**INNOCENT, "stream": True}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            head = [next(lines) for _ in range(3)]  # it is decoding now
            result = act()
            return streamed_text(r, head) + streamed_text(r, lines), result


@pytest.mark.parametrize(("poison", "status"), [
    ({"seed": 2**64}, 400),  # beyond the generator's range
    ({"seed": -(2**63) - 1}, 400),
    ({"repetition_penalty": 1e-300}, 400),  # divides logits to inf
    ({"temperature": 1e-40}, 200),  # a valid temperature: near-greedy, never inf
], ids=["seed-2**64", "seed-below-range", "repetition-1e-300", "temperature-1e-40"])
def test_an_odd_request_never_fails_an_innocent_one_decoding_beside_it(server, poison, status):
    expected = server.http.post("/v1/completions", json=INNOCENT).json()["choices"][0]["text"]
    body = {"model": "tiny", "prompt": "The owl", "max_tokens": 20, **poison}
    got, answer = during_innocent_stream(server, lambda: server.http.post("/v1/completions",
                                                                           json=body))
    assert got == expected
    assert answer.status_code == status, answer.text
    if status == 400:
        assert next(iter(poison)) in answer.json()["error"]["message"]
    else:  # the limit of a vanishing temperature is the greedy choice
        greedy = server.http.post("/v1/completions", json={**body, "temperature": 0}).json()
        assert answer.json()["choices"][0]["text"] == greedy["choices"][0]["text"]


@pytest.mark.parametrize("where", ["setup", "sampling"])
def test_a_row_that_fails_fails_its_own_request_only(server, monkeypatch, where):
    from lantern.serve import scheduler

    class FailingForOneRequest(scheduler.RowPolicy):
        """A policy that fails, in its setup or its draw, for the request with temperature 0.55
        (say, a setting the generator refuses, or odd logits)."""

        def __init__(self, *args, **kwargs):
            self.fails = args[2].temperature == 0.55
            if self.fails and where == "setup":
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
            super().__init__(*args, **kwargs)

        def choose(self, logits):
            if self.fails:
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
            return super().choose(logits)

    expected = server.http.post("/v1/completions", json=INNOCENT).json()["choices"][0]["text"]
    monkeypatch.setattr(scheduler, "RowPolicy", FailingForOneRequest)
    body = {"model": "tiny", "prompt": "The owl", "max_tokens": 20, "temperature": 0.55, "n": 2}
    got, failed = during_innocent_stream(server, lambda: server.http.post("/v1/completions",
                                                                           json=body))
    assert got == expected
    assert failed.status_code == 500 and "probability tensor" in failed.json()["error"]["message"]
    ok = server.http.post("/v1/completions", json={**body, "temperature": 0.5})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 2


ADAPTIVE = {"model": "tiny", "prompt": "Once", "max_tokens": 100_000, "temperature": 1.0, "seed": 1,
            "ignore_eos": True, "adaptive": True, "stream": True}


def test_an_adaptive_request_shares_the_model_thread_with_plain_ones(run_dir):
    app = build_app({"tiny": run_dir}, ServeLimits(max_tokens=100_000))
    with RunningServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        plain = {"model": "tiny", "prompt": "The owl", "max_tokens": 20, "temperature": 0}
        expected = http.post("/v1/completions", json=plain).json()["choices"][0]["text"]
        with httpx.Client(base_url=server.url, timeout=60) as other:
            with other.stream("POST", "/v1/completions", json=ADAPTIVE) as adaptive:
                lines = adaptive.iter_lines()
                for _ in range(4):
                    next(lines)  # the controller is running
                start = time.monotonic()
                # would wait for 100,000 adaptive tokens if the adaptive run held the thread
                answer = http.post("/v1/completions", json=plain, timeout=10)
                took = time.monotonic() - start
                assert answer.json()["choices"][0]["text"] == expected
                assert took < 5.0
                assert "[DONE]" not in "".join(next(lines) for _ in range(4))  # still running


def test_adaptive_sequences_count_against_max_waiting(run_dir):
    app = build_app({"tiny": run_dir}, ServeLimits(max_tokens=100_000, max_waiting=2))
    with RunningServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        with httpx.Client(base_url=server.url, timeout=60) as other:
            with other.stream("POST", "/v1/completions", json={**ADAPTIVE, "n": 2}) as adaptive:
                lines = adaptive.iter_lines()
                for _ in range(4):
                    next(lines)
                busy = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once",
                                                          "max_tokens": 2})
                assert busy.status_code == 429 and "2 sequences waiting" in busy.text
        deadline = time.monotonic() + 10  # the client left: its sequences stop counting
        while time.monotonic() < deadline:
            r = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once",
                                                   "max_tokens": 2, "n": 2})
            if r.status_code == 200:
                break
            time.sleep(0.05)
        assert r.status_code == 200


def test_a_forged_host_header_is_refused(server, run_dir):
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert server.http.get("/health", headers={"Host": host}).status_code == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}",
                 "localhost.", "[::2]"):
        r = server.http.post("/v1/completions", headers={"Host": host},
                             json={"model": "tiny", "prompt": "Once", "max_tokens": 2})
        assert r.status_code == 400, host
        assert "--allowed_hosts" in r.json()["error"]["message"]
    assert server.http.get("/health", headers={"Host": "evil.example"}).status_code == 400
    app = build_app({"tiny": run_dir}, allowed_hosts=["*.example.com"])
    with RunningServer(app) as named, httpx.Client(base_url=named.url, timeout=60) as http:
        assert http.get("/health", headers={"Host": "api.example.com:8000"}).status_code == 200
        assert http.get("/health").status_code == 400  # 127.0.0.1 is not among them now
        assert http.get("/health", headers={"Host": "example.com.evil"}).status_code == 400


def test_allowed_hosts_on_the_command_line():
    from lantern.cli.serve import add_parser, allowed_hosts

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())

    def hosts(*argv):
        return allowed_hosts(parser.parse_args(["serve", *argv]), ("localhost", "127.0.0.1",
                                                                    "[::1]"))

    assert hosts() == ["localhost", "127.0.0.1", "[::1]"]
    assert hosts("--host", "0.0.0.0") == ["localhost", "127.0.0.1", "[::1]"]
    assert hosts("--host", "10.1.2.3") == ["localhost", "127.0.0.1", "[::1]", "10.1.2.3"]
    assert hosts("--host", "fd00::5") == ["localhost", "127.0.0.1", "[::1]", "[fd00::5]"]
    assert hosts("--allowed_hosts", "Box.lan", "*.example.com") == ["box.lan", "*.example.com"]


@pytest.mark.parametrize("pattern", ["http://box", "box:8000", "a*b", "*.", "box/x"])
def test_bad_allowed_hosts_are_one_line(capsys, pattern):
    assert main(["serve", "--model", "a=x", "--allowed_hosts", pattern]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lantern: error: --allowed_hosts") and "\n" not in err, err


@pytest.mark.parametrize(("flags", "words"), [
    (["--seed", str(2**64)], "--seed"),
    (["--seed", str(-(2**63) - 1)], "--seed"),
    (["--repetition_penalty", "1e-300"], "--repetition_penalty"),
    (["--frequency_penalty", "1e300"], "--frequency_penalty"),
    (["--presence_penalty", "-3"], "--presence_penalty"),
    (["--temperature", "1e300"], "--temperature"),
])
def test_generate_and_chat_refuse_what_the_sampler_cannot_meet(capsys, run_dir, flags, words):
    for command in ("generate", "chat"):
        assert main([command, "--checkpoint", str(run_dir), *flags]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"lantern: error: {words}") and "\n" not in err, err


def test_generate_with_a_vanishing_temperature_is_greedy(capsys, run_dir):
    texts = []
    for temperature in ("1e-40", "0"):
        argv = ["generate", "--checkpoint", str(run_dir), "--prompt", "Once", "--max_new_tokens",
                "20", "--temperature", temperature, "--seed", str(2**63 - 1)]
        assert main(argv) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("Once")
