"""The settings of each LLM-TRM phase, one dataclass per `lantern trm` step.

They sit apart from the phases' code so that the command line reads every flag, default and
help from them without importing the models and training loops behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lantern.config import PRESETS
from lantern.errors import LanternError, require_positive
from lantern.setting import setting

# Old spellings of TRM flags; each still sets its field.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"config": ("--preset",)}
REQUIRED = "required"  # what an empty default stands for: the command refuses to run without it
AUTO = "auto, cpu, cuda or mps"
PRESET = "preset"
SAVE_INTERVAL = "steps between resumable checkpoints"
RESUME_FROM = ("continue the run in this directory (or from one of its checkpoint_step_N.pt "
               "files) exactly where it stopped; its settings are kept, flags given now override "
               "them")
DATAGEN_MODES = ("teacher", "generate")
EVAL_MODES = ("full", "no_think", "oracle", "oracle_compressed", "trm", "trm_digits", "mean",
              "zero", "shuffled", "lm_head_first_token")
NEEDS_TRM = ("trm", "trm_digits", "mean", "shuffled", "lm_head_first_token")
NEEDS_COMPRESSOR = (*NEEDS_TRM, "oracle_compressed")
DEFAULT_WINDOW = 64  # tokens per stage-1a text window, unless the host reads fewer


@dataclass
class HostTrainConfig:
    """`lantern trm host`: a LANTERN host with `<think>` and K latent slots."""

    problems: str = setting("", "problems JSONL (with worked steps)", unset=REQUIRED)
    output_dir: str = setting("trm_host", "run directory to write")
    config: str | None = setting(None, "model preset (listed below)",
                                 unset="gpt-128, or the shape of --init_from")
    batch_size: int = setting(32, "problems per step")
    learning_rate: float = setting(1e-3, "peak learning rate")
    min_lr: float | None = setting(None, "final learning rate", unset="learning_rate / 10")
    weight_decay: float = setting(0.1, "AdamW decay")
    max_steps: int = setting(2000, "optimizer steps")
    warmup_steps: int = setting(100, "warmup steps")
    grad_clip: float = setting(1.0, "gradient-norm clip, 0 = off")
    latent_weight: float = setting(1.0, "weight of the slot sequences' loss")
    slots: int = setting(1, "K latent slots, one per reasoning step (steps are separated by ';' "
                         "in the thinking); 1 = the whole thinking")
    detach_teacher_state: bool = setting(False, "no gradient from the slot loss into the "
                                         "</think> state")
    no_think_fraction: float = setting(0.0, "share of rows also shown without thinking")
    all_slots_fraction: float = setting(0.0, "share of mixed rows with every step in slots; the "
                                        "rest put the first j in 1..K there (0: j uniform)")
    val_fraction: float | None = setting(None, "held-out share of the problems",
                                         unset="0.05, unless --val_problems is given")
    val_problems: str | None = setting(
        None, "held-out problems file for validation instead of a share")
    eval_interval: int = setting(250, "steps between evaluations")
    eval_problems: int = setting(200, "held-out problems per evaluation")
    seed: int = setting(1337, "random seed")
    device: str = setting("auto", AUTO)
    dtype: str = setting("auto", "auto, float32, bfloat16, float16")
    overwrite: bool = setting(False, "replace a trained host")
    init_from: str | None = setting(
        None, "continue from a host trained before (same vocabulary)", unset="fresh")
    hidden_size: int | None = setting(None, "model shape override", unset=PRESET)
    num_heads: int | None = setting(None, "model shape override", unset=PRESET)
    num_blocks: int | None = setting(None, "model shape override", unset=PRESET)
    steps_per_block: int | None = setting(None, "model shape override", unset=PRESET)
    mlp_hidden_size: int | None = setting(None, "model shape override", unset=PRESET)
    mlp: str | None = setting(None, "MLP type", unset=PRESET, choices=("gelu", "swiglu"))
    norm: str | None = setting(None, "norm type", unset=PRESET, choices=("layernorm", "rmsnorm"))
    position: str | None = setting(None, "position encoding", unset=PRESET,
                                   choices=("learned", "sinusoidal", "rope"))
    dropout: float | None = setting(None, "dropout rate", unset=PRESET)
    save_interval: int | None = setting(None, SAVE_INTERVAL, unset="every --eval_interval steps")
    resume_from: str | None = setting(None, RESUME_FROM)

    def __post_init__(self) -> None:
        if self.config is not None and self.config not in PRESETS:
            raise LanternError(f"unknown preset {self.config!r}; choose one of: {', '.join(PRESETS)}")
        if self.val_fraction is not None and self.val_problems:
            raise LanternError("--val_fraction and --val_problems both choose the validation set; "
                               "give one")
        require_positive(self, "batch_size", "max_steps", "eval_interval", "eval_problems", "slots")
        if self.save_interval is not None:
            require_positive(self, "save_interval")
        if not 0 <= self.no_think_fraction <= 1 or not 0 < (self.val_fraction or 0.05) < 1:
            raise LanternError("--no_think_fraction must be in [0, 1] and --val_fraction in (0, 1)")
        if not 0 <= self.all_slots_fraction <= 1:
            raise LanternError("--all_slots_fraction must be in [0, 1]")
        if self.all_slots_fraction and self.slots == 1:
            raise LanternError("--all_slots_fraction needs --slots above 1 (with one slot every "
                               "mixed row has all its steps in slots)")
        if self.learning_rate <= 0 or self.latent_weight < 0:
            raise LanternError("--learning_rate must be positive and --latent_weight not negative")


@dataclass
class CompressorConfig:
    """`lantern trm compressor`: the D -> D' -> D compressor (phase 1)."""

    host: str = setting("", "LANTERN run directory or local HF model directory", unset=REQUIRED)
    output_dir: str = setting("trm_compressor", "where stage<S>_best/final go")
    stage: str = setting("1a", "1a: text; 1b: thinking trajectories", choices=("1a", "1b"))
    d_compressed: int = setting(256, "compressed size D'")
    batch_size: int = setting(512, "hidden-state rows per step")
    num_epochs: int = setting(10, "passes over the data")
    learning_rate: float = setting(1e-3, "learning rate")
    num_samples: int = setting(2000, "text windows (1a) or problems (1b)")
    data: str | None = setting(None, "1a: a text file; 1b: problems JSONL",
                               unset="1a: built-in story corpus")
    init: str | None = setting(None, "start from this checkpoint (1b: the 1a best)",
                               unset="fresh")
    layer: int = setting(-1, "hidden-state layer, -1 = final")
    window: int | None = setting(None, "tokens per 1a text window",
                                 unset=f"{DEFAULT_WINDOW}, or the host's context if shorter")
    val_fraction: float = setting(0.1, "held-out share")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", AUTO)
    overwrite: bool = setting(False, "replace this stage's checkpoints in --output_dir")
    save_interval: int | None = setting(None, SAVE_INTERVAL, unset="every epoch")
    resume_from: str | None = setting(None, RESUME_FROM)

    def __post_init__(self) -> None:
        if self.stage not in ("1a", "1b"):
            raise LanternError(f"--stage must be 1a or 1b (got {self.stage!r})")
        require_positive(self, "batch_size", "num_epochs", "num_samples")
        for name in ("window", "save_interval"):
            if getattr(self, name) is not None:
                require_positive(self, name)
        if self.learning_rate <= 0 or not 0 < self.val_fraction < 1:
            raise LanternError("--learning_rate must be positive and --val_fraction in (0, 1)")


