"""`lantern serve`: serve one or more models over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from lantern.cli.from_config import DefaultsFormatter, add_config_flags, typed_settings
from lantern.errors import LanternError
from lantern.serve.limits import ServeLimits

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve models over an OpenAI-compatible HTTP API with a web playground",
        description="Serve models over HTTP: /v1/completions, /v1/chat/completions (streaming "
        "too), /v1/models, /tokenize, /detokenize, /health, /metrics, and a playground at /. "
        "Concurrent requests share forward passes (continuous batching).",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--checkpoint", default=None,
                   help="a .pt checkpoint or a run directory (named after its directory), or "
                   "a .gguf file or known model name (imported as a LANTERN model)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="a model to serve under NAME (repeatable); requests pick one with "
                   "their 'model' field, the first is the default")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (other than loopback: reachable from the network)")
    p.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    p.add_argument("--allowed_hosts", nargs="+", default=None, metavar="HOST",
                   help="host names requests may address (their Host header, any port); "
                   "'*.example.com' takes subdomains, '*' any name [localhost, 127.0.0.1, "
                   "[::1], and --host when it is one address]")
    p.add_argument("--api_key", default=None,
                   help="require 'Authorization: Bearer KEY' (or set $LANTERN_API_KEY)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    add_config_flags(p.add_argument_group("limits"), ServeLimits)
    p.add_argument("--log_level", default="info", choices=("critical", "error", "warning", "info",
                                                           "debug"), help="uvicorn's log level")
    p.set_defaults(run=run_serve)


def model_specs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, path) of every model asked for, checked."""
    from lantern.serve.registry import model_name

    specs = [(model_name(args.checkpoint), args.checkpoint)] if args.checkpoint else []
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise LanternError(f"--model takes NAME=PATH (got {spec!r})")
        specs.append((name, path))
    if not specs:
        raise LanternError("give a model: --checkpoint RUN_OR_FILE or --model NAME=PATH")
    names = [name for name, _ in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise LanternError(f"two models are named {duplicate!r}; name them with --model NAME=PATH")
    return specs


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(args: argparse.Namespace, loopback: tuple[str, ...]) -> list[str]:
    """The Host names to serve, checked: --allowed_hosts, else loopback and --host itself
    (unless --host listens on every address, which has no one name)."""
    if args.allowed_hosts is None:
        hosts = list(loopback)
        if args.host not in ("", "0.0.0.0", "::") and not is_loopback(args.host):
            hosts.append(f"[{args.host}]" if ":" in args.host else args.host)
        return hosts
    for pattern in args.allowed_hosts:
        name = pattern.removeprefix("*.") if pattern != "*" else "x"
        if not name or any(c in name for c in "*/ \t@?#") or (":" in name and not
                                                              name.startswith("[")):
            raise LanternError(f"--allowed_hosts takes host names without a port ('localhost', "
                               f"'[::1]', '*.example.com' or '*'; got {pattern!r})")
    return [pattern.lower() for pattern in args.allowed_hosts]


def check_address(host: str, port: int) -> None:
    """Fail with one line, before loading any model, when the address cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise LanternError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lantern.device import pick_device
    from lantern.serve import ModelRegistry, create_app, load_served_model
    from lantern.serve.app import LOOPBACK_HOSTS
    from lantern.serve.metrics import ServerMetrics

    if not 0 <= args.port <= 65535:
        raise LanternError(f"--port must be in 0..65535 (got {args.port})")
    api_key = args.api_key if args.api_key is not None else os.environ.get("LANTERN_API_KEY")
    if api_key is not None and not api_key.strip():
        raise LanternError("--api_key (or $LANTERN_API_KEY) must not be empty")
    limits = ServeLimits(**typed_settings(args, ServeLimits))
    hosts = allowed_hosts(args, LOOPBACK_HOSTS)
    specs = model_specs(args)
    check_address(args.host, args.port)
    device = pick_device(args.device)
    metrics = ServerMetrics()
    served = [load_served_model(name, path, device, limits, metrics) for name, path in specs]
    app = create_app(ModelRegistry(served), limits, api_key, metrics, hosts)
    if not is_loopback(args.host):
        print(f"lantern: warning: listening on {args.host}, reachable from other machines"
              + ("" if api_key else " by anyone (no --api_key)")
              + f"; requests must name one of: {', '.join(hosts)} (--allowed_hosts)",
              file=sys.stderr)
    for m in served:
        print(f"serving {m.name!r} from {m.path} ({m.context_length}-token context)", file=sys.stderr)
    print(f"playground and API on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
