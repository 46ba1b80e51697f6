"""Adding a sampler is its rule and its config field, nothing more.

A copy of the package gets exactly those two edits: a test-only rule (ban one token id) in
`logits_process.py` and its field in `SamplingConfig`. The new setting then reaches `lantern
generate` (flag, help, output), the server's request model and its generation settings, and
the llama.cpp request, which refuses it by name since llama.cpp has no such sampler.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

import lantern
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer
from tests.conftest import TINY_TEXT, save_run, tiny_config

RULE = '''

class BanToken(LogitsRule):
    """Test-only: never emit one token."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None) -> torch.Tensor:
        banned = logits.clone()
        banned[..., self.token] = float("-inf")
        return banned
'''
FIELD = '''    ban_token: int | None = sampler(None, BanToken, "never emit this token id", off=None,
                                    ge=0, greedy_too=True)
'''
LAST_FIELD = '''                                  llamacpp=("min_p", "min_p"))
'''

# Run inside the edited copy: the server's request model and the llama.cpp request.
SERVE_AND_LLAMACPP = '''
import sys
import lantern
from pydantic import ValidationError
from lantern.errors import LanternError
from lantern.generation.backends.llamacpp import sampling_payload
from lantern.generation.settings import GenerationConfig
from lantern.serve.limits import ServeLimits
from lantern.serve.metrics import ServerMetrics
from lantern.serve.registry import load_served_model
from lantern.serve.schemas import ChatCompletionRequest, CompletionRequest

assert lantern.__file__.startswith(sys.argv[2]), lantern.__file__
limits = ServeLimits()
served = load_served_model("tiny", sys.argv[1], "cpu", limits, ServerMetrics())
request = CompletionRequest(prompt="Once", temperature=0, ban_token=5)
config = request.generation_config(served, limits)
assert config.ban_token == 5 and "BanToken" in [type(r).__name__ for r in config.rules()]
assert "ban_token" in ChatCompletionRequest.model_fields
try:
    CompletionRequest(prompt="Once", ban_token=-1)
    raise SystemExit("a negative ban_token was accepted")
except ValidationError as exc:
    assert exc.errors()[0]["loc"] == ("ban_token",)
assert "ban_token" not in str(sampling_payload(GenerationConfig()))  # off: nothing to refuse
try:
    sampling_payload(GenerationConfig(ban_token=5))
    raise SystemExit("llama.cpp was sent a sampler it does not have")
except LanternError as exc:
    print(exc)
'''


def edited_copy(root: Path) -> Path:
    """The package copied under `root`, with the sampler's rule and field added."""
    copy = root / "lantern"
    shutil.copytree(Path(lantern.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    rules = copy / "generation" / "logits_process.py"
    rules.write_text(rules.read_text() + RULE)
    sampling = copy / "generation" / "sampling.py"
    text = sampling.read_text()
    assert text.count(LAST_FIELD) == 1
    text = text.replace(LAST_FIELD, LAST_FIELD + FIELD).replace("    apply_rules,\n",
                                                                "    BanToken,\n    apply_rules,\n")
    sampling.write_text(text)
    return copy


def changed_files(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    changed = [str(Path(left.name) / name) for name in comparison.diff_files
               + comparison.left_only + comparison.right_only]
    for name in comparison.subdirs:
        changed += [str(Path(left.name) / c) for c in changed_files(left / name, right / name)]
    return changed


def test_a_new_sampler_is_its_rule_and_its_field(tmp_path):
    copy = edited_copy(tmp_path / "src")
    assert sorted(changed_files(Path(lantern.__file__).parent, copy)) == [
        "lantern/generation/logits_process.py", "lantern/generation/sampling.py"]
    tokenizer = CharTokenizer.train([TINY_TEXT])
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_run(LANTERNModel(tiny_config(vocab_size=tokenizer.vocab_size)).eval(), tokenizer, run)
    env = {**os.environ, "PYTHONPATH": str(copy.parent)}

    def lantern_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lantern", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)

    assert "never emit this token id [off]" in " ".join(lantern_cli("generate", "--help").stdout.split())
    greedy = ["generate", "--checkpoint", str(run), "--prompt", "Once", "--temperature", "0",
              "--max_new_tokens", "1"]
    first = lantern_cli(*greedy).stdout.removeprefix("Once")[0]
    banned = lantern_cli(*greedy, "--ban_token", str(tokenizer.token_to_id(first)))
    assert banned.returncode == 0 and banned.stdout.removeprefix("Once")[0] != first
    bad = lantern_cli(*greedy, "--ban_token", "-1")
    assert (bad.returncode, bad.stderr) == (1, "lantern: error: --ban_token must not be negative "
                                               "(got -1)\n")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    refused = lantern_cli("generate", "--checkpoint", str(gguf), "--ban_token", "3")
    assert refused.returncode == 1
    assert refused.stderr.startswith("lantern: error: --ban_token: not available for a .gguf")
    assert refused.stderr.count("\n") == 1
    served = subprocess.run([sys.executable, "-c", SERVE_AND_LLAMACPP, str(run), str(copy)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("--ban_token: not available for a .gguf model")
