"""`lantern push`: uploads need the Hub; without it (offline, logged out) one clear line."""

from __future__ import annotations

import huggingface_hub.constants as hub
import pytest

from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.export.hub import files_to_upload


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """Any file or directory goes: here a TRM-style checkpoint file and an export directory.
    No token anywhere (environment or token file)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hub, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    (tmp_path / "trm.pt").write_bytes(b"weights")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "config.json").write_text("{}")
    return tmp_path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lantern: error: ")
    return err


@pytest.mark.parametrize("target", ["trm.pt", "export"])
def test_push_without_a_login_is_one_clear_line(payload, target, capsys):
    assert main(["push", str(payload / target), "--repo", "someone/model"]) == 1
    assert "not logged in to the Hugging Face Hub" in error_line(capsys)


def test_push_offline_is_one_clear_line(payload, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    assert main(["push", str(payload / "export"), "--repo", "someone/model"]) == 1
    assert "cannot reach the Hugging Face Hub (offline?)" in error_line(capsys)


def test_push_checks_its_arguments_first(payload, capsys):
    assert main(["push", str(payload / "nothing"), "--repo", "someone/model"]) == 1
    assert "not found" in error_line(capsys)
    assert main(["push", str(payload / "trm.pt"), "--repo", "no-slash"]) == 1
    assert "--repo must look like user/name" in error_line(capsys)


def test_what_each_kind_of_path_uploads(tmp_path):
    """A compressor checkpoint is named by its stem (as `--compressor_checkpoint` takes it):
    both of its files go, and nothing else from that folder."""
    comp = tmp_path / "comp"
    comp.mkdir()
    for name in ("stage1b_best.safetensors", "stage1b_best.json", "stage1b_final.safetensors",
                 "stage1b_final.json"):
        (comp / name).write_text("x")
    assert files_to_upload(comp / "stage1b_best") == (comp, ["stage1b_best.safetensors", "stage1b_best.json"])
    assert files_to_upload(comp / "stage1b_best.json") == (comp, ["stage1b_best.json"])
    assert files_to_upload(comp) == (comp, None)
    (comp / "stage1b_final.json").unlink()
    with pytest.raises(LanternError, match="not found"):
        files_to_upload(comp / "stage1b_final")  # half a checkpoint is not one
