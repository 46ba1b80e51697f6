"""LANTERN's chat layout, owned here alone: `<system>…</system><user>…</user><assistant>…</assistant>`.

Training text (`data synth`, `data prepare`), the chat front (`lantern chat`), the server and
the exporters all render conversations through this module, so a model sees one layout in
training and at inference. `JINJA_TEMPLATE` is the same layout for `apply_chat_template`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lantern.errors import LanternError

SYSTEM, END_SYSTEM = "<system>", "</system>"
USER, END_USER = "<user>", "</user>"
ASSISTANT, END_ASSISTANT = "<assistant>", "</assistant>"
CHAT_TAGS = (SYSTEM, END_SYSTEM, USER, END_USER, ASSISTANT, END_ASSISTANT)
ROLES = ("system", "user", "assistant")
TAGS = {"system": (SYSTEM, END_SYSTEM), "user": (USER, END_USER),
        "assistant": (ASSISTANT, END_ASSISTANT)}

# Jinja form of `render` (transformers' apply_chat_template; llama.cpp's chat template key).
JINJA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<system>{{ message['content'] }}</system>"
    "{% elif message['role'] == 'user' %}<user>{{ message['content'] }}</user>"
    "{% elif message['role'] == 'assistant' %}<assistant>{{ message['content'] }}</assistant>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def turn(role: str, content: str) -> str:
    """One message in its tags."""
    if role not in TAGS:
        raise LanternError(f"unknown chat role {role!r}; roles are {', '.join(ROLES)}")
    start, end = TAGS[role]
    return f"{start}{content}{end}"


def render(messages: Iterable[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """A conversation as text; with `add_generation_prompt`, open for the assistant's answer.

    Each finished assistant turn ends with a newline, as in chat training text.
    """
    text = ""
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            raise LanternError("every chat message needs text content")
        text += turn(str(role), content) + ("\n" if role == "assistant" else "")
    return text + (ASSISTANT if add_generation_prompt else "")


def example(user: str, assistant: str, system: str | None = None) -> str:
    """One training example: an optional system line, a user turn and the answer."""
    head = turn("system", system) if system else ""
    return head + turn("user", user) + turn("assistant", assistant)
