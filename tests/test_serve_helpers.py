"""Shared pieces of the serve tests: a tiny recursive model saved as a checkpoint, and the real
server (uvicorn on an ephemeral loopback port) running in a thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch
import uvicorn

from lantern.chat_template import example
from lantern.checkpoint import load_model
from lantern.config import LANTERNConfig
from lantern.models.lantern_model import LANTERNModel
from lantern.serve import ModelRegistry, ServeLimits, create_app, load_served_model
from lantern.serve.metrics import ServerMetrics
from lantern.tokenizers import CharTokenizer
from tests.conftest import save_run

TEXT = ("Once upon a time, a little fox found a red ball in the park. The owl was happy.\n"
        + example("Hello there", "Hi, how are you?") + example("Tell a story", "A fox ran.", "Be kind"))


def save_tiny_checkpoint(directory: Path, seed: int = 0, context: int = 64) -> Path:
    """A random-weight recursive model (1 block x 2 steps) with a character tokenizer."""
    tokenizer = CharTokenizer.train([TEXT])
    config = LANTERNConfig(vocab_size=tokenizer.vocab_size, context_length=context, hidden_size=32,
                           num_heads=4, num_blocks=1, steps_per_block=2)
    torch.manual_seed(seed)
    save_run(LANTERNModel(config), tokenizer, directory, step=0)
    return directory


def build_app(models: dict[str, Path], limits: ServeLimits | None = None, api_key: str | None = None,
              allowed_hosts: list[str] | None = None):
    limits = limits or ServeLimits()
    metrics = ServerMetrics()
    served = [load_served_model(name, path, "cpu", limits, metrics) for name, path in models.items()]
    if allowed_hosts is None:
        return create_app(ModelRegistry(served), limits, api_key, metrics)
    return create_app(ModelRegistry(served), limits, api_key, metrics, allowed_hosts)


class RunningServer:
    """`with RunningServer(app) as s:` serves `app` on http://127.0.0.1:{s.port}."""

    def __init__(self, app) -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_tiny_checkpoint_loads_as_saved(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "run")
    model, tokenizer, _ = load_model(path)
    assert model.config.steps_per_block == 2
    assert tokenizer.token_to_id("</assistant>") is not None
