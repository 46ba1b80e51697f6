"""Files that survive crashes: permissions from the user's umask without touching the process
umask, replacements that a killed earlier replacement cannot block, and `--overwrite` that
deletes only what LANTERN wrote."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lantern import fileio
from lantern.errors import LanternError
from lantern.export.output import check_output, write_directory, write_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_new_files_get_the_permissions_the_umask_implies(tmp_path, umask_027):
    fileio.atomic_write_text(tmp_path / "a.txt", "hello")
    write_file(tmp_path / "b.gguf", lambda p: p.write_bytes(b"gguf"))
    write_directory(tmp_path / "export", lambda d: (d / "c.json").write_text("{}"))
    assert mode(tmp_path / "a.txt") == 0o640
    assert mode(tmp_path / "b.gguf") == 0o640
    assert mode(tmp_path / "export") == 0o750


def test_writing_never_changes_the_process_umask(tmp_path, monkeypatch):
    """Setting the umask to read it is a race: a thread creating a file meanwhile would get
    world-writable permissions."""
    def umask(mask: int) -> int:
        raise AssertionError(f"os.umask({mask:#o}) called")

    monkeypatch.setattr(os, "umask", umask)
    fileio.atomic_write_text(tmp_path / "a.txt", "hello")
    write_directory(tmp_path / "export", lambda d: (d / "c.json").write_text("{}"))
    assert (tmp_path / "a.txt").read_text() == "hello"


def fill(text: str):
    return lambda directory: (directory / "weights.txt").write_text(text)


def test_a_leftover_of_a_killed_replacement_never_blocks_the_next(tmp_path):
    """A replacement killed between its two renames leaves `.NAME.old`; every later one used to
    fail with "Directory not empty: NAME" (the wrong directory named)."""
    out = tmp_path / "export"
    write_directory(out, fill("one"))
    (tmp_path / ".export.old").mkdir()
    (tmp_path / ".export.old" / "weights.txt").write_text("stale")
    write_directory(out, fill("two"))
    assert (out / "weights.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_overwrite_replaces_only_lantern_outputs(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(LanternError, match="not a LANTERN output"):
        check_output(mine, overwrite=True)
    with pytest.raises(LanternError, match="not a LANTERN output"):
        write_directory(mine, fill("x"))
    assert (mine / "thesis.tex").read_text() == "years of work"

    exported = tmp_path / "exported"
    write_directory(exported, fill("one"))
    check_output(exported, overwrite=True)  # marked by LANTERN
    old_run = tmp_path / "old_run"  # a run from before the marker, known by its files
    old_run.mkdir()
    (old_run / "train_config.json").write_text("{}")
    check_output(old_run, overwrite=True)
    check_output(tmp_path / "empty", overwrite=True)

    home = tmp_path / "home"
    home.mkdir()
    fileio.make_output_directory(home, "run")  # even marked, a home directory stays
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(LanternError, match="home directory"):
        check_output(home, overwrite=True)
    with pytest.raises(LanternError, match="root directory"):
        check_output(Path("/"), overwrite=True)
