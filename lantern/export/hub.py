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


def push(path: str | Path, repo: str, private: bool = False, message: str | None = None) -> str:
    """Upload a file or directory (an export, a run, a compressor/TRM checkpoint) to `repo`;
    returns the repository URL. Offline or logged out is one clear error."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    path = Path(path)
    if not path.exists():
        raise LanternError(f"not found: {path}")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise LanternError(f"--repo must look like user/name (got {repo!r})")
    api = HfApi()
    message = message or f"Upload {path.name} with lantern push"
    try:
        api.whoami()
        url = api.create_repo(repo, private=private, exist_ok=True)
        if path.is_dir():
            api.upload_folder(folder_path=str(path), repo_id=repo, commit_message=message,
                              ignore_patterns=[".*", "**/.*"])
        else:
            api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo,
                            commit_message=message)
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
