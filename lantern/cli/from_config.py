"""Command-line flags derived from config dataclasses.

Each flag's name, type, choices and help come from its field (declared with
`lantern.setting.setting`), and its help shows the field's default, so no default is written
twice. Flags default to None: a command passes on only the values that were typed, and the
dataclass fills in the rest. Old spellings are the `aliases` of a field.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from lantern.setting import value_types

NO_ALIASES: Mapping[str, tuple[str, ...]] = {}


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                     skip: Iterable[str] = (), aliases: Mapping[str, tuple[str, ...]] = NO_ALIASES,
                     defaults: Mapping[str, Any] | None = None,
                     required: Iterable[str] = ()) -> None:
    """One flag per field of `cls`, in field order, minus `skip`. `defaults`
    are the command's own defaults where it deliberately differs from the dataclass: the help
    shows them and the command applies them (the flag itself stays None, so that a typed
    value can be told from an untyped one). `required` flags say so in place of a default;
    the command checks them (a resumed run may take them from its checkpoint)."""
    kinds = value_types(cls)
    skipped, needed = set(skip), set(required)
    for field in dataclasses.fields(cls):
        if field.name not in skipped:
            add_field_flag(parser, field, kinds[field.name], aliases.get(field.name, ()),
                           (defaults or {}).get(field.name), field.name in needed)


def add_field_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                   field: dataclasses.Field, kind: Any, aliases: tuple[str, ...],
                   default: Any = None, required: bool = False) -> None:
    """The field's flag, defaulting to None; its help ends with the default in brackets."""
    meta = field.metadata
    shown = default if default is not None else field.default
    said = "required" if required else shown_default(shown, meta.get("unset"))
    text = f"{meta.get('help', '')} [{said}]".lstrip()
    options: dict[str, Any] = {"dest": field.name, "default": None,
                               "help": text.replace("%", "%%")}
    if typing.get_origin(kind) is tuple:  # a repeatable flag, one value each time
        options.update(action="append", type=typing.get_args(kind)[0])
    elif kind is bool:
        negatable = field.default is True or meta.get("negatable")
        options["action"] = argparse.BooleanOptionalAction if negatable else "store_true"
    else:
        options.update(type=kind, choices=meta.get("choices"))
    parser.add_argument(meta.get("flag") or f"--{field.name}", *aliases, **options)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each hand-declared flag's text with its argparse default in brackets, as
    the derived flags show theirs (those default to None, so nothing is added to them)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if action.option_strings and not (default is None or default is False or default == []
                                          or default == argparse.SUPPRESS):
            text += " [%(default)s]"
        return text


def shown_default(value: Any, unset: str | None) -> str:
    """How the help shows a default: the value itself, or what None/empty stands for."""
    if value is None or value == "" or value == ():
        return unset or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def typed_settings(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values typed for `cls`'s fields (a flag left out is None): what a command passes on,
    so that the dataclass's own defaults fill in the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