@dataclass
class DatagenConfig:
    """`lantern trm datagen`: pairs of pre- and post-thinking states."""

    host: str = setting("", "LANTERN run directory or local HF model directory", unset=REQUIRED)
    dataset: str = setting("", "problems JSONL, or gsm8k/aime/humaneval/mbpp/apps",
                           unset=REQUIRED)
    output_dir: str = setting("trm_pairs", "directory of the pairs")
    num_samples: int = setting(1000, "problems to use")
    batch_size: int = setting(16, "problems per forward pass")
    max_new_tokens: int = setting(512, "thinking budget in generate mode")
    checkpoint_every: int = setting(100, "problems per saved chunk")
    mode: str = setting("teacher", "teacher: gold steps, one forward; generate: the host's own, "
                        "correct only", choices=DATAGEN_MODES)
    layer: int = setting(-1, "hidden-state layer, -1 = final")
    auto_resume: bool = setting(True, "continue a datagen run already in --output_dir")
    overwrite: bool = setting(False, "discard a datagen run already in --output_dir")
    device: str = setting("auto", AUTO)

    def __post_init__(self) -> None:
        if self.mode not in DATAGEN_MODES:
            raise LanternError(f"--mode must be teacher or generate (got {self.mode!r})")
        require_positive(self, "num_samples", "batch_size", "max_new_tokens", "checkpoint_every")


