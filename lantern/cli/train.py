"""`lantern train`: argument parsing only; the work is lantern.training.trainer.

Under torchrun every process runs this; rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import os

from lantern.config import PRESET_DESCRIPTIONS
from lantern.training.config import CONFIG_FILE, FLAG_SECTION, read_config_file
from lantern.training.distributed import run_worker
from lantern.training.trainer import TrainConfig, Trainer, resolve_resume

D = TrainConfig()


def add_parser(subparsers) -> None:
    presets = "; ".join(f"{k}: {v}" for k, v in PRESET_DESCRIPTIONS.items())
    p = subparsers.add_parser(
        "train",
        help="train a model (built-in story corpus when no data is given)",
        description="Train a language model. With no data path it trains on the built-in "
        "procedural story corpus. Every flag's default is shown in brackets.",
        argument_default=None,
    )
    model = p.add_argument_group("model")
    model.add_argument("--config", "--preset", dest="config",
                       help=f"preset [{D.config}]. Presets: {presets}")
    model.add_argument("--hidden_size", "--d_model", dest="hidden_size", type=int,
                       help="width [preset]")
    model.add_argument("--num_heads", "--n_heads", dest="num_heads", type=int,
                       help="attention heads [preset]")
    model.add_argument("--num_kv_heads", type=int, help="key/value heads, < num_heads = GQA [preset]")
    model.add_argument("--num_blocks", "--n_layers", dest="num_blocks", type=int,
                       help="unique transformer blocks [preset]")
    model.add_argument("--steps_per_block", type=int,
                       help="times each block is applied with shared weights [preset]")
    model.add_argument("--d_ff", "--mlp_hidden_size", dest="mlp_hidden_size", type=int,
                       help="MLP hidden width [preset, else 4 x width]")
    model.add_argument("--mlp", choices=("gelu", "swiglu"), help="MLP type [preset]")
    model.add_argument("--norm", choices=("layernorm", "rmsnorm"), help="norm type [preset]")
    model.add_argument("--position", choices=("learned", "sinusoidal", "rope"),
                       help="position encoding [preset]")
    model.add_argument("--dropout", type=float, help="dropout rate [preset: 0]")
    model.add_argument("--attention_window", type=int, help="sliding-window size [full attention]")
    model.add_argument("--attention_sink", type=int,
                       help="first positions every query sees beyond its window [0]")
    model.add_argument("--prelude_blocks", type=int,
                       help="first blocks that run once whatever the depth (a prelude before the "
                       "recurrent blocks) [preset]")
    model.add_argument("--coda_blocks", type=int,
                       help="last blocks that run once whatever the depth (a coda that reads the "
                       "recurrent state out) [preset]")
    model.add_argument("--reinject_input", action="store_true", default=None,
                       help="re-inject each block's input at every recurrence [off]")
    model.add_argument("--qkv_bias", action="store_true", default=None,
                       help="bias on the query/key/value projections (Qwen2-style) [off]")
    model.add_argument("--init_from",
                       help="start from a pretrained model, with its weights and tokenizer: a "
                       "GGUF file, a known name (lantern pull --list), a transformers directory or "
                       "a LANTERN run / .pt checkpoint [random initial weights]")
    model.add_argument("--depth_schedule",
                       help="recursion depth per training step: fixed:K, random:A-B or poisson:M "
                       "[the model's steps_per_block]")
    model.add_argument("--backprop_steps", type=int,
                       help="backpropagate through each block's last K applications only "
                       "(truncated backpropagation through depth) [all]")
    model.add_argument("--pause_tokens", type=int,
                       help="THINK tokens inserted at random per training window "
                       f"[{D.pause_tokens}]")
    model.add_argument("--pause_after",
                       help="put the --pause_tokens THINK tokens after every occurrence of this "
                       "token (e.g. '=' before an answer) instead of at random [at random]")
    lora = p.add_argument_group("LoRA (with --init_from: train low-rank adapters, not the weights)")
    lora.add_argument("--lora_rank", type=int,
                      help="adapter rank; the run's weights files and exports hold the adapters "
                      "merged in [0: every weight trains]")
    lora.add_argument("--lora_alpha", type=float, help="adapter scale alpha (update x alpha/rank) "
                      "[2 x rank]")
    lora.add_argument("--lora_dropout", type=float, help="dropout on the adapters' input [0]")
    lora.add_argument("--lora_targets",
                      help="linear layers to adapt, comma-separated among qkv, proj, up, down [all four]")
    data = p.add_argument_group("data")
    data.add_argument("--data_path", "--train_data", "--data", dest="data_path",
                      help="training text (.txt) or token ids (.jsonl) [built-in story corpus]")
    data.add_argument("--val_data_path", "--val_data", dest="val_data_path",
                      help=f"validation file [last {D.val_fraction:.0%}% of the training data]")
    data.add_argument("--val_fraction", type=float, help=f"held-out share [{D.val_fraction}]")
    data.add_argument("--corpus_chars", type=int,
                      help=f"size of the built-in corpus in characters [{D.corpus_chars}]")
    data.add_argument("--tokenizer",
                      help=f"char, bpe, tiktoken, or a tokenizer.json file [{D.tokenizer}]")
    data.add_argument("--encoding", help=f"tiktoken encoding name or .tiktoken file [{D.encoding}]")
    data.add_argument("--vocab_size", type=int,
                      help="BPE vocabulary size [4096]; a char vocabulary comes from the text")
    data.add_argument("--seq_length", "--seq_len", dest="seq_length", type=int,
                      help="training window = model context; with --init_from the window only, "
                      "up to the model's context [preset's context; the model's]")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--batch_size", type=int,
                     help="sequences per micro-batch, in all (under torchrun each process takes an "
                     f"equal share) [{D.batch_size}]")
    opt.add_argument("--grad_accum", type=int,
                     help=f"micro-batches per optimizer step [{D.grad_accum}]")
    opt.add_argument("--learning_rate", "--lr", dest="learning_rate", type=float,
                     help=f"peak learning rate [{D.learning_rate}]")
    opt.add_argument("--min_lr", type=float, help="final learning rate [learning_rate / 10]")
    opt.add_argument("--weight_decay", type=float,
                     help=f"AdamW decay of linear-layer matrices [{D.weight_decay}]")
    opt.add_argument("--beta1", type=float, help=f"AdamW beta1 [{D.beta1}]")
    opt.add_argument("--beta2", type=float, help=f"AdamW beta2 [{D.beta2}]")
    opt.add_argument("--max_steps", type=int, help=f"optimizer steps [{D.max_steps}]")
    opt.add_argument("--epochs", type=float, help="passes over the training tokens (sets max_steps)")
    opt.add_argument("--warmup_steps", type=int, help=f"linear warmup steps [{D.warmup_steps}]")
    opt.add_argument("--grad_clip", type=float, help=f"gradient-norm clip, 0 = off [{D.grad_clip}]")
    opt.add_argument("--seed", type=int, help=f"random seed [{D.seed}]")
    opt.add_argument("--skip_nonfinite", type=int,
                     help="batches with a NaN/inf loss to skip before stopping; 0 = stop at the "
                     f"first [{D.skip_nonfinite}]")
    opt.add_argument("--ema_decay", type=float,
                     help="keep an exponential moving average of the weights, e.g. 0.999; 0 = off "
                     f"[{D.ema_decay}]")
    opt.add_argument("--eval_ema", action="store_true", default=None,
                     help="evaluate, sample and save best/final/exported weights from the EMA [off]")
    run = p.add_argument_group("run")
    run.add_argument("--output_dir", "--save_dir", dest="output_dir",
                     help=f"checkpoints and logs [{D.output_dir}]")
    run.add_argument("--eval_interval", type=int, help=f"steps between evals [{D.eval_interval}]")
    run.add_argument("--eval_batches", type=int, help=f"batches per eval [{D.eval_batches}]")
    run.add_argument("--save_interval", type=int, help=f"steps between checkpoints [{D.save_interval}]")
    run.add_argument("--log_interval", type=int, help=f"steps between log lines [{D.log_interval}]")
    run.add_argument("--sample_length", type=int, help=f"tokens per sample [{D.sample_length}]")
    run.add_argument("--num_samples", type=int, help=f"samples printed at the end [{D.num_samples}]")
    run.add_argument("--device", help=f"auto, cpu, cuda, cuda:N or mps [{D.device}]")
    run.add_argument("--dtype", help="autocast dtype: auto, float32, bfloat16, float16 (with a "
                     f"gradient scaler) [{D.dtype}: bfloat16 on GPUs that have it, else float32]")
    run.add_argument("--resume_from", help="checkpoint_step_N.pt or a run directory to continue")
    run.add_argument("--overwrite", action="store_true", default=None,
                     help="replace a run already in --output_dir")
    run.add_argument("--config_file",
                     help=f"settings from a JSON or YAML file, e.g. a run's {CONFIG_FILE} (flags "
                     "given with it win)")
    par = p.add_argument_group("distributed (under torchrun --nproc_per_node N -m lantern train)")
    par.add_argument("--fsdp", action="store_true", default=None,
                     help="shard weights, gradients and optimizer state with FSDP2, and also write "
                     "torch.distributed.checkpoint sharded saves [DistributedDataParallel]")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(args).items() if k in FLAG_SECTION and v is not None}
    quiet = int(os.environ.get("RANK", 0)) != 0  # under torchrun, rank 0 alone reports
    return run_worker(lambda: Trainer(resolve_config(args.config_file, given), quiet=quiet).fit())


def resolve_config(config_file: str | None, given: dict) -> TrainConfig:
    settings = {**(read_config_file(config_file) if config_file else {}), **given}
    if settings.get("resume_from"):
        return resolve_resume(settings)[0]
    return TrainConfig(**settings)


