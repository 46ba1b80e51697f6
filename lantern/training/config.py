"""Training settings in small sections, one per component, each read by that component alone.

Every command-line flag is a field of exactly one section, so flat names (`--max_steps`,
`TrainConfig(max_steps=...)`, an old checkpoint's flat `train_config`) route to their section
unambiguously. A run writes its resolved settings to `train_config.json`; `--config_file` reads
that file (or a YAML one, nested or flat) back.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.training.depth import DepthSchedule

CONFIG_FILE = "train_config.json"


@dataclass
class ModelSection:
    """The model builder's settings: a preset and any shape overrides (None = the preset's)."""

    config: str = "small"
    hidden_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    num_blocks: int | None = None
    steps_per_block: int | None = None
    mlp_hidden_size: int | None = None
    mlp: str | None = None
    norm: str | None = None
    position: str | None = None
    dropout: float | None = None
    attention_window: int | None = None
    attention_sink: int | None = None
    reinject_input: bool | None = None
    prelude_blocks: int | None = None
    coda_blocks: int | None = None
    qkv_bias: bool | None = None
    init_from: str | None = None


@dataclass
class DataSection:
    """Corpus, tokenizer and window length."""

    data_path: str | None = None
    val_data_path: str | None = None
    val_fraction: float = 0.1
    corpus_chars: int = 2_000_000
    tokenizer: str = "char"
    encoding: str = "gpt2"
    vocab_size: int | None = None
    seq_length: int | None = None


@dataclass
class OptimizerSection:
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0


@dataclass
class ScheduleSection:
    """Linear warmup then cosine decay to min_lr (None = learning_rate / 10)."""

    warmup_steps: int = 50
    min_lr: float | None = None


@dataclass
class LoopSection:
    """How many steps, of how many sequences, drawn how; what to do with a non-finite loss."""

    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 400
    epochs: float | None = None
    seed: int = 1337
    depth_schedule: str | None = None
    backprop_steps: int | None = None
    pause_tokens: int = 0
    pause_after: str | None = None
    skip_nonfinite: int = 0


@dataclass
class PrecisionSection:
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class EMASection:
    """Exponential moving average of the weights (0 = off); `eval_ema` evaluates and saves it."""

    ema_decay: float = 0.0
    eval_ema: bool = False


@dataclass
class CheckpointSection:
    output_dir: str = "outputs"
    save_interval: int = 200
    resume_from: str | None = None
    overwrite: bool = False


@dataclass
class MetricsSection:
    log_interval: int = 25


@dataclass
class EvalSection:
    eval_interval: int = 100
    eval_batches: int = 20
    sample_length: int = 200
    num_samples: int = 3


@dataclass
class LoraSection:
    """Low-rank adapters on a pretrained model (rank 0 = off: every weight trains). None = the
    default: alpha 2 x rank, dropout 0, targets every linear layer of the blocks."""

    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    lora_targets: str | None = None


@dataclass
class DistributedSection:
    """Under torchrun: DistributedDataParallel, or FSDP2 sharding with `fsdp`."""

    fsdp: bool = False


SECTIONS: dict[str, type] = {
    "model": ModelSection, "data": DataSection, "optimizer": OptimizerSection,
    "schedule": ScheduleSection, "loop": LoopSection, "precision": PrecisionSection,
    "ema": EMASection, "checkpoint": CheckpointSection, "metrics": MetricsSection,
    "eval": EvalSection, "lora": LoraSection, "distributed": DistributedSection,
}
FLAG_SECTION: dict[str, str] = {
    f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
}
MODEL_SHAPE_FLAGS = tuple(f.name for f in dataclasses.fields(ModelSection) if f.name != "init_from")


@dataclass(init=False)
class TrainConfig:
    """All sections of a run. Built from sections, nested dicts or flat flag names alike:
    `TrainConfig(max_steps=10)` and `TrainConfig(loop={"max_steps": 10})` are the same run.
    Flat names also read through: `cfg.max_steps is cfg.loop.max_steps`."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loop: LoopSection = field(default_factory=LoopSection)
    precision: PrecisionSection = field(default_factory=PrecisionSection)
    ema: EMASection = field(default_factory=EMASection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    eval: EvalSection = field(default_factory=EvalSection)
    lora: LoraSection = field(default_factory=LoraSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)

    def __init__(self, **settings: Any) -> None:
        values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in settings.items():
            if key in SECTIONS:
                given = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
                if not isinstance(given, dict):
                    raise LanternError(f"config section {key!r} must be a mapping")
                for name, item in given.items():
                    if FLAG_SECTION.get(name) != key:
                        raise LanternError(f"unknown setting {key}.{name}")
                    values[key][name] = item
            elif key in FLAG_SECTION:
                values[FLAG_SECTION[key]][key] = value
            else:
                raise LanternError(f"unknown training setting {key!r}")
        for name, cls in SECTIONS.items():
            object.__setattr__(self, name, cls(**values[name]))
        self.validate()

    def __getattr__(self, name: str) -> Any:
        section = FLAG_SECTION.get(name)
        if section is None:
            raise AttributeError(name)
        return getattr(getattr(self, section), name)

    def validate(self) -> None:
        loop, opt = self.loop, self.optimizer
        positive = {"batch_size": loop.batch_size, "max_steps": loop.max_steps,
                    "grad_accum": loop.grad_accum, "eval_interval": self.eval.eval_interval,
                    "eval_batches": self.eval.eval_batches,
                    "save_interval": self.checkpoint.save_interval,
                    "log_interval": self.metrics.log_interval}
        for name, value in positive.items():
            if value <= 0:
                raise LanternError(f"--{name} must be positive (got {value})")
        sizes = {"corpus_chars": self.data.corpus_chars, "vocab_size": self.data.vocab_size,
                 "epochs": loop.epochs, "backprop_steps": loop.backprop_steps}
        for name, value in sizes.items():
            if value is not None and value <= 0:
                raise LanternError(f"--{name} must be positive (got {value})")
        for name in ("sample_length", "num_samples"):
            if getattr(self.eval, name) < 0:
                raise LanternError(f"--{name} must not be negative (got {getattr(self.eval, name)})")
        if opt.learning_rate <= 0:
            raise LanternError(f"--learning_rate must be positive (got {opt.learning_rate})")
        seq_length = self.data.seq_length
        if seq_length is not None and seq_length < 2:
            raise LanternError(f"--seq_length must be at least 2 (got {seq_length})")
        if self.schedule.warmup_steps < 0 or opt.grad_clip < 0 or opt.weight_decay < 0:
            raise LanternError("--warmup_steps, --grad_clip and --weight_decay must not be negative")
        if loop.depth_schedule is not None:
            DepthSchedule.parse(loop.depth_schedule)
        if loop.pause_tokens < 0 or loop.skip_nonfinite < 0:
            raise LanternError("--pause_tokens and --skip_nonfinite must not be negative")
        if loop.pause_after is not None and not loop.pause_tokens:
            raise LanternError("--pause_after says where --pause_tokens go; give --pause_tokens "
                               "too")
        if not 0.0 < self.data.val_fraction < 1.0:
            raise LanternError(f"--val_fraction must be between 0 and 1 (got {self.data.val_fraction})")
        if not 0.0 <= self.ema.ema_decay < 1.0:
            raise LanternError(f"--ema_decay must be in [0, 1) (got {self.ema.ema_decay})")
        if self.ema.eval_ema and self.ema.ema_decay == 0:
            raise LanternError("--eval_ema needs --ema_decay (an average to evaluate)")
        self.validate_lora()

    def validate_lora(self) -> None:
        """LoRA flags that could not act, or that clash with another part of the run."""
        lora = self.lora
        extras = [f"--{f.name}" for f in dataclasses.fields(lora)
                  if f.name != "lora_rank" and getattr(lora, f.name) is not None]
        if lora.lora_rank < 0:
            raise LanternError(f"--lora_rank must not be negative (got {lora.lora_rank})")
        if not lora.lora_rank:
            if extras:
                raise LanternError(f"{', '.join(extras)} need --lora_rank (adapters to configure)")
            return
        if not self.model.init_from:
            raise LanternError("--lora_rank needs --init_from: adapters fine-tune a pretrained model")
        if lora.lora_alpha is not None and lora.lora_alpha <= 0:
            raise LanternError(f"--lora_alpha must be positive (got {lora.lora_alpha})")
        if lora.lora_dropout is not None and not 0.0 <= lora.lora_dropout < 1.0:
            raise LanternError(f"--lora_dropout must be in [0, 1) (got {lora.lora_dropout})")
        if self.ema.ema_decay:
            raise LanternError("--lora_rank with --ema_decay is not supported: the average would "
                               "cover the adapters only; drop one of them")
        if self.distributed.fsdp:
            raise LanternError("--lora_rank with --fsdp is not supported; drop --fsdp (data-parallel "
                               "processes still work)")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        return {key: value for section in self.to_dict().values() for key, value in section.items()}

    def replace(self, **flat: Any) -> TrainConfig:
        return TrainConfig(**{**self.flat(), **flat})

    def save(self, path: str | Path) -> None:
        """The settings that reproduce this run (how it was launched - resume, overwrite - is
        not part of the run)."""
        settings = self.replace(resume_from=None, overwrite=False).to_dict()
        atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Flat or nested settings from a JSON or YAML file (the flags given with it win). A run
    directory's model `config.json` stands for the `train_config.json` beside it."""
    path = Path(path)
    if not path.is_file():
        raise LanternError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise LanternError(f"cannot parse config file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise LanternError(f"config file {path} must hold a mapping of settings")
    if "vocab_size" in data and "hidden_size" in data and "model" not in data:
        if (path.parent / CONFIG_FILE).is_file():  # a run directory's config.json: its run's settings
            return read_config_file(path.parent / CONFIG_FILE)
        raise LanternError(f"{path} is a model config; training settings are in a run's {CONFIG_FILE}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for name, item in value.items():
                if FLAG_SECTION.get(name) != key:
                    raise LanternError(f"{path}: unknown setting {key}.{name}")
                flat[name] = item
        elif key in FLAG_SECTION:
            flat[key] = value
        else:
            raise LanternError(f"{path}: unknown setting {key!r}")
    return flat
