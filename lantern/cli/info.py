"""`lantern info PATH`: what a model holds, in any format, without running it."""

from __future__ import annotations

import argparse
import json

from lantern.export.describe import describe


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe a model: run dir, .pt, .safetensors, transformers dir or .gguf",
        description="Show a model's architecture, parameters, layers, width, heads, context, "
        "vocabulary and tokenizer, tensor types (quantization), file size, and the training "
        "step and validation loss where the file records them.",
    )
    p.add_argument("model", help="a run directory, .pt, .safetensors, transformers directory or .gguf")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(run=run_info)


def human_size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        size /= 1024
    return f"{num_bytes} B"


def dash(value) -> str:
    if value is None or value == float("inf"):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def run_info(args: argparse.Namespace) -> int:
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    heads = dash(info["heads"])
    if info["kv_heads"] not in (None, info["heads"]):
        heads += f" ({info['kv_heads']} key/value)"
    rows = [
        ("format", info["format"]),
        ("file", info["file"]),
        ("file size", human_size(info["file_size_bytes"])),
        ("architecture", dash(info["architecture"])),
        ("parameters", dash(info["parameters"])),
        ("layers", dash(info["layers"])),
        ("width", dash(info["hidden_size"])),
        ("heads", heads),
        ("context", f"{dash(info['context_length'])} tokens"),
        ("vocabulary", f"{dash(info['vocab_size'])} tokens ({dash(info['tokenizer'])})"),
        ("tensor types", dash(info["tensor_types"])),
        ("steps trained", dash(info["steps_trained"])),
        ("validation loss", f"{dash(info['val_loss'])} (best {dash(info['best_val_loss'])})"),
    ]
    if "exports_as" in info:
        rows.append(("exports as", info["exports_as"]))
    if "config" in info:
        rows += [("config", "")] + [(f"  {key}", str(value)) for key, value in info["config"].items()]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0
