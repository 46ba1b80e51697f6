"""Real corpora as plain text files: TinyStories, Shakespeare, Hungarian Wikipedia, OPUS-100.

Records come from one of three places, and the same code formats and writes them:
- `--source FILE_OR_DIR`: local files (.txt, .jsonl), for offline use and tests;
- Hugging Face `datasets` (streaming for a sample, so only what is needed is read), if installed;
- plain HTTP otherwise: raw text files streamed line by line and stopped as soon as a sample is
  complete, or the Hugging Face rows API page by page. Full downloads land in a local cache
  (`$LANTERN_CACHE/datasets/`) and are read from there next time.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO

from tqdm import tqdm

from lantern.chat_template import example
from lantern.data.text import check_text_file
from lantern.errors import LanternError
from lantern.fileio import atomic_write, json_lines

HF_ROWS_API = "https://datasets-server.huggingface.co/rows"
_ROWS_PAGE = 100
_TIMEOUT_S = 20
_SPACES = re.compile(r"\s+")


def one_line(text: str) -> str:
    """A document on one line: runs of whitespace (newlines included) become one space."""
    return _SPACES.sub(" ", text).strip()


def _story(record: dict) -> str | None:
    return one_line(str(record.get("text", ""))) or None


def _translation(record: dict, index: int) -> str | None:
    pair = record.get("translation", record)
    en, hu = one_line(str(pair.get("en", ""))), one_line(str(pair.get("hu", "")))
    if not en or not hu:
        return None
    if index % 2 == 0:
        return example(en, hu, "Translate English to Hungarian.")
    return example(hu, en, "Translate Hungarian to English.")


@dataclass(frozen=True)
class Corpus:
    name: str
    hf_path: str | None  # Hugging Face dataset id
    hf_config: str | None
    splits: dict[str, str]  # our split name -> the dataset's split name
    format: Callable[[dict, int], str | None]  # record -> one output line (None = skip)
    text_urls: dict[str, str] = field(default_factory=dict)  # raw text files, per split
    text_separator: str | None = None  # between documents in those files; None = one per line
    keep_lines: bool = False  # write the text as it is (Shakespeare), not one document per line


CORPORA = {
    "tinystories": Corpus(
        "tinystories", "roneneldan/TinyStories", None, {"train": "train", "valid": "validation"},
        lambda r, i: _story(r),
        text_urls={
            "train": "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
                     "TinyStories-train.txt",
            "valid": "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
                     "TinyStories-valid.txt",
        },
        text_separator="<|endoftext|>",
    ),
    "shakespeare": Corpus(
        "shakespeare", None, None, {"train": "train"}, lambda r, i: str(r["text"]),
        text_urls={"train": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                            "tinyshakespeare/input.txt"},
        keep_lines=True,
    ),
    "hu_wikipedia": Corpus(
        "hu_wikipedia", "wikimedia/wikipedia", "20231101.hu", {"train": "train"},
        lambda r, i: _story(r),
    ),
    "opus100": Corpus(
        "opus100", "Helsinki-NLP/opus-100", "en-hu",
        {"train": "train", "valid": "validation", "test": "test"}, _translation,
    ),
}
_SPLIT_ALIASES = {"train": ("train",), "valid": ("valid", "validation", "dev"), "test": ("test",)}


def datasets_cache() -> Path:
    return Path(os.environ.get("LANTERN_CACHE", Path.home() / ".cache" / "lantern")) / "datasets"


def _offline(corpus: Corpus, url: str, reason: object) -> LanternError:
    host = urllib.parse.urlparse(url).netloc or url
    return LanternError(
        f"cannot reach {host} to download {corpus.name} ({reason}); download it elsewhere and run "
        f"`lantern data prepare {corpus.name} --source FILE_OR_DIR`"
    )


# --- record sources --------------------------------------------------------------------------


def _text_records(lines: Iterable[str], separator: str | None, keep_lines: bool
                  ) -> Iterator[dict]:
    """Documents of a text stream: split on `separator` lines, or one per line."""
    if keep_lines:
        for line in lines:
            yield {"text": line.rstrip("\n")}
        return
    if separator is None:
        for line in lines:
            if line.strip():
                yield {"text": line}
        return
    buffer: list[str] = []
    for line in lines:
        if separator in line:
            head, _, tail = line.partition(separator)
            buffer.append(head)
            if "".join(buffer).strip():
                yield {"text": "".join(buffer)}
            buffer = [tail]
        else:
            buffer.append(line)
    if "".join(buffer).strip():
        yield {"text": "".join(buffer)}


def _jsonl_records(path: Path) -> Iterator[dict]:
    return json_lines(path, "a JSON object", lambda v: isinstance(v, dict))  # type: ignore[return-value]


def _file_records(path: Path, corpus: Corpus) -> Iterator[dict]:
    check_text_file(path)
    if path.suffix == ".jsonl":
        yield from _jsonl_records(path)
        return
    with path.open("r", encoding="utf-8", errors="strict") as f:
        try:
            yield from _text_records(f, corpus.text_separator, corpus.keep_lines)
        except UnicodeDecodeError:
            raise LanternError(f"data file is not UTF-8 text: {path}") from None


def _local_split_file(source: Path, split: str) -> Path | None:
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in (".txt", ".jsonl"))
    for p in files:
        if any(alias in p.name.lower() for alias in _SPLIT_ALIASES[split]):
            return p
    return files[0] if split == "train" and len(files) == 1 else None  # e.g. input.txt


def _http_lines(url: str, corpus: Corpus) -> Iterator[str]:
    """A remote text file line by line, read as it arrives: closing early reads no more."""
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as exc:
        raise _offline(corpus, url, getattr(exc, "reason", exc)) from None
    with response:
        for raw in response:
            yield raw.decode("utf-8", errors="replace")


def _download(url: str, target: Path, corpus: Corpus) -> Path:
    """Download once into the cache (with a progress bar); later calls reuse the file."""
    if target.is_file():
        return target
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as exc:
        raise _offline(corpus, url, getattr(exc, "reason", exc)) from None
    total = int(response.headers.get("Content-Length") or 0) or None

    def write(f: IO[bytes]) -> None:
        with response, tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {url}",
                            file=sys.stderr, disable=None) as bar:
            while block := response.read(1 << 20):
                f.write(block)
                bar.update(len(block))

    atomic_write(target, write)
    return target


def _rows_api(corpus: Corpus, split: str) -> Iterator[dict]:
    """Hugging Face's rows API, one page at a time: plain HTTP, no `datasets` needed."""
    offset = 0
    while True:
        query = urllib.parse.urlencode({"dataset": corpus.hf_path, "config": corpus.hf_config or
                                        "default", "split": corpus.splits[split],
                                        "offset": offset, "length": _ROWS_PAGE})
        url = f"{HF_ROWS_API}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                page = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _offline(corpus, url, getattr(exc, "reason", exc)) from None
        rows = page.get("rows", [])
        for row in rows:
            yield row.get("row", {})
        if len(rows) < _ROWS_PAGE:
            return
        offset += len(rows)


