"""Every command's flags against the dataclasses they fill.

Each field has a flag (or is listed below with the reason it has none); every such flag
defaults to None, so the field's default is the one in force, and its help shows that default
(or the command's own, declared once in `COMMAND_DEFAULTS`, which must differ from the field's).
Old spellings in the alias tables still set their field.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from lantern.cli import generate, lr_find
from lantern.cli.from_config import shown_default
from lantern.cli.main import build_parser
from lantern.evaluation.settings import ScoreSettings
from lantern.generation.settings import FLAG_ALIASES as GENERATION_ALIASES
from lantern.generation.settings import GenerationConfig
from lantern.serve.limits import ServeLimits
from lantern.training.settings import FLAG_ALIASES as TRAIN_ALIASES
from lantern.training.settings import SECTIONS
from lantern.trm import settings as trm

# Fields no flag sets, and why.
MODEL_OWN = {"eos_token_id": "the model's end-of-sequence token",
             "think_token_id": "the model's THINK token"}
BEAM_SEARCH = {"num_beams": "beam search is `generate`'s", "length_penalty": "beam search",
               "early_stopping": "beam search"}

# command -> (the dataclasses its flags fill, fields without a flag, the command's own defaults)
COMMANDS: dict[tuple[str, ...], tuple[tuple[type, ...], dict[str, str], dict]] = {
    ("train",): (tuple(SECTIONS.values()), {}, {}),
    ("lr-find",): (tuple(cls for cls, _ in lr_find.SECTIONS.values()),
                   {"learning_rate": "the range test sweeps it", "max_steps": "--find_steps",
                    "epochs": "--find_steps"}, {}),
    ("generate",): ((GenerationConfig,), MODEL_OWN, generate.COMMAND_DEFAULTS),
    ("chat",): ((GenerationConfig,), {**MODEL_OWN, **BEAM_SEARCH}, generate.COMMAND_DEFAULTS),
    ("serve",): ((ServeLimits,), {}, {}),
    ("eval",): ((ScoreSettings,), {}, {}),
    ("trm", "host"): ((trm.HostTrainConfig,), {}, {}),
    ("trm", "compressor"): ((trm.CompressorConfig,), {}, {}),
    ("trm", "datagen"): ((trm.DatagenConfig,), {}, {}),
    ("trm", "train"): ((trm.TRMTrainConfig,), {}, {}),
    ("trm", "eval"): ((trm.EvalConfig,), {}, {}),
    ("trm", "grpo"): ((trm.GRPOConfig,), {}, {}),
    ("trm", "internalize"): ((trm.InternalizeConfig,), {}, {}),
}


def subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def field_actions(parser: argparse.ArgumentParser, name: str) -> list[argparse.Action]:
    return [a for a in parser._actions if a.dest == name and a.option_strings]


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_field_has_a_flag_that_states_no_default_of_its_own(path):
    parser = subparser(path)
    classes, without_flag, own_defaults = COMMANDS[path]
    fields = {f.name: f for cls in classes for f in dataclasses.fields(cls)}
    assert set(without_flag) <= set(fields), "an exclusion names no field"
    for name, field in fields.items():
        actions = field_actions(parser, name)
        if name in without_flag:
            assert not actions, f"--{name} has a flag but is listed as having none"
            continue
        assert actions, f"`lantern {' '.join(path)}`: field {name} has no flag"
        for action in actions:
            assert action.default is None, (
                f"--{name} states the default {action.default!r}; the field's must be in force")
        if name in own_defaults:
            assert own_defaults[name] != field.default, f"{name}: the command's own default " \
                "duplicates the field's; drop it"
        shown = own_defaults.get(name, field.default)
        helps = " ".join(a.help or "" for a in actions)
        assert f"[{shown_default(shown, field.metadata.get('unset'))}]" in helps \
            or "[required]" in helps, f"--{name}'s help does not show its default {shown!r}"


ALIASES = [(("train",), name, alias) for name, spellings in TRAIN_ALIASES.items()
           for alias in spellings]
ALIASES += [(("generate",), name, alias) for name, spellings in GENERATION_ALIASES.items()
            for alias in spellings]
ALIASES += [(("trm", "host"), name, alias) for name, spellings in trm.FLAG_ALIASES.items()
            for alias in spellings]


@pytest.mark.parametrize(("path", "name", "alias"), ALIASES)
def test_old_spellings_set_their_field(path, name, alias):
    required = ["--checkpoint", "run"] if path == ("generate",) else []
    args = build_parser().parse_args([*path, *required, alias, "7"])
    assert getattr(args, name) in (7, "7")


def test_a_command_default_and_an_untyped_flag_reach_the_settings():
    """`generate` applies its own defaults, GenerationConfig the rest; a typed value wins."""
    args = build_parser().parse_args(["generate", "--checkpoint", "run", "--top_k", "5"])
    config = generate.config_from_args(args)
    assert (config.temperature, config.max_new_tokens) == (0.8, 200)
    assert (config.top_k, config.num_beams, config.length_penalty) == (5, 1, 1.0)
