"""A successful `lantern push`, against a stand-in for the Hub's HTTP API on 127.0.0.1: the
real huggingface_hub client makes its real requests (who am I, create the repository, ask how
each file uploads, commit), and the stand-in keeps what the commit carried, so every file can
be checked byte for byte."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest

from lantern.cli.main import main

REPO = "someone/tiny-model"


class HubStandIn(BaseHTTPRequestHandler):
    """Just the endpoints `HfApi.whoami`, `create_repo` and `upload_folder` call. Every file is
    declared a regular (inline) upload, so its bytes arrive base64-encoded in the commit."""

    server: HubServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        if self.path == "/api/whoami-v2":
            self.reply({"type": "user", "name": "someone", "orgs": [],
                        "auth": {"accessToken": {"role": "write"}}})
        else:
            self.reply({"error": f"not in the stand-in: GET {self.path}"}, 404)

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        base = f"/api/models/{REPO}"
        if self.path == "/api/repos/create":
            request = json.loads(self.body())
            self.server.created.append(request)
            self.reply({"url": f"{self.server.url}/{REPO}"})
        elif self.path.startswith(f"{base}/preupload/"):
            files = json.loads(self.body())["files"]
            self.reply({"files": [{"path": f["path"], "uploadMode": "regular",
                                   "shouldIgnore": False} for f in files]})
        elif self.path.startswith(f"{base}/commit/"):
            for line in self.body().decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    self.server.messages.append(item["value"]["summary"])
                elif item["key"] == "file":
                    value = item["value"]
                    assert value["encoding"] == "base64"
                    self.server.files[value["path"]] = base64.b64decode(value["content"])
                else:
                    self.server.other_operations.append(item)
            self.reply({"commitUrl": f"{self.server.url}/{REPO}/commit/{'1' * 40}",
                        "commitOid": "1" * 40, "success": True})
        else:
            self.reply({"error": f"not in the stand-in: POST {self.path}"}, 404)


class HubServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubStandIn)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict] = []
        self.messages: list[str] = []
        self.files: dict[str, bytes] = {}
        self.other_operations: list[dict] = []


@pytest.fixture
def hub(monkeypatch):
    server = HubServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(hub_constants, "ENDPOINT", server.url)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in_token")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def export_like(directory: Path) -> dict[str, bytes]:
    """An export directory with binary and text files, one in a subfolder, plus the hidden
    leftovers a push must not send."""
    files = {"model.safetensors": bytes(range(256)) * 40, "config.json": b'{"a": 1}\n',
             "tokenizer.json": "{\"ő\": 1}".encode(), "gguf/model-f16.gguf": b"GGUF\x00\x01" * 100}
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    (directory / ".lantern-output").write_text("{}")
    (directory / ".model.safetensors.1a2b.tmp").write_bytes(b"half")
    return files


def test_push_uploads_every_file_of_a_directory_byte_for_byte(hub, tmp_path, capsys):
    files = export_like(tmp_path / "export")
    assert main(["push", str(tmp_path / "export"), "--repo", REPO, "--private",
                 "--message", "first upload"]) == 0
    assert hub.files == files  # every file, its exact bytes, and nothing hidden
    assert hub.messages == ["first upload"] and not hub.other_operations
    [created] = hub.created
    assert created["name"] == "tiny-model" and created["visibility"] == "private"
    assert capsys.readouterr().out.strip() == f"uploaded {tmp_path / 'export'} to {hub.url}/{REPO}"


def test_push_of_a_file_or_a_checkpoint_stem_sends_only_those_files(hub, tmp_path):
    export_like(tmp_path)
    (tmp_path / "trm.pt").write_bytes(b"\x80\x02weights")
    assert main(["push", str(tmp_path / "trm.pt"), "--repo", REPO]) == 0
    assert hub.files == {"trm.pt": b"\x80\x02weights"}
    assert hub.created[0]["visibility"] == "public"
    hub.files.clear()
    stem = {"stage1b_best.safetensors": b"\x00tensor", "stage1b_best.json": b"{}"}
    for name, data in {**stem, "stage1b_final.json": b"[]"}.items():
        (tmp_path / name).write_bytes(data)
    assert main(["push", str(tmp_path / "stage1b_best"), "--repo", REPO]) == 0
    assert hub.files == stem
