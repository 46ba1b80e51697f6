"""Serving under load: aggregate tokens/s and latency of `lantern serve` with 1, 4 and 16
concurrent streaming clients, against the same server decoding one sequence at a time
(`--max_batch 1`), side by side in one run; then the server's memory over many requests. With
`--hostile`, instead: innocent clients alone, then the same innocent clients while hostile ones
send bad and abusive requests (see HOSTILE), alternating.

    .venv/bin/python benchmarks/serve_load.py [--tokens 64] [--requests 32] [--repeats 3]
                                               [--memory_requests 1000]
    .venv/bin/python benchmarks/serve_load.py --hostile [--tokens 32] [--requests 24]

What each side does: both sides are real `lantern serve` processes (uvicorn, 127.0.0.1,
ephemeral ports) holding the same `small`-preset model (1 block x 4 recursive steps, width 256,
random weights: speed does not depend on them, so no training is needed). "batched" admits up to
16 sequences into one running batch (continuous batching: one forward pass per step for all of
them); "one at a time" is the same server with `--max_batch 1`, so requests queue and decode
alone. Clients are asyncio httpx streaming clients in this process, each sending its requests
back to back. Every level does equal work: `--requests` requests of exactly `--tokens` tokens
(`ignore_eos`). Levels and sides alternate within each repeat; figures are medians over
repeats, latencies are pooled. Everything stays on the loopback interface and is bounded in
count and time.

The hostile check: 4 innocent streaming clients send `--requests` seeded requests of `--tokens`
tokens, first alone ("clean"), then while 4 hostile clients (another process) cycle through
HOSTILE, each at most 8 requests a second, until the innocent ones are done; `--repeats`
times, alternating. It reports innocent latency (p50, p95, pooled per condition), innocent
errors, whether every innocent text equals its clean run's (same seed, same text), and the
statuses the hostile requests got (any 5xx is a bug).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
import torch

from lantern.checkpoint import save_checkpoint
from lantern.config import preset_config
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer

LEVELS = (1, 4, 16)
PROMPT = "Once upon a time, a little fox found a red ball in the park."


def save_small_model(directory: Path) -> Path:
    tokenizer = CharTokenizer.train([PROMPT + "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"])
    config = preset_config("small", vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    model = LANTERNModel(config)
    save_checkpoint(directory / "final_model.pt", {
        "model_state_dict": model.state_dict(), "config": config.to_dict(),
        "tokenizer": tokenizer.to_json(), "step": 0})
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `lantern serve` subprocess on 127.0.0.1."""

    def __init__(self, checkpoint: Path, max_batch: int, threads: int, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lantern", "serve", "--checkpoint", str(checkpoint), "--port",
             str(self.port), "--max_batch", str(max_batch), "--max_waiting", "4096",
             "--log_level", "warning"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {log}")
            time.sleep(0.2)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@dataclass
class Result:
    seconds: float = 0.0
    tokens: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)  # by seed

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


async def one_request(client: httpx.AsyncClient, body: dict, result: Result) -> None:
    start = time.perf_counter()
    first = None
    tokens = None
    text = ""
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                result.errors += 1
                await response.aread()
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.errors += 1
                    return
                if first is None and chunk["choices"]:
                    first = time.perf_counter() - start
                text += "".join(choice["text"] for choice in chunk["choices"])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    except httpx.HTTPError:
        result.errors += 1
        return
    if tokens is None or first is None:
        result.errors += 1
        return
    result.tokens += tokens
    result.latencies.append(time.perf_counter() - start)
    result.first_token.append(first)
    result.texts[body["seed"]] = text


