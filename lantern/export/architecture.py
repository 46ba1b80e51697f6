"""Which standard architecture computes exactly what a LANTERN config computes, or why none does.

Recursion is unrolled: block b applied k times becomes k consecutive layers holding the same
weights, so a model exported at depth k is an ordinary `num_blocks * k` layer transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

from lantern.config import LANTERNConfig
from lantern.errors import LanternError

LLAMA_FAMILY = "position rope + norm rmsnorm + mlp swiglu (Llama, or Mistral with a window)"
GPT2_FAMILY = "position learned|sinusoidal + norm layernorm + mlp gelu (GPT-2)"

# LANTERN's MLP uses the tanh form of GELU (torch's approximate="tanh"); this is its exact name
# in transformers (GPT-2's own default `gelu_new` is the same formula written by hand), and
# llama.cpp's gpt2 graph uses the same tanh GELU.
GELU_ACTIVATION = "gelu_pytorch_tanh"


@dataclass(frozen=True)
class ExportPlan:
    """`arch` is "llama", "mistral" or "gpt2"; `layers[i]` is the LANTERN block of layer i."""

    arch: str
    layers: tuple[int, ...]
    depth: int

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def effective_window(config: LANTERNConfig) -> int | None:
    """The attention window, or None when it never limits anything inside the context."""
    window = config.attention_window
    return None if window is None or window >= config.context_length else window


def plan_export(config: LANTERNConfig, depth: int | None = None, target: str = "hf") -> ExportPlan:
    """The standard architecture for `config` at recursion depth `depth`; refuse what has none.

    `target` is "hf" or "gguf" (llama.cpp's `llama` architecture has no sliding window).
    """
    depth = config.steps_per_block if depth is None else depth
    if depth <= 0:
        raise LanternError(f"--depth must be positive (got {depth})")
    if config.reinject_input:
        raise LanternError(
            "input re-injection (reinject_input) has no standard equivalent; models trained "
            "with reinject_input false export"
        )
    window = effective_window(config)
    if window is not None and config.attention_sink:
        raise LanternError(
            f"attention sinks (attention_sink {config.attention_sink}) have no standard "
            "equivalent; a sliding window with attention_sink 0, or no window, exports"
        )
    kinds = (config.position, config.norm, config.mlp)
    if kinds == ("rope", "rmsnorm", "swiglu"):
        arch = "llama" if window is None else "mistral"
        if arch == "mistral" and config.bias:
            raise LanternError(
                f"bias terms with a sliding window (attention_window {window}) have no standard "
                "equivalent (Mistral has no biases); bias false, or no window, exports"
            )
    elif config.position in ("learned", "sinusoidal") and kinds[1:] == ("layernorm", "gelu"):
        arch = "gpt2"
        if window is not None:
            raise LanternError(
                f"a sliding window (attention_window {window}) with {config.position} positions "
                f"has no standard equivalent; {LLAMA_FAMILY} with a window exports as Mistral"
            )
    else:
        raise LanternError(
            f"position {config.position} + norm {config.norm} + mlp {config.mlp} has no standard "
            f"equivalent; these export: {LLAMA_FAMILY}; {GPT2_FAMILY}"
        )
    if target == "gguf" and arch == "mistral":
        raise LanternError(
            f"a sliding window (attention_window {window}) cannot run in llama.cpp's llama "
            "architecture; export it with --format hf (Mistral), or train with no window"
        )
    layers = tuple(block for block in range(config.num_blocks) for _ in range(depth))
    return ExportPlan(arch, layers, depth)
