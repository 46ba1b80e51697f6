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

from lantern.errors import LanternError
from lantern.fileio import atomic_write_text
from lantern.setting import setting
from lantern.training.depth import DepthSchedule

CONFIG_FILE = "train_config.json"


# Old and short spellings of training flags; each still sets its field.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "config": ("--preset",), "hidden_size": ("--d_model",), "num_heads": ("--n_heads",),
    "num_blocks": ("--n_layers",), "mlp_hidden_size": ("--d_ff",),
    "data_path": ("--train_data", "--data"), "val_data_path": ("--val_data",),
    "seq_length": ("--seq_len",), "learning_rate": ("--lr",), "output_dir": ("--save_dir",),
}
PRESET = "preset"  # what a None model-shape setting stands for

# Presets that come with a training recipe: these settings apply unless given.
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "fast": dict(learning_rate=3e-3, lr_schedule="wsd", decay_fraction=0.3, warmup_steps=50,
                 max_steps=650, batch_size=12, eval_interval=50, eval_batches=20),
}


@dataclass
class ModelSection:
    """The model builder's settings: a preset and any shape overrides (None = the preset's)."""

    config: str = setting("small", "model preset (listed below)")
    hidden_size: int | None = setting(None, "width", unset=PRESET)
    num_heads: int | None = setting(None, "attention heads", unset=PRESET)
    num_kv_heads: int | None = setting(None, "key/value heads, < num_heads = GQA", unset=PRESET)
    num_blocks: int | None = setting(None, "unique transformer blocks", unset=PRESET)
    steps_per_block: int | None = setting(
        None, "times each block is applied with shared weights", unset=PRESET)
    mlp_hidden_size: int | None = setting(None, "MLP hidden width",
                                          unset="preset, else 4 x width")
    mlp: str | None = setting(None, "MLP type", unset=PRESET, choices=("gelu", "swiglu"))
    norm: str | None = setting(None, "norm type", unset=PRESET, choices=("layernorm", "rmsnorm"))
    position: str | None = setting(None, "position encoding", unset=PRESET,
                                   choices=("learned", "sinusoidal", "rope"))
    dropout: float | None = setting(None, "dropout rate", unset="preset: 0")
    attention_window: int | None = setting(None, "sliding-window size", unset="full attention")
    attention_sink: int | None = setting(
        None, "first positions every query sees beyond its window", unset="0")
    reinject_input: bool | None = setting(None, "re-inject each block's input at every recurrence",
                                          unset="off")
    prelude_blocks: int | None = setting(
        None, "first blocks that run once whatever the depth (a prelude before the recurrent "
        "blocks)", unset=PRESET)
    coda_blocks: int | None = setting(
        None, "last blocks that run once whatever the depth (a coda that reads the recurrent "
        "state out)", unset=PRESET)
    qkv_bias: bool | None = setting(
        None, "bias on the query/key/value projections (Qwen2-style)", unset="off")
    init_from: str | None = setting(
        None, "start from a pretrained model, with its weights and tokenizer: a GGUF file, a "
        "known name (lantern pull --list), a transformers directory or a LANTERN run / .pt "
        "checkpoint", unset="random initial weights")


@dataclass
class DataSection:
    """Corpus, tokenizer and window length."""

    data_path: str | None = setting(None, "training text (.txt) or token ids (.jsonl)",
                                    unset="built-in story corpus")
    val_data_path: str | None = setting(None, "validation file",
                                        unset="the last --val_fraction of the training data")
    val_fraction: float = setting(0.1, "held-out share")
    corpus_chars: int = setting(2_000_000, "size of the built-in corpus in characters")
    tokenizer: str = setting("char", "char, bpe, tiktoken, or a tokenizer.json file")
    encoding: str = setting("gpt2", "tiktoken encoding name or .tiktoken file")
    vocab_size: int | None = setting(None, "BPE vocabulary size; a char vocabulary comes from "
                                     "the text", unset="4096")
    seq_length: int | None = setting(
        None, "training window = model context; with --init_from the window only, up to the "
        "model's context", unset="preset's context; the model's")


@dataclass
class OptimizerSection:
    learning_rate: float = setting(1e-3, "peak learning rate")
    weight_decay: float = setting(0.1, "AdamW decay of linear-layer matrices")
    beta1: float = setting(0.9, "AdamW beta1")
    beta2: float = setting(0.99, "AdamW beta2")
    grad_clip: float = setting(1.0, "gradient-norm clip, 0 = off")


@dataclass
class ScheduleSection:
    """Linear warmup, then cosine decay to min_lr (None = learning_rate / 10), or warmup-stable-
    decay: the peak rate held, then a linear fall to min_lr over the last `decay_fraction` of the
    steps (a run can be stopped well at any length chosen in advance, and lands lower)."""

    warmup_steps: int = setting(50, "linear warmup steps")
    min_lr: float | None = setting(None, "final learning rate", unset="learning_rate / 10")
    lr_schedule: str = setting("cosine", "shape after warmup: cosine, or wsd (hold, then a "
                               "linear decay)", choices=("cosine", "wsd"))
    decay_fraction: float = setting(0.2, "wsd: the share of the steps spent decaying")


