"""`lantern chat`: talk to a model in turns, with its chat template when it learned one."""

from __future__ import annotations

import argparse

from lantern.cli.from_config import DefaultsFormatter
from lantern.cli.generate import add_model_flags, config_from_args, open_engine
from lantern.generation.interactive import InteractiveSession


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="interactive session with a trained model",
        description="Type messages; answers stream as they are made (Ctrl-C stops one, /help "
        "lists the commands). A model with a chat template of its own (a GGUF's or an imported "
        "tokenizer's) is talked to in it and stops at its end-of-turn token; models trained on "
        "<system>/<user>/<assistant> text get that layout; others continue your text.",
        formatter_class=DefaultsFormatter,
    )
    add_model_flags(p)
    p.add_argument("--template", choices=("auto", "chat", "plain"), default="auto",
                   help="auto = chat if the model has its own template or learned the chat tags, "
                   "else plain text; chat = the model's own template, else the chat tags")
    p.add_argument("--system", default=None, help="system message for the chat template")
    p.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    config_from_args(args)  # check every value before loading anything
    with open_engine(args) as engine:
        settings = config_from_args(args, engine.eos_id)
        chat = args.template == "chat" or (args.template == "auto" and engine.knows_chat())
        InteractiveSession(engine, settings, chat=chat, system=args.system, seed=args.seed).run()
    return 0
