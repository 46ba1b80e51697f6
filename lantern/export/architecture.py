"""Which standard architecture computes exactly what a LANTERN config computes, or why none does.

Recursion is unrolled: block b applied k times becomes k consecutive layers holding the same
weights, so a model exported at depth k is an ordinary transformer of `config.num_layers(k)` layers.
What no standard architecture has (input re-injection, attention sinks) is refused here; the
architectures themselves are found in the `arches` registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from lantern.config import LANTERNConfig
from lantern.errors import LanternError
from lantern.export.arches import ExportArch, arch_for_config, effective_window


@dataclass(frozen=True)
class ExportPlan:
    """`arch` computes the model; `layers[i]` is the LANTERN block of layer i."""

    arch: ExportArch
    layers: tuple[int, ...]
    depth: int

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def plan_export(config: LANTERNConfig, depth: int | None = None, target: str = "hf") -> ExportPlan:
    """The standard architecture for `config` at recursion depth `depth`; refuse what has none.

    `target` is "hf" or "gguf" (not every architecture has a llama.cpp graph).
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
    arch = arch_for_config(config)
    reason = arch.gguf_refusal(config) if target == "gguf" else None
    if reason:
        raise LanternError(reason)
    layers = tuple(block for block in range(config.num_blocks)
                   for _ in range(config.block_steps(block, depth)))
    return ExportPlan(arch, layers, depth)