async def run_level(url: str, clients: int, requests: int, tokens: int, seed: int) -> Result:
    """`clients` concurrent clients share `requests` requests, each sent when its last ends."""
    result = Result()
    todo = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in todo:
            body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 1.0, "seed": seed + i,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
            await one_request(client, body, result)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def memory_run(server: Server, count: int, clients: int) -> list[tuple[int, float]]:
    """Server RSS (MiB) after every tenth of `count` short streamed requests."""
    samples = [(0, server.rss_mib())]
    step = max(1, count // 10)
    done = 0
    errors = 0
    while done < count:
        batch = min(step, count - done)
        result = asyncio.run(run_level(server.url, clients, batch, 8, seed=done))
        errors += result.errors
        done += batch
        samples.append((done, server.rss_mib()))
    if errors:
        print(f"  memory run: {errors} errors")
    return samples


# -- the hostile check ---------------------------------------------------------------------------
INNOCENT_CLIENTS = 4
HOSTILE_CLIENTS = 4
HOSTILE_RATE = 8  # requests per second per hostile client, at most: traffic, not a CPU flood
CONTEXT = 256  # the `small` preset's
# (name, path, request): bad, abusive or merely expensive requests; "hang_up" streams a long
# answer and leaves after the first chunks.
HOSTILE: list[tuple[str, str, dict]] = [
    ("malformed JSON", "/v1/completions", {"content": b'{"prompt": "Once", "max_tokens": '}),
    ("wrong type", "/v1/completions", {"json": {"prompt": 5}}),
    ("unknown field", "/v1/completions", {"json": {"prompt": "Once", "bogus": True}}),
    ("NaN temperature", "/v1/completions", {"content": b'{"prompt": "x", "temperature": NaN}'}),
    ("2 MB body", "/v1/completions", {"content": b'{"prompt": "' + b"a" * 2_000_000 + b'"}'}),
    ("max_tokens beyond the limit", "/v1/completions", {"json": {"prompt": "x", "max_tokens": 10**9}}),
    ("n beyond the limit", "/v1/completions", {"json": {"prompt": "x", "n": 1000}}),
    ("token id outside the vocabulary", "/v1/completions", {"json": {"prompt": [10**9]}}),
    ("prompt beyond the context", "/v1/completions", {"json": {"prompt": "a" * 4000}}),
    ("unknown model", "/v1/completions", {"json": {"prompt": "x", "model": "nope"}}),
    ("unknown chat role", "/v1/chat/completions",
     {"json": {"messages": [{"role": "wizard", "content": "hi"}]}}),
    ("extreme sampling values", "/v1/completions",
     {"json": {"prompt": PROMPT, "max_tokens": 8, "temperature": 100, "repetition_penalty": 10,
               "presence_penalty": 2, "frequency_penalty": -2, "seed": 2**63 - 1, "min_p": 1.0}}),
    ("16 long stop strings", "/v1/completions",
     {"json": {"prompt": PROMPT, "max_tokens": 32, "stop": [f"{i}" + "z" * 500 for i in range(16)]}}),
    ("scoring a full-context prompt", "/v1/completions",
     {"json": {"prompt": "a" * CONTEXT, "echo": True, "logprobs": 5, "max_tokens": 0}}),
    ("stream, then hang up", "/v1/completions",
     {"json": {"prompt": PROMPT, "max_tokens": 1024, "ignore_eos": True, "stream": True},
      "hang_up": True}),
    ("tokenize 900 KB", "/tokenize", {"json": {"content": "a" * 900_000}}),
]


async def hostile_client(client: httpx.AsyncClient, stop: asyncio.Event,
                         statuses: dict[tuple[str, str], int], first: int) -> None:
    """Send HOSTILE's requests in turn (at most HOSTILE_RATE a second) until `stop`; count
    what each got."""
    i = first
    due = time.monotonic()
    while not stop.is_set():
        name, path, request = HOSTILE[i % len(HOSTILE)]
        i += 1
        due += 1 / HOSTILE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        try:
            if request.get("hang_up"):
                async with client.stream("POST", path, json=request["json"]) as response:
                    chunks = 0
                    async for _ in response.aiter_lines():
                        chunks += 1
                        if chunks >= 4:
                            break
                status = f"{response.status_code}, left"
            else:
                response = await client.post(path, **request)
                status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        statuses[name, status] = statuses.get((name, status), 0) + 1


async def hostile_clients(url: str, stop: EventType) -> dict[tuple[str, str], int]:
    """HOSTILE_CLIENTS hostile clients until `stop` is set; what their requests got."""
    done = asyncio.Event()
    statuses: dict[tuple[str, str], int] = {}

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
        done.set()

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await asyncio.gather(watch(), *(hostile_client(client, done, statuses, i * 4)
                                        for i in range(HOSTILE_CLIENTS)))
    return statuses


def hostile_process(url: str, stop: EventType, out: multiprocessing.Queue) -> None:
    """The hostile clients in a process of their own, so that making their requests (a 2 MB
    body, 900 KB of text) does not slow the innocent clients' own event loop."""
    out.put(asyncio.run(hostile_clients(url, stop)))


def mixed_level(url: str, requests: int, tokens: int,
                hostile: bool) -> tuple[Result, dict[tuple[str, str], int]]:
    """The innocent clients' run (seeds 0..requests-1), with hostile clients alongside or not."""
    if not hostile:
        return asyncio.run(run_level(url, INNOCENT_CLIENTS, requests, tokens, seed=0)), {}
    stop, out = multiprocessing.Event(), multiprocessing.Queue()
    attacker = multiprocessing.Process(target=hostile_process, args=(url, stop, out))
    attacker.start()
    time.sleep(1.0)  # let the hostile traffic get going
    result = asyncio.run(run_level(url, INNOCENT_CLIENTS, requests, tokens, seed=0))
    stop.set()
    statuses = out.get(timeout=300)
    attacker.join(timeout=60)
    return result, statuses


def hostile_check(checkpoint: Path, args: argparse.Namespace, log: Path) -> None:
    server = Server(checkpoint, 16, args.threads, log)
    try:
        asyncio.run(run_level(server.url, 4, 8, 8, seed=0))  # warm up
        runs: dict[str, list[Result]] = {"clean": [], "hostile": []}
        statuses: dict[tuple[str, str], int] = {}
        for repeat in range(args.repeats):
            for condition in ("clean", "hostile") if repeat % 2 == 0 else ("hostile", "clean"):
                result, seen = mixed_level(server.url, args.requests, args.tokens,
                                           condition == "hostile")
                runs[condition].append(result)
                for key, count in seen.items():
                    statuses[key] = statuses.get(key, 0) + count
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        server.stop()

    reference = runs["clean"][0].texts
    print(f"\n`small` preset, random weights; {INNOCENT_CLIENTS} innocent streaming clients, "
          f"{args.requests} requests of {args.tokens} tokens per run, {args.repeats} runs per "
          f"condition; {HOSTILE_CLIENTS} hostile clients in the hostile runs\n")
    print("| condition | innocent requests | p50 latency s | p95 latency s | p50 first token s | "
          "innocent errors | texts equal to the clean run's |")
    print("|---|---|---|---|---|---|---|")
    p95 = {}
    for condition, results in runs.items():
        latencies = [x for r in results for x in r.latencies]
        firsts = [x for r in results for x in r.first_token]
        same = sum(r.texts.get(seed) == text for r in results for seed, text in reference.items())
        p95[condition] = percentile(latencies, 0.95)
        print(f"| {condition} | {len(latencies)} | {percentile(latencies, 0.5):.2f} | "
              f"{p95[condition]:.2f} | {percentile(firsts, 0.5):.3f} | "
              f"{sum(r.errors for r in results)} | {same}/{len(reference) * len(results)} |")
    ratio = p95["hostile"] / p95["clean"]
    print(f"\ninnocent p95 latency, hostile / clean: {ratio:.2f}x "
          f"(target <= 2x: {'met' if ratio <= 2 else 'MISSED'})")
    print("\n| hostile request | answers (status: count) |\n|---|---|")
    for name, _, _ in HOSTILE:
        got = sorted((status, n) for (kind, status), n in statuses.items() if kind == name)
        print(f"| {name} | {', '.join(f'{status}: {n}' for status, n in got)} |")
    server_errors = sum(n for (_, status), n in statuses.items() if status.startswith("5"))
    print(f"\nhostile requests answered 5xx: {server_errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per request")
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory_requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    parser.add_argument("--hostile", action="store_true",
                        help="only the check of innocent clients under hostile traffic")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_small_model(Path(tmp) / "small")
        if args.hostile:
            hostile_check(checkpoint, args, Path(tmp) / "hostile.log")
            return
        batched = Server(checkpoint, 16, args.threads, Path(tmp) / "batched.log")
        serial = Server(checkpoint, 1, args.threads, Path(tmp) / "serial.log")
        try:
            for server in (batched, serial):  # warm up both (first-call allocations)
                asyncio.run(run_level(server.url, 4, 8, 8, seed=0))
            runs = {(side, c): [] for side in ("batched", "one at a time") for c in LEVELS}
            sides = (("batched", batched), ("one at a time", serial))
            for repeat in range(args.repeats):  # alternate the order of levels and of sides
                levels = LEVELS if repeat % 2 == 0 else LEVELS[::-1]
                for c in levels:
                    for side, server in sides if repeat % 2 == 0 else sides[::-1]:
                        runs[side, c].append(asyncio.run(
                            run_level(server.url, c, args.requests, args.tokens, seed=1000 * c)))
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

            print(f"\n`small` preset, random weights; {args.requests} streamed requests of "
                  f"{args.tokens} tokens per measurement; median of {args.repeats} repeats; "
                  f"{args.threads} torch thread(s) per server\n")
            print("| clients | side | aggregate tokens/s | vs 1 client (same side) | "
                  "batched / one at a time | p50 latency s | p95 latency s | p50 first token s | "
                  "errors |")
            print("|---|---|---|---|---|---|---|---|---|")
            median = {k: statistics.median(r.tokens_per_second for r in v) for k, v in runs.items()}
            total_errors = 0
            for c in LEVELS:
                for side in ("batched", "one at a time"):
                    results = runs[side, c]
                    latencies = [x for r in results for x in r.latencies]
                    firsts = [x for r in results for x in r.first_token]
                    errors = sum(r.errors for r in results)
                    total_errors += errors
                    vs_one = median[side, c] / median[side, 1]
                    vs_serial = median["batched", c] / median["one at a time", c]
                    print(f"| {c} | {side} | {median[side, c]:.0f} | {vs_one:.2f}x | "
                          f"{vs_serial:.2f}x | {percentile(latencies, 0.5):.2f} | "
                          f"{percentile(latencies, 0.95):.2f} | {percentile(firsts, 0.5):.3f} | "
                          f"{errors} |")
            ratio = median["batched", 16] / median["batched", 1]
            print(f"\nbatched, 16 clients vs 1 client: {ratio:.2f}x aggregate tokens/s "
                  f"(target >= 4x: {'met' if ratio >= 4 else 'MISSED'}); errors: {total_errors}")

            if args.memory_requests:
                samples = memory_run(batched, args.memory_requests, 16)
                base = samples[1][1]
                print(f"\nmemory of the batched server over {args.memory_requests} streamed "
                      f"requests (16 clients, 8 tokens each): RSS MiB after "
                      + ", ".join(f"{n}: {rss:.0f}" for n, rss in samples))
                print(f"growth after the first tenth: {samples[-1][1] - base:+.1f} MiB "
                      f"({(samples[-1][1] - base) / base:+.1%})")
        finally:
            batched.stop()
            serial.stop()


if __name__ == "__main__":
    main()
