"""Uploads to the Hugging Face Hub with `huggingface_hub`: any model file or directory."""

from __future__ import annotations

from pathlib import Path

from lantern.errors import LanternError


def network_errors() -> tuple[type[BaseException], ...]:
    """What a failed connection raises: OSError, and the HTTP client's transport errors
    (huggingface_hub uses httpx2, older releases httpx)."""
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        return (OSError, module.TransportError)
    return (OSError,)


def files_to_upload(path: str | Path) -> tuple[Path, list[str] | None]:
    """(folder, the names in it to upload, None = all of it) for a directory, a file, or a
    checkpoint stem whose `.safetensors` and `.json` belong together (a compressor checkpoint is
    named the way `--compressor_checkpoint` takes it: `comp/stage1b_best`)."""
    path = Path(path)
    if path.is_dir():
        if not any(p.is_file() and not p.name.startswith(".") for p in path.rglob("*")):
            raise LanternError(f"nothing to upload: {path} holds no files")
        return path, None
    if path.is_file():
        return path.parent, [path.name]
    pair = [path.with_name(path.name + suffix) for suffix in (".safetensors", ".json")]
    present = [f for f in pair if f.is_file()]
    if len(present) == 2:
        return path.parent, [f.name for f in pair]
    if present:
        [missing] = [f for f in pair if not f.is_file()]
        raise LanternError(f"not found: {path} ({present[0].name} is there but not "
                           f"{missing.name}: half a checkpoint)")
    raise LanternError(f"not found: {path}")


def push(path: str | Path, repo: str, private: bool = False, message: str | None = None) -> str:
    """Upload a file, a checkpoint stem or a directory (an export, a run, a compressor or TRM
    checkpoint) to `repo` in one commit; returns the repository URL. Offline or logged out is
    one clear error."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    folder, names = files_to_upload(path)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise LanternError(f"--repo must look like user/name (got {repo!r})")
    api = HfApi()
    message = message or f"Upload {Path(path).name} with lantern push"
    try:
        api.whoami()
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message=message,
                          allow_patterns=names, ignore_patterns=[".*", "**/.*"])
    except LocalTokenNotFoundError:
        raise LanternError("not logged in to the Hugging Face Hub; run `hf auth login` or set "
                           "HF_TOKEN") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise LanternError("the Hugging Face Hub refused the token (401); log in again") from None
        raise LanternError(f"the Hugging Face Hub refused the upload: {str(exc).splitlines()[0]}") from None
    except network_errors() as exc:  # offline, DNS, proxy, HF_HUB_OFFLINE
        raise LanternError(f"cannot reach the Hugging Face Hub (offline?): {type(exc).__name__}") from None
    return str(url)
