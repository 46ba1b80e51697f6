"""A setting declared once, on its dataclass field: its default and its help side by side, so
the command line (`lantern.cli.from_config`) shows the default without restating it."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, field
from typing import Any


def setting(default: Any = MISSING, help: str = "", *, unset: str | None = None,
            choices: tuple[str, ...] | None = None, negatable: bool = False,
            flag: str | None = None, **extra: Any) -> Any:
    """A dataclass field with its help. `unset` says what a None or empty default stands for
    ("the preset's", "required"), since the value itself cannot; `choices` are the values a
    flag accepts; `negatable` gives a boolean a --no-NAME flag; `flag` spells the flag other
    than --NAME; `extra` is for other readers of the field (a sampler's rule and bounds)."""
    metadata = {"help": help, "unset": unset, "choices": choices, "negatable": negatable,
                "flag": flag, **extra}
    return field(default=default, metadata=metadata)


PLAIN_TYPES = {"int": int, "float": float, "str": str, "bool": bool,
               "tuple[str, ...]": tuple[str, ...]}


def value_types(cls: type) -> dict[str, Any]:
    """Each field's type without None (`int | None` -> int): what a typed value is read as.
    A plain type is read off the annotation's text, since every command's flags are built at
    each start; any other annotation is evaluated."""
    kinds: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        names = [n.strip() for n in str(f.type).split("|") if n.strip() != "None"]
        if len(names) == 1 and names[0] in PLAIN_TYPES:
            kinds[f.name] = PLAIN_TYPES[names[0]]
        else:
            kinds[f.name] = value_type(typing.get_type_hints(cls)[f.name])
    return kinds


def value_type(hint: Any) -> Any:
    """`int | None` -> int; any other type as it is."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return kind
    return hint