def _hf_records(corpus: Corpus, split: str, full: bool) -> Iterator[dict] | None:
    """Records through `datasets` (streaming unless the whole split is wanted); None if the
    library is not installed."""
    try:
        import datasets
    except ImportError:
        return None
    try:
        urllib.request.urlopen("https://huggingface.co", timeout=_TIMEOUT_S).close()
        data = datasets.load_dataset(corpus.hf_path, corpus.hf_config, split=corpus.splits[split],
                                     streaming=not full)
    except Exception as exc:  # datasets and urllib raise many kinds; all mean "not reachable"
        raise _offline(corpus, "huggingface.co", type(exc).__name__) from None
    return iter(data)


def remote_records(corpus: Corpus, split: str, full: bool) -> Iterator[dict]:
    url = corpus.text_urls.get(split)
    cached = datasets_cache() / corpus.name / f"{split}.txt"
    if url and (full or cached.is_file()):
        path = _download(url, cached, corpus)
        return _file_records(path, corpus)
    if corpus.hf_path is not None:
        records = _hf_records(corpus, split, full)
        if records is not None:
            return records
    if url:
        return _text_records(_http_lines(url, corpus), corpus.text_separator, corpus.keep_lines)
    if full:
        raise LanternError(f"--full {corpus.name} needs the `datasets` library: "
                           "pip install 'lantern[data]'")
    return _rows_api(corpus, split)


# --- the command -----------------------------------------------------------------------------


@dataclass
class Plan:
    split: str
    path: Path
    count: int | None  # documents (lines for Shakespeare); None = all


def output_name(corpus: Corpus, split: str, sample: bool) -> str:
    if corpus.keep_lines:
        return f"{corpus.name}{'_sample' if sample else ''}.txt"
    return f"{corpus.name}_{split}{'_sample' if sample else ''}.txt"


