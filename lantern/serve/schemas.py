"""Request bodies of the OpenAI-compatible endpoints, checked by pydantic.

Types are strict (a string is never read as a number) and unknown fields are refused, so no
setting is ever silently ignored. The sampling fields are `SamplingConfig`'s; those beyond the
OpenAI API: `top_k`, `min_p`, `repetition_penalty` (as llama.cpp and vLLM take them). Others:
`depth` (recursion steps per block of a recursive model), `adaptive` with
`tau_low`/`tau_mid`/`tau_high`, `truncate` (keep the end of a prompt longer than the context
instead of refusing it) and `ignore_eos` (as vLLM and llama.cpp:
generate through end-of-sequence tokens, e.g. for equal-length load tests).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    create_model,
    model_validator,
)

from lantern.errors import LanternError
from lantern.generation.sampling import SamplingConfig, sampler_fields
from lantern.generation.settings import SEED_RANGE, GenerationConfig
from lantern.serve.errors import APIError
from lantern.serve.limits import ServeLimits
from lantern.setting import value_types

if TYPE_CHECKING:
    from lantern.serve.registry import ServedModel

Number = Annotated[float, Field(strict=False, allow_inf_nan=False)]
TokenId = Annotated[StrictInt, Field(ge=0)]
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 1000  # characters in one stop string
StopString = Annotated[StrictStr, Field(min_length=1, max_length=MAX_STOP_LENGTH)]
MAX_TOP_LOGPROBS = 20
DEFAULT_COMPLETION_TOKENS = 16  # the OpenAI completions default
DEPTH_FACTOR = 4  # `depth` may reach this many times the trained recursion depth


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(StrictModel):
    include_usage: StrictBool = False


def sampling_fields() -> dict[str, Any]:
    """A request field for every sampling setting, with its default, bounds and help read
    from its `SamplingConfig` field: a sampler added there is a request field here too."""
    fields, kinds = {}, value_types(SamplingConfig)
    for f in sampler_fields():
        kind = StrictInt if kinds[f.name] is int else Number
        bounds = {k: f.metadata[k] for k in ("ge", "gt", "le") if f.metadata[k] is not None}
        fields[f.name] = (kind | None if f.default is None else kind,
                          Field(f.default, description=f.metadata["help"], **bounds))
    return fields


SamplingFields = create_model("SamplingFields", __base__=StrictModel, **sampling_fields())


class GenerationFields(SamplingFields):
    """What decides the generated text, shared by completions and chat completions."""

    model: StrictStr | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None = None
    n: StrictInt = Field(1, ge=1)
    seed: StrictInt | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    depth: StrictInt | None = Field(None, ge=1)
    adaptive: StrictBool = False
    tau_low: Number | None = None
    tau_mid: Number | None = None
    tau_high: Number | None = None
    truncate: StrictBool = False
    ignore_eos: StrictBool = False

    @model_validator(mode="after")
    def _check(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed with stream: true")
        taus = (self.tau_low, self.tau_mid, self.tau_high)
        if not self.adaptive and any(t is not None for t in taus):
            raise ValueError("tau_low/tau_mid/tau_high: only used with adaptive: true")
        return self

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    @abstractmethod
    def prompt_count(self) -> int:
        """How many prompts the request sends (each one makes `n` sequences)."""

    @abstractmethod
    def token_budget(self, limits: ServeLimits) -> int:
        """Tokens to generate per sequence: the request's own, or its endpoint's default."""

    def generation_config(self, served: ServedModel, limits: ServeLimits) -> GenerationConfig:
        """The settings every sequence of this request decodes with (as vLLM's
        `to_sampling_params`), for both endpoints; what this server or model cannot do is
        refused here (400), each check naming its field."""
        max_tokens = self.token_budget(limits)
        if max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens: at most {limits.max_tokens} on this server (got "
                           f"{max_tokens})", param="max_tokens")
        if self.prompt_count * self.n > limits.max_n:
            raise APIError(400, f"n: at most {limits.max_n} sequences per request on this server "
                           f"(got {self.prompt_count} prompt(s) x n={self.n})", param="n")
        deepest = served.max_depth * DEPTH_FACTOR
        if self.depth is not None and self.depth > deepest:
            raise APIError(400, f"depth: at most {deepest} steps per block for this model "
                           f"(trained with {served.max_depth}; got {self.depth})", param="depth")
        if max_tokens == 0 and self.adaptive:
            raise APIError(400, "max_tokens: 0 only scores the prompt; adaptive: true needs tokens "
                           "to generate", param="max_tokens")
        try:
            return GenerationConfig(  # a prompt-only row (max_tokens 0) never reaches its policy
                max_new_tokens=max(1, max_tokens),
                **{f.name: getattr(self, f.name) for f in sampler_fields()},
                stop_strings=self.stop_strings, seed=self.seed,
                # the model's own depth shares the main batch
                steps_per_block=None if self.depth == served.max_depth else self.depth)
        except LanternError as exc:  # the fields check ranges first; this is the last word
            raise APIError(400, str(exc).replace("--", "")) from None


class CompletionRequest(GenerationFields):
    """`echo` with `logprobs` scores the prompt too (as evaluation harnesses ask);
    `max_tokens: 0` with `echo` only scores it."""

    prompt: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]
    max_tokens: StrictInt | None = Field(None, ge=0)
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: StrictBool = False

    @model_validator(mode="after")
    def _check_prompt(self):
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt: give at least one prompt")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 generates nothing; it is only allowed with echo: true")
        return self

    @property
    def prompt_count(self) -> int:
        return len(self.prompts())

    def token_budget(self, limits: ServeLimits) -> int:
        return DEFAULT_COMPLETION_TOKENS if self.max_tokens is None else self.max_tokens

    def prompts(self) -> list[str | list[int]]:
        """Each prompt as text or as token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [list(prompt)]
        return list(prompt)


class TextPart(StrictModel):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @model_validator(mode="after")
    def _check_chat(self):
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("max_tokens: give max_tokens or max_completion_tokens, not both")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: only allowed with logprobs: true")
        return self

    @property
    def prompt_count(self) -> int:
        return 1

    def token_budget(self, limits: ServeLimits) -> int:
        return self.max_completion_tokens or self.max_tokens or limits.max_tokens


class TokenizeRequest(StrictModel):
    model: StrictStr | None = None
    content: StrictStr
    with_pieces: StrictBool = False


class DetokenizeRequest(StrictModel):
    model: StrictStr | None = None
    tokens: list[TokenId]
