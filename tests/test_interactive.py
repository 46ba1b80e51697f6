"""`lantern chat` / `lantern generate --interactive`, driven through a real pseudo-terminal."""

from __future__ import annotations

import signal
import sys

import pexpect
import pytest
import torch
from conftest import TINY_TEXT, tiny_config

from lantern.chat_template import render
from lantern.checkpoint import save_checkpoint
from lantern.generation.prompts import chat_messages
from lantern.models.lantern_model import LANTERNModel
from lantern.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A random-weight model that never emits special tokens, so an answer runs until its
    length limit or Ctrl-C."""
    tokenizer = CharTokenizer.train([TINY_TEXT])
    config = tiny_config(vocab_size=tokenizer.vocab_size, tie_embeddings=False)
    torch.manual_seed(0)
    model = LANTERNModel(config)
    with torch.no_grad():
        model.transformer.norm.weight[0] = 0.0  # hidden unit 0 is always 1 ...
        model.transformer.norm.bias[0] = 1.0
        specials = sorted(tokenizer.special_ids())
        model.lm_head.weight[specials] = 0.0  # ... and pushes every special token far down
        model.lm_head.weight[specials, 0] = -50.0
    path = tmp_path_factory.mktemp("chat") / "model.pt"
    save_checkpoint(path, {"model_state_dict": model.state_dict(), "config": config.to_dict(),
                           "tokenizer": tokenizer.to_json(), "step": 0})
    return path


def as_from_a_shell() -> None:
    """Ctrl-C reaches the child as it would from a terminal: a signal mask or an ignored SIGINT
    left in the test process by earlier tests' libraries is inherited across exec otherwise."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(model_file, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "lantern", *args, "--model", str(model_file),
                                           "--device", "cpu"],
                          encoding="utf-8", timeout=30, dimensions=(40, 200),
                          preexec_fn=as_from_a_shell)
    child.expect("Type /help for commands")
    child.expect("> ")
    return child


def send(child: pexpect.spawn, line: str, reply: str) -> None:
    child.sendline(line)
    child.expect_exact(reply)
    child.expect("> ")


def test_commands_change_settings_and_bad_input_is_survived(model_file):
    child = spawn(model_file, "chat", "--template", "chat", "--max_new_tokens", "5")
    send(child, "/help", "/topp <value>")
    send(child, "/temp 0.5", "Temperature set to 0.5")
    send(child, "/topk 10", "Top-k set to 10")
    send(child, "/topp 0.9", "Top-p set to 0.9")
    send(child, "/len 7", "Max length set to 7")
    send(child, "/seed 3", "Seed set to 3")
    send(child, "/temp -2", "error: --temperature must not be negative")
    send(child, "/topk x", "error: /topk: 'x' is not a number")
    send(child, "/len", "error: /len needs a value")
    send(child, "/bogus", "error: unknown command /bogus")
    send(child, "/len 0", "error: --max_new_tokens must be positive")
    send(child, "/reset", "Conversation cleared")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_same_seed_same_answer_and_length_limit(model_file):
    child = spawn(model_file, "generate", "--interactive")
    answers = []
    for _ in range(2):
        send(child, "/seed 11", "Seed set to 11")
        child.sendline("/len 12")
        child.expect("> ")
        child.sendline("Once")
        child.expect(r"Once(.*)\r\n> ")
        answers.append(child.match.group(1).split("\r\n")[-1])
    # The prompt is echoed, then at most 12 new characters follow it (one per token; byte
    # tokens of the character vocabulary may need several for one character).
    assert answers[0] == answers[1] and answers[0].startswith("Once") and 4 < len(answers[0]) <= 16
    child.sendeof()
    child.expect(pexpect.EOF)


def test_ctrl_c_stops_the_answer_but_not_the_session(model_file):
    child = spawn(model_file, "chat", "--template", "chat", "--max_new_tokens", "1000000")
    child.sendline("hello")
    child.expect_exact("hello")  # the terminal's echo of the input line
    child.expect(r"\w{3}")  # tokens are streaming
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect("> ")
    send(child, "/temp 1.0", "Temperature set to 1.0")
    child.sendline("/quit")
    child.expect(pexpect.EOF)


def test_chat_template_layout():
    text = render(chat_messages([("Hi", "Hello!")], "How are you?", system="Be kind."))
    assert text == ("<system>Be kind.</system><user>Hi</user><assistant>Hello!</assistant>\n"
                    "<user>How are you?</user><assistant>")