@dataclass
class LoopSection:
    """How many steps, of how many sequences, drawn how; what to do with a non-finite loss."""

    batch_size: int = setting(16, "sequences per micro-batch, in all (under torchrun each "
                              "process takes an equal share)")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    max_steps: int = setting(400, "optimizer steps")
    epochs: float | None = setting(None, "passes over the training tokens (sets max_steps)",
                                   unset="--max_steps")
    seed: int = setting(1337, "random seed")
    depth_schedule: str | None = setting(
        None, "recursion depth per training step: fixed:K, random:A-B or poisson:M",
        unset="the model's steps_per_block")
    backprop_steps: int | None = setting(
        None, "backpropagate through each block's last K applications only (truncated "
        "backpropagation through depth)", unset="all")
    pause_tokens: int = setting(0, "THINK tokens inserted at random per training window")
    pause_after: str | None = setting(
        None, "put the --pause_tokens THINK tokens after every occurrence of this token (e.g. "
        "'=' before an answer) instead of at random", unset="at random")
    skip_nonfinite: int = setting(
        0, "batches with a NaN/inf loss to skip before stopping; 0 = stop at the first")


@dataclass
class PrecisionSection:
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    dtype: str = setting("auto", "autocast dtype: auto (bfloat16 on GPUs that have it, else "
                         "float32), float32, bfloat16, float16 (with a gradient scaler)")


@dataclass
class EMASection:
    """Exponential moving average of the weights (0 = off); `eval_ema` evaluates and saves it."""

    ema_decay: float = setting(
        0.0, "keep an exponential moving average of the weights, e.g. 0.999; 0 = off")
    eval_ema: bool = setting(False, "evaluate, sample and save best/final/exported weights from "
                             "the EMA")


@dataclass
class CheckpointSection:
    output_dir: str = setting("outputs", "checkpoints and logs")
    save_interval: int = setting(200, "steps between checkpoints")
    resume_from: str | None = setting(
        None, "checkpoint_step_N.pt or a run directory to continue", unset="a new run")
    overwrite: bool = setting(False, "replace a run already in --output_dir")


@dataclass
class MetricsSection:
    log_interval: int = setting(25, "steps between log lines")


@dataclass
class EvalSection:
    eval_interval: int = setting(100, "steps between evals")
    eval_batches: int = setting(20, "batches per eval")
    sample_length: int = setting(200, "tokens per sample")
    num_samples: int = setting(3, "samples printed at the end")


@dataclass
class LoraSection:
    """Low-rank adapters on a pretrained model (rank 0 = off: every weight trains). None = the
    default: alpha 2 x rank, dropout 0, targets every linear layer of the blocks."""

    lora_rank: int = setting(0, "adapter rank (with --init_from: train low-rank adapters, not "
                             "the weights); the run's weights files and exports hold the adapters "
                             "merged in; 0 = every weight trains")
    lora_alpha: float | None = setting(None, "adapter scale alpha (update x alpha/rank)",
                                       unset="2 x rank")
    lora_dropout: float | None = setting(None, "dropout on the adapters' input", unset="0")
    lora_targets: str | None = setting(
        None, "linear layers to adapt, comma-separated among qkv, proj, up, down",
        unset="all four")


@dataclass
class DistributedSection:
    """Under torchrun: DistributedDataParallel, or FSDP2 sharding with `fsdp`."""

    fsdp: bool = setting(False, "shard weights, gradients and optimizer state with FSDP2, and "
                         "also write torch.distributed.checkpoint sharded saves, which a resume "
                         "under --fsdp reads (off: DistributedDataParallel; --no-fsdp resumes "
                         "an FSDP run without it)", negatable=True)


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
        preset = values["model"].get("config", ModelSection.config)
        for key, value in PRESET_TRAINING.get(preset, {}).items():
            values[FLAG_SECTION[key]].setdefault(key, value)
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
        schedule = self.schedule
        if schedule.lr_schedule not in ("cosine", "wsd"):
            raise LanternError(f"--lr_schedule must be cosine or wsd (got {schedule.lr_schedule!r})")
        if not 0.0 < schedule.decay_fraction <= 1.0:
            raise LanternError(f"--decay_fraction must be in (0, 1] (got {schedule.decay_fraction})")
        if schedule.lr_schedule == "cosine" and schedule.decay_fraction != ScheduleSection.decay_fraction:
            raise LanternError("--decay_fraction shapes the wsd schedule; add --lr_schedule wsd")
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
    import yaml  # here, not at the top: only --config_file needs it, and every start would pay

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