@dataclass
class TRMTrainConfig:
    """`lantern trm train`: the SequenceTRM (phase 2)."""

    data: str = setting("", "hidden_pairs file or the datagen directory", unset=REQUIRED)
    compressor_checkpoint: str = setting("", "stage1a/1b checkpoint", unset=REQUIRED)
    output_dir: str = setting("trm_model", "where best.pt / final.pt go")
    host: str | None = setting(None, "LANTERN host for the answer loss through its latent slot")
    batch_size: int = setting(32, "pairs per batch")
    num_epochs: int = setting(100, "passes over the pairs")
    learning_rate: float = setting(1e-4, "peak learning rate")
    weight_decay: float = setting(0.0, "AdamW decay")
    warmup_steps: int = setting(0, "warmup, in optimizer steps")
    min_lr: float | None = setting(None, "final learning rate", unset="learning_rate / 10")
    grad_clip: float = setting(1.0, "gradient-norm clip, 0 = off")
    n_layers: int = setting(2, "layers of the network")
    n_heads: int = setting(4, "attention heads")
    d_hidden: int | None = setting(None, "the network's width, projected from and to D'",
                                   unset="D'")
    core: str = setting("attention", "the network: a transformer encoder, or an MLP-mixer over "
                        "the question's positions (TRM-MLP, for short fixed-length questions)",
                        choices=("attention", "mlp"))
    n_latent_steps: int = setting(6, "n, latent updates per recursion")
    n_deep_recursions: int = setting(3, "T, deep recursions per supervision step")
    n_supervision_steps: int = setting(8, "N_sup, supervision steps")
    eval_supervision_steps: int | None = setting(None, "supervision steps at validation",
                                                 unset="N_sup")
    use_halting: bool | None = setting(None, "train the halting head", negatable=True,
                                       unset="on for one slot; a trajectory runs every step")
    halt_threshold: float = setting(0.7, "halting threshold")
    adaptive_halt_threshold: bool = setting(
        True, "raise the BCE threshold to 0.95 x training cosine each epoch")
    bce_halt_loss: bool = setting(False, "BCE instead of MSE-to-cosine", negatable=True)
    halt_loss_weight: float = setting(0.5, "weight of the halting loss")
    per_step_updates: bool = setting(True, "an update per supervision step")
    use_ema: bool = setting(True, "EMA weights for validation and saving")
    ema_decay: float = setting(0.999, "EMA decay")
    answer_loss_weight: float | None = setting(None, "weight of the answer loss through the host",
                                               unset="1 with --host, else 0")
    answer_loss_from: float = setting(0.0, "share of training before the answer loss starts")
    digit_loss_weight: float | None = setting(
        None, "the digit head on each step's result", unset="1 along a trajectory of slots, else 0")
    beta2: float = setting(0.99, "AdamW beta2")
    val_fraction: float = setting(0.1, "held-out share")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", AUTO)
    dtype: str = setting("auto", "auto, float32, bfloat16")
    overwrite: bool = setting(False, "replace best.pt / final.pt in --output_dir")
    save_interval: int | None = setting(None, "batches between resumable checkpoints",
                                        unset="every epoch")
    resume_from: str | None = setting(None, RESUME_FROM)

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "num_epochs")
        if self.save_interval is not None:
            require_positive(self, "save_interval")
        if self.learning_rate <= 0 or not 0 < self.val_fraction < 1:
            raise LanternError("--learning_rate must be positive and --val_fraction in (0, 1)")
        if not 0 < self.ema_decay < 1:
            raise LanternError(f"--ema_decay must be in (0, 1) (got {self.ema_decay})")
        if self.answer_loss_weight is None:
            self.answer_loss_weight = 1.0 if self.host else 0.0
        if self.answer_loss_weight < 0 or (self.digit_loss_weight or 0) < 0:
            raise LanternError("--answer_loss_weight and --digit_loss_weight must not be negative")
        if not 0 <= self.answer_loss_from < 1 or not 0 < self.beta2 < 1:
            raise LanternError("--answer_loss_from must be in [0, 1) and --beta2 in (0, 1)")
        if self.answer_loss_weight > 0 and not self.host:
            raise LanternError("--answer_loss_weight > 0 needs --host (the frozen host the answer "
                               "loss runs through)")

    def planned_optimizer_steps(self, batches_per_epoch: int) -> int:
        """The schedule's length: every optimizer step the run will take (halting can only
        shorten it)."""
        per_batch = self.n_supervision_steps if self.per_step_updates else 1
        return self.num_epochs * batches_per_epoch * per_batch


