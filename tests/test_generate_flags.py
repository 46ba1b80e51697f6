"""Every flag of `lantern generate`, in every mode (sampling, beam search, adaptive depth),
either changes what the command does, against the same command without it, or is refused by
name: a flag a mode silently drops would pass a check of refusals alone."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import TINY_TEXT, perturbed_model, save_run

from lantern.cli.main import build_parser, main
from lantern.generation import core
from lantern.generation.compiled import token_logits
from lantern.tokenizers import CharTokenizer

MODES = {
    "sampling": ["--seed", "1"],
    "beam": ["--num_beams", "3"],
    "adaptive": ["--adaptive", "--seed", "1"],
}
BASE = ["--prompt", "Once upon", "--max_new_tokens", "24"]


@dataclass
class Case:
    """A value chosen to matter; the flags (`context`) under which it can show, given to both
    runs (--overwrite needs an existing --output file, --show_think THINK tokens); and the mode's
    flags it replaces (`drop`: beam search takes no --seed)."""

    values: list[str]
    context: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)


def cases(other_run: Path, eos_run: Path, tokenizer_file: Path, output: Path) -> dict[str, Case]:
    monte_carlo = ["--tau_low", "0", "--tau_mid", "0", "--trace"]  # passes at every token
    # Hypotheses that end at different lengths (at EOS), ranked: where length matters in beams.
    endings = ["--checkpoint", str(eos_run), "--num_samples", "3"]
    return {
        "--checkpoint": Case([str(other_run)]),
        "--max_new_tokens": Case(["3"]),
        "--temperature": Case(["0"]),
        "--top_k": Case(["1"]),
        "--top_p": Case(["0.05"]),
        "--min_p": Case(["0.9"]),
        "--repetition_penalty": Case(["3.0"]),
        "--presence_penalty": Case(["2.0"]),
        "--frequency_penalty": Case(["2.0"]),
        "--stop": Case([]),  # a character of the text without it, picked per run
        "--seed": Case(["2"]),
        "--steps_per_block": Case(["4"]),
        # Compiling changes how each token runs, not the text: observed as such.
        "--compile": Case([]),
        "--tokenizer": Case([str(tokenizer_file)]),
        # The device changes where the model runs, not the text: observed as such.
        "--device": Case(["cpu" if torch.cuda.is_available() else "cuda"]),
        "--prompt": Case(["The fox"]),
        "--num_samples": Case(["2"]),
        "--batch_size": Case(["1"], ["--num_samples", "3"]),
        "--num_beams": Case(["2"], drop=["--seed", "1"]),
        "--length_penalty": Case(["-2.0"], endings),
        "--early_stopping": Case([], endings),
        "--output": Case([str(output)]),
        "--overwrite": Case([], ["--output", str(output)]),
        "--interactive": Case([], drop=["--prompt", "Once upon"]),
        "--adaptive": Case([]),
        # This model's uncertainty scores are about 6: thresholds around that value act.
        "--tau_low": Case(["5.9"], ["--tau_mid", "6", "--tau_high", "7"]),
        "--tau_mid": Case(["6"], ["--tau_low", "0", "--tau_high", "7"]),
        "--tau_high": Case(["7"]),
        "--exit_kl": Case(["100"], ["--steps_per_block", "4", "--tau_high", "100"]),  # 2, not 4
        "--mc_samples": Case(["1"], monte_carlo),
        "--mc_dropout": Case(["0.6"], monte_carlo),
        "--show_think": Case([], ["--tau_low", "0", "--tau_mid", "0", "--tau_high", "0"]),
        "--trace": Case([]),
    }


def saved_model(tokenizer: CharTokenizer, directory: Path, eos_scale: float = 1.0,
                noise_seed: int | None = None) -> None:
    """A recursive model trained with dropout (so Monte-Carlo passes have a rate), with weights
    far from their init (so its text depends on every setting); `eos_scale` makes EOS likelier."""
    model = perturbed_model(tokenizer, dropout=0.1, steps_per_block=2)
    if noise_seed is not None:
        torch.manual_seed(noise_seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.embed_tokens.weight[tokenizer.eos_id] *= eos_scale
    # Trained with pause tokens, as far as adaptive decoding knows: THINK and --tau_high act.
    save_run(model, tokenizer, directory, train_config={"loop": {"pause_tokens": 2}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """The run, another one, one that often ends at EOS, and a tokenizer file with the run's
    vocabulary in another order."""
    root = tmp_path_factory.mktemp("generate-flags")
    tokenizer = CharTokenizer.train([TINY_TEXT])
    saved_model(tokenizer, root / "run")
    saved_model(tokenizer, root / "other", noise_seed=1)
    saved_model(tokenizer, root / "eos", eos_scale=2.0)
    data = json.loads(tokenizer.to_json())
    data["chars"] = data["chars"][::-1]
    (root / "reordered.json").write_text(json.dumps(data))
    return root / "run", root / "other", root / "eos", root / "reordered.json"


@dataclass
class Outcome:
    """What one `lantern generate` did: exit code, terminal output (progress bars aside), the
    --output file (speeds aside), the device the model ran on, and the rows per decoding batch."""

    code: int
    stdout: str
    stderr: str
    written: str | None
    device: str | None
    batches: list[int]
    compiled: bool  # whether the decoder ran its per-token step compiled


ADD = core.Decoder.add


def generate(argv: list[str], output: Path, stdin: str, capsys, monkeypatch) -> Outcome:
    batches: list[int] = []
    devices: list[str] = []
    compiled: list[bool] = []

    def observed_add(decoder, prompts, *args, **kwargs):
        batches.append(len(prompts))
        devices.append(str(decoder.device))
        compiled.append(decoder.token_step is not None)
        return ADD(decoder, prompts, *args, **kwargs)

    monkeypatch.setattr(core.Decoder, "add", observed_add)
    # The step `--compile` runs, uncompiled: this test is about wiring; compiling (a minute) is
    # tested against the plain model in test_compiled_decoding.py.
    monkeypatch.setattr(core, "compiled_step", lambda: token_logits)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    torch.manual_seed(0)  # runs without --seed draw their seeds from here
    code = main(["generate", *argv])
    out, err = capsys.readouterr()
    err = "\n".join(line for line in err.splitlines() if "sample/s" not in line and "s/sample" not in line)
    written = None
    if output.exists():
        written = re.sub(r'"tokens_per_second": [0-9.e+-]+', "", output.read_text())
    return Outcome(code, out, err, written, devices[0] if devices else None, batches,
                   any(compiled))


def generate_flags() -> set[str]:
    """Each action of `lantern generate` by its first option string (an alias such as --model
    or --max_length is the same action)."""
    parser = build_parser()._subparsers._group_actions[0].choices["generate"]
    return {a.option_strings[0] for a in parser._actions
            if a.option_strings and a.option_strings[0] != "-h"}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_generate_flag_changes_the_output_or_is_refused_by_name(mode, runs, tmp_path, capsys,
                                                                     monkeypatch):
    run, other, eos_run, tokenizer_file = runs
    output = tmp_path / "out.jsonl"
    table = cases(other, eos_run, tokenizer_file, output)
    assert generate_flags() == set(table), "a new flag needs a case here"

    def outcome(argv: list[str], flag: str, stdin: str = "") -> Outcome:
        output.unlink(missing_ok=True)
        if flag == "--overwrite":
            output.write_text("an earlier file\n")
        return generate(argv, output, stdin, capsys, monkeypatch)

    plain = ["--checkpoint", str(run), *BASE, *MODES[mode]]
    assert outcome(plain, "") == outcome(plain, "")  # deterministic, so any change is the flag's
    silent = []
    for flag, case in table.items():
        if flag in MODES[mode]:
            continue
        without = ["--checkpoint", str(run), *BASE, *MODES[mode], *case.context]
        for drop in case.drop:
            without.remove(drop)
        before = outcome(without, flag)
        values = case.values or ([before.stdout[len("Once upon") + 2]] if flag == "--stop" else [])
        if flag == "--checkpoint":
            with_flag = ["--checkpoint", *values, *without[2:]]
        else:
            with_flag = [*without, flag, *values]
        after = outcome(with_flag, flag, "Once upon\n" if flag == "--interactive" else "")
        if after.code != 0:
            lines = [line for line in after.stderr.splitlines() if line.startswith("lantern: error:")]
            assert after.code == 1 and len(lines) == 1, (flag, after.stderr)
            if flag in lines[0] and ("no effect" in lines[0] or flag == "--device"):
                continue  # refused by name
            silent.append((flag, lines[0]))
        elif after == before:
            silent.append((flag, "accepted, and nothing changed"))
    assert not silent, f"{mode}: {silent}"
