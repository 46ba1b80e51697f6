"""The interactive loop of `lantern generate --interactive` and `lantern chat`.

Each line is either a /command that changes a setting, or a prompt whose answer streams out
token by token. Ctrl-C stops the answer (the session goes on); Ctrl-D or /quit leaves. Nothing
a user types can end the session with a traceback: a bad value gets one line saying why.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TextIO

import torch

from lantern.errors import LanternError
from lantern.generation.engine import TextEngine
from lantern.generation.prompts import chat_messages, fit_context
from lantern.generation.settings import GenerationConfig, check_seed

HELP = """Commands:
  /temp <value>   temperature (0 = greedy)
  /topk <value>   keep the k most likely tokens (0 = off)
  /topp <value>   nucleus sampling mass (1 = off)
  /len <value>    maximum new tokens per answer
  /seed <value>   random seed (the same seed gives the same answers)
  /reset          forget the conversation so far
  /help           this list
  /quit           leave (Ctrl-D works too)
  <text>          generate from the text; Ctrl-C stops an answer"""


class InteractiveSession:
    """Settings, conversation history and the random generator of one interactive session."""

    def __init__(
        self,
        engine: TextEngine,
        settings: GenerationConfig,
        chat: bool,
        system: str | None = None,
        seed: int | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.chat = chat
        self.system = system
        self.out = out or sys.stdout
        self.history: list[tuple[str, str]] = []
        # Each answer draws its own seed from the session's generator, so /seed N replays them.
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        self.generator.manual_seed(seed) if seed is not None else self.generator.seed()

    def next_seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def describe(self) -> str:
        s = self.settings
        return (f"temp={s.temperature}, top_k={s.top_k or 'off'}, top_p={s.top_p or 'off'}, "
                f"len={self.settings.max_new_tokens}")

    def run(self) -> None:
        _enable_line_editing()
        mode = f"chat ({self.engine.chat_format.name})" if self.chat else "text continuation"
        self.say(f"=== Interactive generation: {mode} ===")
        self.say(f"Settings: {self.describe()}. Type /help for commands.")
        while True:
            try:
                line = input("> ")
            except EOFError:
                self.say("")
                return
            except KeyboardInterrupt:
                self.say("")
                continue
            try:
                if not self.handle(line):
                    return
            except KeyboardInterrupt:  # Ctrl-C outside the answer's own stream
                self.say(" [stopped]")

    def handle(self, line: str) -> bool:
        """Act on one input line; False means leave."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith("/"):
                return self.command(line)
            self.answer(line)
        except LanternError as exc:
            self.say(f"error: {exc}")
        return True

    def command(self, line: str) -> bool:
        name, _, value = line.partition(" ")
        value = value.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.say(HELP)
        elif name == "/reset":
            self.history.clear()
            self.say("Conversation cleared")
        elif name in SETTERS:
            label, convert, field, use = SETTERS[name]
            if not value:
                raise LanternError(f"{name} needs a value, e.g. {name} {EXAMPLES[name]}")
            try:
                number = convert(value)
            except ValueError:
                raise LanternError(f"{name}: {value!r} is not a number") from None
            use(self, field, number)
            self.say(f"{label} set to {value}")
        else:
            raise LanternError(f"unknown command {name}; type /help for the list")
        return True

    def set_sampling(self, field: str, value: float | int | None) -> None:
        if field == "top_k" and value == 0:
            value = None
        if field == "top_p" and value == 1:
            value = None
        self.settings = dataclasses.replace(self.settings, **{field: value})

    def set_length(self, field: str, value: int) -> None:
        self.settings = dataclasses.replace(self.settings, max_new_tokens=value)

    def set_seed(self, field: str, value: int) -> None:
        check_seed(value, "/seed")
        self.reseed(value)

    def answer(self, message: str) -> None:
        """Stream one answer; Ctrl-C keeps what was said so far and returns to the prompt."""
        ids = self.prompt_ids(message)
        stop_ids = self.engine.stop_ids(self.chat)
        pieces: list[str] = []

        def show(_row: int, piece: str) -> None:
            pieces.append(piece)
            self.out.write(piece)
            self.out.flush()

        if not self.chat:
            self.out.write(message)
        try:
            config = dataclasses.replace(self.settings, seed=self.next_seed())
            self.engine.complete([message], [ids], config, stop_ids, on_text=show)
            self.say("")
        except KeyboardInterrupt:
            self.say(" [stopped]")
        if self.chat:
            self.history.append((message, "".join(pieces)))

    def prompt_ids(self, message: str) -> list[int]:
        """Encode, dropping the oldest chat turns (then old tokens) to fit the context."""
        context = self.engine.context_length
        ids = self.engine.encode(message)  # the user's own text must be valid
        if self.chat:
            ids = self.engine.encode(self.chat_text(message))
            while len(ids) > context and self.history:
                self.history.pop(0)
                ids = self.engine.encode(self.chat_text(message))
        ids, cut = fit_context(ids, context)
        if cut:
            self.say(f"(note: the prompt is longer than the model's context of {context} "
                     "tokens; only its end is used)")
        return ids

    def chat_text(self, message: str) -> str:
        """The conversation so far and `message`, in the model's chat format."""
        return self.engine.chat_format.render(chat_messages(self.history, message, self.system))


SETTERS = {
    "/temp": ("Temperature", float, "temperature", InteractiveSession.set_sampling),
    "/topk": ("Top-k", int, "top_k", InteractiveSession.set_sampling),
    "/topp": ("Top-p", float, "top_p", InteractiveSession.set_sampling),
    "/len": ("Max length", int, "max_new_tokens", InteractiveSession.set_length),
    "/seed": ("Seed", int, "seed", InteractiveSession.set_seed),
}
EXAMPLES = {"/temp": "0.8", "/topk": "40", "/topp": "0.9", "/len": "200", "/seed": "42"}


def _enable_line_editing() -> None:
    """Arrow keys and history on input(), where the platform has readline."""
    try:
        import readline  # noqa: F401  (importing it is what turns line editing on)
    except ImportError:
        pass