@dataclass
class EvalConfig:
    """`lantern trm eval`: the skip-thinking evaluation on held-out problems."""

    host: str = setting("", "LANTERN host with a latent slot", unset=REQUIRED)
    dataset: str = setting("", "held-out problems JSONL", unset=REQUIRED)
    output: str = setting("report.json", "the report (a .png plot goes beside it)")
    trm_checkpoint: str | None = setting(None, "best.pt / final.pt or their directory")
    compressor_checkpoint: str | None = setting(None, "the compressor the TRM was trained with")
    modes: str | None = setting(None, f"comma-separated subset of {', '.join(EVAL_MODES)}",
                                unset="all; trm_digits when the TRM has a digit head")
    num_samples: int = setting(200, "problems to evaluate")
    max_new_tokens: int = setting(256, "answer budget")
    batch_size: int = setting(64, "problems per batch")
    eval_supervision_steps: int | None = setting(None, "TRM steps at most", unset="its N_sup")
    bootstrap: int = setting(1000, "bootstrap resamples")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", AUTO)
    overwrite: bool = setting(False, "replace an existing --output report and its plot")

    def __post_init__(self) -> None:
        require_positive(self, "num_samples", "max_new_tokens", "batch_size", "bootstrap")
        if self.eval_supervision_steps is not None:
            require_positive(self, "eval_supervision_steps")

    def mode_list(self) -> list[str]:
        if self.modes is None:
            return [m for m in EVAL_MODES if m != "trm_digits"]
        modes = [m.strip() for m in self.modes.split(",") if m.strip()]
        unknown = [m for m in modes if m not in EVAL_MODES]
        if unknown or not modes:
            raise LanternError(f"unknown --modes {unknown or self.modes!r}; choose from "
                               f"{', '.join(EVAL_MODES)}")
        if any(m in NEEDS_TRM for m in modes) and not (self.trm_checkpoint and self.compressor_checkpoint):
            raise LanternError(f"modes {', '.join(m for m in modes if m in NEEDS_TRM)} need "
                               "--trm_checkpoint and --compressor_checkpoint")
        if "oracle_compressed" in modes and not self.compressor_checkpoint:
            raise LanternError("mode oracle_compressed needs --compressor_checkpoint")
        return modes


