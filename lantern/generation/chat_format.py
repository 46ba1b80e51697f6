"""How a model's conversations become its prompt text, and which tokens end its answer.

A model that came with a chat template of its own (Jinja, from a GGUF's `tokenizer.chat_template`
or an imported tokenizer) is rendered by transformers' own template machinery, as
`apply_chat_template(messages, add_generation_prompt=True)` renders it, with the same special
tokens in scope; its answer ends at its end-of-turn or end-of-sequence token. A model without
one (LANTERN trained it) uses LANTERN's `<system>/<user>/<assistant>` layout and its stop tags.
`lantern chat`, `lantern generate --interactive` and the server's chat endpoint all go through
here, so a model is talked to the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from lantern import chat_template
from lantern.errors import LanternError
from lantern.tokenizers import Tokenizer


def has_own_template(template: str | None) -> bool:
    """Whether `template` is the model's own, not LANTERN's layout (which LANTERN's exports write
    as Jinja, and which keeps LANTERN's stop tags)."""
    return template is not None and template != chat_template.JINJA_TEMPLATE


@dataclass(frozen=True)
class ChatFormat:
    """`template` None: LANTERN's layout. `template_tokens`: bos_token, eos_token, pad_token as
    the template sees them (transformers passes a tokenizer's special tokens the same way)."""

    stop_ids: frozenset[int]
    template: str | None = None
    template_tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def name(self) -> str:
        return ("the model's own template" if self.template is not None
                else "<system>/<user>/<assistant> template")

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The conversation as prompt text, open for the assistant's answer."""
        if self.template is None:
            return chat_template.render(messages)
        for message in messages:
            if not isinstance(message.get("content"), str):
                raise LanternError("every chat message needs text content")
        import jinja2
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            rendered, _ = render_jinja_template(
                [[dict(m) for m in messages]], chat_template=self.template,
                add_generation_prompt=True, **self.template_tokens)
        except jinja2.TemplateError as exc:  # raise_exception() in a template lands here too
            raise LanternError(f"the model's chat template refused the messages: {exc}") from None
        return rendered[0]


def chat_format(tokenizer: Tokenizer, layout_stop_ids: set[int]) -> ChatFormat:
    """The format `tokenizer` states (its chat template and roles); `layout_stop_ids` end an
    answer in LANTERN's layout when it has no template of its own."""
    if not has_own_template(tokenizer.chat_template):
        return ChatFormat(frozenset(layout_stop_ids))
    named = {"bos_token": tokenizer.bos_id, "eos_token": tokenizer.eos_id, "pad_token": tokenizer.pad_id}
    tokens = {name: tokenizer.decode([i]) for name, i in named.items() if i is not None}
    return own_format(tokenizer.chat_template, tokens, (tokenizer.eos_id, tokenizer.end_of_turn_id))


def own_format(template: str, special_tokens: Mapping[str, str],
               end_ids: Sequence[int | None]) -> ChatFormat:
    """A model's own template; its answer ends at any of `end_ids` (end-of-sequence, end-of-turn)."""
    return ChatFormat(frozenset(set(end_ids) - {None}), template, MappingProxyType(dict(special_tokens)))
