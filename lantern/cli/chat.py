"""`lantern chat`: talk to a model in turns, with its chat template when it learned one."""

from __future__ import annotations

import argparse

from lantern.cli.generate import add_model_flags, load_for_generation, settings_from_args
from lantern.generation.interactive import InteractiveSession
from lantern.generation.prompts import trained_on_chat


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="interactive session with a trained model",
        description="Type messages; answers stream as they are made (Ctrl-C stops one, /help "
        "lists the commands). Models trained on <system>/<user>/<assistant> text get that "
        "template; others continue your text.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_flags(p)
    p.add_argument("--template", choices=("auto", "chat", "plain"), default="auto",
                   help="auto = chat if the model learned the chat tags, else plain text")
    p.add_argument("--system", default=None, help="system message for the chat template")
    p.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    model, tokenizer, _ = load_for_generation(args)
    chat = args.template == "chat" or (args.template == "auto" and trained_on_chat(model, tokenizer))
    InteractiveSession(model, tokenizer, settings, chat=chat, system=args.system,
                       seed=args.seed).run()
    return 0