@dataclass
class GRPOConfig:
    """`lantern trm grpo`: GRPO of the TRM and compressor, the host frozen (phase 3)."""

    host: str = setting("", "LANTERN host with a latent slot", unset=REQUIRED)
    trm_checkpoint: str = setting("", "phase 2 best.pt / final.pt", unset=REQUIRED)
    compressor_checkpoint: str = setting("", "the compressor it was trained with",
                                         unset=REQUIRED)
    dataset: str = setting("", "training problems JSONL", unset=REQUIRED)
    output_dir: str = setting("trm_grpo", "trm.pt and compressor.* go here")
    num_samples: int = setting(256, "problems")
    num_epochs: int = setting(1, "passes over the problems")
    group_size: int = setting(8, "answers sampled per problem, G")
    problems_per_step: int = setting(8, "problems per step")
    iterations: int = setting(2, "updates per sampled batch")
    learning_rate: float = setting(1e-5, "learning rate")
    clip: float = setting(0.2, "ratio clip")
    kl_coef: float = setting(0.0, "KL penalty to the starting policy")
    temperature: float = setting(1.0, "sampling temperature")
    max_new_tokens: int = setting(32, "answer budget")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", AUTO)
    overwrite: bool = setting(False, "replace trm.pt / compressor.* in --output_dir")
    save_interval: int = setting(8, SAVE_INTERVAL)
    resume_from: str | None = setting(None, RESUME_FROM)

    def __post_init__(self) -> None:
        require_positive(self, "num_samples", "num_epochs", "problems_per_step", "iterations",
                         "max_new_tokens", "save_interval")
        if self.group_size < 2:
            raise LanternError("--group_size must be at least 2 (advantages are relative)")
        if self.temperature <= 0 or self.learning_rate <= 0 or self.clip <= 0 or self.kl_coef < 0:
            raise LanternError("--temperature, --learning_rate and --clip must be positive, "
                               "--kl_coef not negative")


@dataclass
class InternalizeConfig:
    """`lantern trm internalize`: stepwise internalization, no TRM."""

    host: str = setting("", "a host made by `lantern trm host` to start from (it thinks in "
                        "full)", unset=REQUIRED)
    problems: str = setting("", "problems JSONL, every one with the same number of "
                            "';'-separated steps", unset=REQUIRED)
    val_problems: str | None = setting(
        None, "held-out problems JSONL for accuracy after each stage")
    output_dir: str = setting("trm_internalized", "run directory to write")
    steps_per_stage: int = setting(500, "optimizer steps per removed step")
    learning_rate: float = setting(5e-4, "peak learning rate of each stage")
    min_lr: float | None = setting(None, "final learning rate of each stage",
                                   unset="learning_rate / 10")
    weight_decay: float = setting(0.1, "AdamW decay")
    warmup_steps: int = setting(20, "warmup steps at the start of each stage")
    grad_clip: float = setting(1.0, "gradient-norm clip, 0 = off")
    batch_size: int = setting(32, "problems per step")
    removal_smoothing: float = setting(
        4.0, "lambda: a row removes o steps more, P(o) ~ exp(-lambda o); 0 = off")
    eval_problems: int | None = setting(None, "of --val_problems, per evaluation", unset="200")
    seed: int = setting(1337, "random seed")
    device: str = setting("auto", AUTO)
    dtype: str = setting("auto", "auto, float32, bfloat16, float16")
    overwrite: bool = setting(False, "replace what --output_dir holds")
    save_interval: int | None = setting(None, SAVE_INTERVAL, unset="at the end of each stage")
    resume_from: str | None = setting(None, RESUME_FROM)

    def __post_init__(self) -> None:
        if not self.host or not self.problems:
            raise LanternError("internalization needs --host and --problems")
        require_positive(self, "steps_per_stage", "batch_size", "learning_rate")
        if self.save_interval is not None:
            require_positive(self, "save_interval")
        if self.eval_problems is not None:
            if not self.val_problems:
                raise LanternError("--eval_problems counts held-out problems; give --val_problems")
            require_positive(self, "eval_problems")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise LanternError("--warmup_steps, --weight_decay and --grad_clip must not be negative")
        if self.removal_smoothing < 0 or not math.isfinite(self.removal_smoothing):
            raise LanternError(f"--removal_smoothing must be a finite number >= 0 (got "
                               f"{self.removal_smoothing})")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.learning_rate:
            raise LanternError(f"--min_lr must be between 0 and --learning_rate (got {self.min_lr})")
