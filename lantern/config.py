"""The model configuration and the table of named presets.

One dataclass describes every model LANTERN builds; a checkpoint stores it as plain JSON so a
model can always be rebuilt without repeating its shape on the command line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from lantern.errors import LanternError

MLP_TYPES = ("gelu", "swiglu")
NORM_TYPES = ("layernorm", "rmsnorm")
POSITION_TYPES = ("learned", "sinusoidal", "rope")


@dataclass
class LANTERNConfig:
    """Shape of a decoder-only transformer with optionally weight-shared (recursive) blocks.

    `num_blocks` unique blocks are each applied `steps_per_block` times in a row with the same
    weights, so depth can grow without adding parameters (1 step = an ordinary transformer).
    The first `prelude_blocks` and last `coda_blocks` of them run once whatever the depth
    (Geiping et al. 2025): the recurrent blocks between refine a state that neither has to be
    read from the embeddings nor be read out as logits at every depth.
    """

    vocab_size: int = 256
    context_length: int = 256
    hidden_size: int = 256
    num_heads: int = 4
    num_kv_heads: int | None = None  # None = num_heads (multi-head); fewer = grouped-query
    num_blocks: int = 1
    steps_per_block: int = 1
    mlp_hidden_size: int | None = None  # None = 4 * hidden_size
    mlp: str = "gelu"
    norm: str = "layernorm"
    position: str = "learned"
    rope_theta: float = 10000.0
    norm_eps: float | None = None  # None = 1e-6 for RMSNorm, 1e-5 for LayerNorm (what older runs used)
    dropout: float = 0.0
    bias: bool = True
    qkv_bias: bool = False  # a bias on the query/key/value projection even without `bias` (Qwen2)
    tie_embeddings: bool = True
    attention_window: int | None = None  # None = full causal attention
    attention_sink: int = 0  # first positions every query may see, beyond its window
    reinject_input: bool = False  # add a gated copy of a block's input before each re-application
    prelude_blocks: int = 0  # first blocks, run once per call
    coda_blocks: int = 0  # last blocks, run once per call
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self.validate()

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def ffn_size(self) -> int:
        return self.mlp_hidden_size or 4 * self.hidden_size

    def recurrent(self, block: int) -> bool:
        return self.prelude_blocks <= block < self.num_blocks - self.coda_blocks

    def block_steps(self, block: int, steps: int) -> int:
        """Applications of `block` in a call at `steps` steps per recurrent block."""
        return steps if self.recurrent(block) else 1

    def first_layer(self, block: int, steps: int) -> int:
        """Index of `block`'s first application among a call's unrolled layers."""
        return sum(self.block_steps(b, steps) for b in range(block))

    def num_layers(self, steps: int | None = None) -> int:
        """Block applications (unrolled layers) of a call at `steps` [steps_per_block]."""
        return self.first_layer(self.num_blocks, steps or self.steps_per_block)

    def validate(self) -> None:
        """Reject shapes that cannot be built, with a message a user can act on."""
        checks = [
            (self.vocab_size > 0, f"vocab_size must be positive (got {self.vocab_size})"),
            (self.context_length > 0, f"context_length must be positive (got {self.context_length})"),
            (self.hidden_size > 0, f"hidden_size must be positive (got {self.hidden_size})"),
            (self.num_heads > 0, f"num_heads must be positive (got {self.num_heads})"),
            (
                self.hidden_size % max(self.num_heads, 1) == 0,
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}",
            ),
            (
                self.num_heads % max(self.kv_heads, 1) == 0,
                f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.kv_heads}",
            ),
            (self.num_blocks > 0, f"num_blocks must be positive (got {self.num_blocks})"),
            (self.steps_per_block > 0, f"steps_per_block must be positive (got {self.steps_per_block})"),
            (
                self.prelude_blocks >= 0 and self.coda_blocks >= 0
                and self.prelude_blocks + self.coda_blocks < self.num_blocks,
                f"prelude_blocks {self.prelude_blocks} + coda_blocks {self.coda_blocks} must leave "
                f"at least one of the {self.num_blocks} blocks to recur",
            ),
            (self.mlp in MLP_TYPES, f"mlp must be one of {MLP_TYPES} (got {self.mlp!r})"),
            (self.norm in NORM_TYPES, f"norm must be one of {NORM_TYPES} (got {self.norm!r})"),
            (
                self.position in POSITION_TYPES,
                f"position must be one of {POSITION_TYPES} (got {self.position!r})",
            ),
            (
                self.norm_eps is None or self.norm_eps > 0,
                f"norm_eps must be positive (got {self.norm_eps})",
            ),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1) (got {self.dropout})"),
            (
                self.position != "rope" or self.head_dim % 2 == 0,
                "rope positions need an even head size (hidden_size / num_heads)",
            ),
            (
                self.attention_window is None or self.attention_window > 0,
                f"attention_window must be positive (got {self.attention_window})",
            ),
            (self.attention_sink >= 0, f"attention_sink must be >= 0 (got {self.attention_sink})"),
        ]
        for ok, message in checks:
            if not ok:
                raise LanternError(f"invalid model config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LANTERNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LanternError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Named shapes. `small`/`base` are LANTERN's recursive presets; the GPT-style sizes
# of the FluxParser and NumPy guides are named by width (`gpt-64` ... `gpt-512`), and the LAi
# guide's sizes carry its name (`lai-tiny`, `lai-mini`, `lai-small`). `nano` is nanoGPT's small
# character-level CPU configuration. `vocab_size` always comes from the tokenizer.
PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(hidden_size=256, num_heads=4, num_blocks=1, steps_per_block=4,
                  context_length=256, position="rope", norm="rmsnorm", mlp="swiglu",
                  mlp_hidden_size=704, bias=False),
    "base": dict(hidden_size=512, num_heads=8, num_blocks=2, steps_per_block=4,
                 context_length=1024, position="rope", norm="rmsnorm", mlp="swiglu",
                 mlp_hidden_size=1408, bias=False),
    "nano": dict(hidden_size=128, num_heads=4, num_blocks=4, context_length=64),
    "fast": dict(hidden_size=128, num_heads=4, num_blocks=4, context_length=64,
                 position="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden_size=352, bias=False),
    "gpt-64": dict(hidden_size=64, num_heads=2, mlp_hidden_size=256, num_blocks=2,
                   context_length=128),
    "gpt-128": dict(hidden_size=128, num_heads=4, mlp_hidden_size=512, num_blocks=2,
                    context_length=128),
    "gpt-256": dict(hidden_size=256, num_heads=8, mlp_hidden_size=1024, num_blocks=4,
                    context_length=256),
    "gpt-512": dict(hidden_size=512, num_heads=16, mlp_hidden_size=2048, num_blocks=6,
                    context_length=256),
    "lai-tiny": dict(hidden_size=384, num_heads=6, num_blocks=8, context_length=512,
                     position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    "lai-mini": dict(hidden_size=512, num_heads=8, num_blocks=12, context_length=1024,
                     position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    "lai-small": dict(hidden_size=768, num_heads=12, num_blocks=16, context_length=2048,
                      position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "small": "LANTERN small: 1 block x 4 recursive steps, width 256, 4 heads",
    "base": "LANTERN base: 2 blocks x 4 recursive steps, width 512, 8 heads",
    "nano": "nanoGPT character CPU size: 4 layers, width 128, 4 heads, context 64",
    "fast": "nano's size with RoPE, RMSNorm and SwiGLU, trained by its own recipe (learning "
            "rate 3e-3, warmup-stable-decay, 650 steps of 12, evaluated every 50): good "
            "soonest on a CPU",
    "gpt-64": "GPT tiny: 2 layers, width 64, 2 heads, ff 256",
    "gpt-128": "GPT small: 2 layers, width 128, 4 heads, ff 512",
    "gpt-256": "GPT medium: 4 layers, width 256, 8 heads, ff 1024",
    "gpt-512": "GPT large: 6 layers, width 512, 16 heads, ff 2048",
    "lai-tiny": "LAi tiny: 8 layers, width 384, 6 heads, context 512",
    "lai-mini": "LAi mini: 12 layers, width 512, 8 heads, context 1024",
    "lai-small": "LAi small: 16 layers, width 768, 12 heads, context 2048",
}


def preset_config(name: str, **overrides: Any) -> LANTERNConfig:
    """Build the config of a named preset, with any field overridden."""
    if name not in PRESETS:
        raise LanternError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return LANTERNConfig(**values)
