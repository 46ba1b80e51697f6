"""Peak memory and time of `lantern train` on a large text file: does the data path stay flat?

For each size a text file is generated (the shared Shakespeare and TinyStories files when
present, else the built-in story corpus, repeated with a numbered heading per copy so copies
differ), then `lantern train` runs on it in a fresh child process for each tokenizer: a tiny
model for a few steps, so what is measured is the data path (tokenizer training, encoding,
the validation split). "peak RSS" is the child's maximum resident size (from wait4), "peak
anon" its largest private memory sampled from /proc (resident size less memory-mapped file
pages, which the kernel may drop at will); "data s" is the time until the trainer announces
its data, "total s" the whole run.

    nice -n 19 python benchmarks/data_scale.py --mb 100 1000 --tokenizer char bpe
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_FLAGS = ["--config", "gpt-64", "--seq_length", "64", "--batch_size", "4",
               "--max_steps", "5", "--eval_interval", "5", "--eval_batches", "1",
               "--num_samples", "0", "--log_interval", "5", "--save_interval", "1000",
               "--device", "cpu", "--dtype", "float32", "--overwrite"]


def base_text() -> str:
    """About 2 MB of varied text: the shared sample files, else generated stories."""
    files = [SHARED / name for name in ("tinyshakespeare.txt", "tinystories_valid_sample.txt")]
    texts = [f.read_text(encoding="utf-8") for f in files if f.is_file()]
    if not texts:
        from lantern.data.stories import build_corpus

        texts = ["\n".join(build_corpus(2_000_000, seed=0)) + "\n"]
    return "\n".join(texts) + "\n"


def build_text(path: Path, megabytes: int) -> Path:
    """`megabytes` MB of text: the base text repeated, each copy under its own heading."""
    block = base_text()
    target = megabytes * 1_000_000
    with path.open("w", encoding="utf-8") as f:
        written, copy = 0, 0
        while written < target:
            part = f"Part {copy}.\n{block}"
            f.write(part)
            written += len(part.encode("utf-8"))
            copy += 1
    return path


class AnonPeak(threading.Thread):
    """The child's largest private (anonymous) resident memory, sampled from /proc: unlike the
    peak RSS it leaves out memory-mapped token pages, which the kernel can drop at any time."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status, self.peak_kb, self.stop = Path(f"/proc/{pid}/status"), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                fields = dict(line.split(":", 1) for line in self.status.read_text().splitlines())
            except (OSError, ValueError):
                return
            self.peak_kb = max(self.peak_kb, int(fields.get("RssAnon", "0 kB").split()[0]))


def run_train(text: Path, tokenizer: str, work: Path) -> dict:
    """One `lantern train` in a fresh process: its peak resident memory (from wait4, this
    child alone) and when its data was ready."""
    env = {**os.environ, "LANTERN_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lantern", "train", "--data_path", str(text),
           "--tokenizer", tokenizer, "--output_dir", str(work / f"run-{tokenizer}"), *TRAIN_FLAGS]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    anon = AnonPeak(proc.pid)
    anon.start()
    data_s, lines = None, []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if data_s is None and line.startswith("Data:"):
            data_s = time.perf_counter() - start
    anon.stop.set()
    anon.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    total_s = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write("".join(lines[-20:]))
    return {"ok": proc.returncode == 0, "peak_mb": usage.ru_maxrss / 1024,
            "anon_mb": anon.peak_kb / 1024, "data_s": data_s, "total_s": total_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[100, 1000],
                        help="text sizes in megabytes")
    parser.add_argument("--tokenizer", nargs="+", default=["char", "bpe"], choices=["char", "bpe"])
    parser.add_argument("--work_dir", default=None, help="where the text and tokens go [a temp dir]")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        work = Path(tmp)
        for mb in args.mb:
            text = build_text(work / f"text-{mb}mb.txt", mb)
            for tokenizer in args.tokenizer:
                result = run_train(text, tokenizer, work)
                rows.append((mb, tokenizer, result))
                data_s = f"{result['data_s']:.1f}" if result["data_s"] is not None else "-"
                print(f"{mb} MB {tokenizer}: peak {result['peak_mb']:.0f} MB (anonymous "
                      f"{result['anon_mb']:.0f} MB), data {data_s} s, "
                      f"total {result['total_s']:.1f} s{'' if result['ok'] else ' (FAILED)'}",
                      file=sys.stderr, flush=True)
            text.unlink()
            for cached in (work / "cache" / "tokens").glob("*"):
                cached.unlink()
    print(f"| {'text':>7} | {'tokenizer':9} | {'peak RSS':>9} | {'peak anon':>9} | {'data s':>7} "
          f"| {'total s':>7} |")
    print(f"|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    for mb, tokenizer, r in rows:
        data_s = f"{r['data_s']:.1f}" if r["data_s"] is not None else "-"
        peak = f"{r['peak_mb']:.0f} MB" if r["ok"] else "failed"
        print(f"| {mb:>4} MB | {tokenizer:9} | {peak:>9} | {r['anon_mb']:>6.0f} MB | {data_s:>7} "
              f"| {r['total_s']:>7.1f} |")


if __name__ == "__main__":
    main()