def plan_outputs(corpus: Corpus, data_dir: Path, sample_size: int | None, valid_size: int | None
                 ) -> list[Plan]:
    sample = sample_size is not None
    plans = [Plan("train", data_dir / output_name(corpus, "train", sample), sample_size)]
    if "valid" in corpus.splits:
        count = None if not sample else (valid_size or max(1, sample_size // 10))
        plans.append(Plan("valid", data_dir / output_name(corpus, "valid", sample), count))
    return plans


def _write_lines(lines: Iterator[str], plan: Plan, name: str) -> int:
    written = 0

    def write(f: IO[bytes]) -> None:
        nonlocal written
        with tqdm(total=plan.count, unit="doc", desc=f"{name} {plan.split}", file=sys.stderr,
                  disable=None) as bar:
            for line in lines:
                f.write((line + "\n").encode("utf-8"))
                written += 1
                bar.update(1)

    atomic_write(plan.path, write)
    return written


def _formatted(records: Iterable[dict], corpus: Corpus, count: int | None) -> Iterator[str]:
    lines = (corpus.format(record, i) for i, record in enumerate(records))
    return islice((line for line in lines if line is not None), count)


def check_valid_size(corpus: Corpus, valid_size: int | None, full: bool, source: Path | None
                     ) -> None:
    """--valid_size is a positive count, and only where a validation file is cut to size."""
    if valid_size is None:
        return
    if valid_size <= 0:
        raise LanternError(f"--valid_size must be positive (got {valid_size})")
    if "valid" not in corpus.splits:
        raise LanternError(f"{corpus.name} has no validation split; --valid_size does not apply")
    if full and not (source is not None and source.is_file()):
        raise LanternError("--full writes the whole validation split; --valid_size applies to "
                           "samples (or to a single --source file)")


def prepare(name: str, data_dir: str | Path = "data", sample_size: int | None = None,
            full: bool = False, valid_size: int | None = None, source: str | Path | None = None,
            overwrite: bool = False) -> list[tuple[Path, int]]:
    """Write the corpus's text files; returns (path, documents written) for each."""
    if name not in CORPORA:
        raise LanternError(f"unknown dataset {name!r}; choose from {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    if full and sample_size is not None:
        raise LanternError("give --sample_size N or --full, not both")
    if sample_size is None and not full:
        raise LanternError("give --sample_size N for a sample, or --full for the whole dataset")
    if sample_size is not None and sample_size <= 0:
        raise LanternError(f"--sample_size must be positive (got {sample_size})")
    source = Path(source) if source is not None else None
    check_valid_size(corpus, valid_size, full, source)
    data_dir = Path(data_dir)
    existing = next(d for d in (data_dir, *data_dir.parents) if d.exists())
    if not existing.is_dir():
        raise LanternError(f"cannot use --data_dir {data_dir}: {existing} is a file, not a directory")
    plans = plan_outputs(corpus, data_dir, sample_size, valid_size)
    for plan in plans:
        if plan.path.exists() and not overwrite:
            raise LanternError(f"{plan.path} already exists; use --overwrite to replace it")
    if source is not None and not source.exists():
        raise LanternError(f"--source not found: {source}")
    results = []
    shared: Iterator[dict] | None = None  # one local file serves every split, in order
    for plan in sorted(plans, key=lambda p: p.split != "valid"):
        if source is None:
            records = remote_records(corpus, plan.split, full)
        elif source.is_dir():
            split_file = _local_split_file(source, plan.split)
            if split_file is None:
                if plan.split != "train":
                    continue
                raise LanternError(
                    f"no file named like '*train*.txt' or '*train*.jsonl' in {source}")
            records = _file_records(split_file, corpus)
        else:
            shared = shared or _file_records(source, corpus)
            records = shared
        count = plan.count
        if plan.split == "valid" and count is None and source is not None and source.is_file():
            count = max(1, (valid_size or 0)) if valid_size else None
            if count is None:
                continue  # a single local file with --full: everything goes to train
        written = _write_lines(_formatted(records, corpus, count), plan, corpus.name)
        if written == 0:
            plan.path.unlink(missing_ok=True)
            raise LanternError(f"{corpus.name} {plan.split}: the source holds no documents")
        results.append((plan.path, written))
    return sorted(results, key=lambda r: str(r[0]))
