"""kill -9 drill: SIGKILL `lantern train` at random moments, resume each time, and check that
nothing is lost beyond the last checkpoint and that the end result is bit-identical.

    .venv/bin/python scripts/kill_drill.py --kills 20

Half the kills land at a random moment of training, half the moment a checkpoint's temporary
file appears (during the write; one checkpoint is let through first so the run progresses).
After every kill the drill reads every checkpoint_step_N.pt back, measures
the steps lost (last step logged before the kill minus the newest checkpoint's step), and
restarts with --resume_from. Finally it compares the weights with an uninterrupted run of the
same settings.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from lantern.checkpoint import load_checkpoint, step_checkpoints
from lantern.errors import LanternError

SETTINGS = ["--config", "nano", "--seq_length", "32", "--batch_size", "8", "--corpus_chars", "50000",
            "--dropout", "0.1", "--eval_interval", "50", "--eval_batches", "2", "--sample_length", "8",
            "--num_samples", "0", "--log_interval", "1", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(out: Path, steps: int, save_interval: int, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "lantern", "train", *SETTINGS, "--max_steps", str(steps),
           "--save_interval", str(save_interval), "--output_dir", str(out)]
    return [*cmd, "--resume_from", str(out)] if resume else [*cmd, "--overwrite"]


class Run:
    """A training process whose stdout is followed for the last step it reported."""

    def __init__(self, cmd: list[str], start_step: int) -> None:
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.last_step = start_step
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("Iter"):
                self.last_step = int(line.split()[1].split("/")[0])


def writing_checkpoint(out: Path, since: float) -> bool:
    """A checkpoint's temporary file, begun by this process, is on disk."""
    if not out.exists():
        return False
    for path in out.glob(".checkpoint_step_*"):
        try:
            if path.stat().st_mtime >= since:
                return True
        except FileNotFoundError:  # renamed into place meanwhile
            pass
    return False


def wait_until(run: Run, condition, poll: float = 0.01, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.proc.poll() is None and not condition():
        time.sleep(poll)


def choose_moment(run: Run, out: Path, start: int, at_write: bool, save_interval: int,
                  rng: random.Random) -> None:
    """Return when the run should be killed."""
    if at_write:  # let one checkpoint complete (progress), then catch the next write
        wait_until(run, lambda: newest_step(out) > start)
        wait_until(run, lambda: writing_checkpoint(out, run.started), poll=0.001)
    else:  # a random moment within the next two save intervals of training
        target = start + rng.randint(1, 2 * save_interval)
        wait_until(run, lambda: run.last_step >= target)
        wait_until(run, lambda: False, timeout=rng.uniform(0.0, 0.05))


def newest_step(out: Path) -> int:
    saved = step_checkpoints(out) if out.exists() else []
    return saved[-1][0] if saved else 0


def unreadable(out: Path) -> list[str]:
    bad = []
    for _, path in step_checkpoints(out):
        try:
            load_checkpoint(path)
        except LanternError as exc:
            bad.append(f"{path.name}: {exc}")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--save_interval", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill_drill_"))
    try:
        print(f"reference: {args.steps} uninterrupted steps...", flush=True)
        reference = work / "reference"
        done = subprocess.run(command(reference, args.steps, args.save_interval, False), env=ENV,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:]
        out = work / "drill"
        losses, bad_files, during_write, starts = [], [], 0, 0
        for kill in range(args.kills):
            start = newest_step(out)
            run = Run(command(out, args.steps, args.save_interval, start > 0), start)
            starts += 1
            choose_moment(run, out, start, kill % 2 == 1, args.save_interval, rng)
            if run.proc.poll() is not None:
                print(f"kill {kill + 1}: the run finished first; stopping the drill early")
                break
            hit_write = writing_checkpoint(out, run.started)
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait()
            run.reader.join(timeout=5)
            during_write += hit_write
            newest = newest_step(out)
            lost = max(0, run.last_step - newest)
            losses.append(lost)
            bad = unreadable(out)
            bad_files += bad
            print(f"kill {kill + 1:>2}: at step {run.last_step:>4}{' (during a write)' if hit_write else ''}"
                  f" | newest checkpoint {newest:>4} | steps lost {lost:>2} | unreadable {len(bad)}",
                  flush=True)
        final = Run(command(out, args.steps, args.save_interval, newest_step(out) > 0), 0)
        final.proc.wait()
        final.reader.join(timeout=5)
        assert final.proc.returncode == 0, "".join(final.output[-20:])
        a = load_checkpoint(reference / "final_model.pt")["model_state_dict"]
        b = load_checkpoint(out / "final_model.pt")["model_state_dict"]
        exact = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        print()
        print(f"kills survived:          {len(losses)} ({during_write} during a checkpoint write)")
        print(f"unreadable checkpoints:  {len(bad_files)} (target 0)")
        print(f"steps lost per kill:     max {max(losses, default=0)}, "
              f"mean {sum(losses) / max(1, len(losses)):.1f} (save_interval {args.save_interval})")
        print(f"final weights bit-identical to an uninterrupted run: {'yes' if exact else 'NO'}")
        return 0 if exact and not bad_files and max(losses, default=0) <= args.save_interval else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
