"""Runs `lantern` command lines for the bad-input drill, each in a fork of one warm process.

Starting Python, torch and every command module takes about five seconds of CPU, which would be
most of the drill's time if each case paid it. This process pays it once, then forks a child per
command line: the child changes to the case's directory, takes the case's files as its standard
streams, sets its file-size limit, and runs `lantern` exactly as `python -m lantern ARGV` does
(argument bytes decoded as the interpreter decodes them, a traceback for an uncaught exception,
exit handlers run). No torch work happens here before a fork, so the children start with no
thread pool to inherit.

Protocol: one JSON object a line on standard input (`argv_b64`, `cwd`, `stdin`, `stdout`,
`stderr`, `max_file_bytes`, `timeout`), one JSON object a line back (`returncode`).
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import os
import resource
import signal
import sys
import time
import traceback

from lantern.cli.main import build_parser, main


def _reopen_standard_streams(template: dict[str, io.TextIOWrapper]) -> None:
    """Fresh stream objects on fds 0-2 (the inherited ones hold this process's buffers)."""
    for fd, (name, mode) in enumerate((("stdin", "rb"), ("stdout", "wb"), ("stderr", "wb"))):
        old = template[name]
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "rb" else io.BufferedWriter(raw)
        setattr(sys, name, io.TextIOWrapper(buffered, encoding=old.encoding, errors=old.errors,
                                            line_buffering=old.line_buffering))


def _child(job: dict, streams: dict[str, io.TextIOWrapper]) -> None:
    code = 1
    try:
        os.chdir(job["cwd"])
        for fd, key, flags in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY),
                               (2, "stderr", os.O_WRONLY)):
            target = os.open(job[key], flags)
            os.dup2(target, fd)
            os.close(target)
        _reopen_standard_streams(streams)
        if job.get("max_file_bytes"):
            limit = job["max_file_bytes"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        argv = [os.fsdecode(base64.b64decode(a)) for a in job["argv_b64"]]
        sys.argv = ["lantern", *argv]
        try:
            code = main(argv)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code if isinstance(code, int) else 1)


def serve() -> None:
    build_parser()  # imports every command module once, before any fork
    streams = {"stdin": sys.stdin, "stdout": sys.stdout, "stderr": sys.stderr}
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job, streams)
        deadline = time.monotonic() + job.get("timeout", 240)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
