"""The host LLM behind one small interface: token ids of a problem, hidden states at a layer, and
(for LANTERN hosts trained by `lantern trm host`) a latent slot that takes a supplied state.

Layers are numbered as Hugging Face numbers `hidden_states`: 0 is the input embedding, i the
output of layer (block) i, and the last one (also -1) the final normalized state, the one the
language-model head reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from lantern.checkpoint import load_model, save_checkpoint
from lantern.errors import LanternError
from lantern.fileio import atomic_write, atomic_write_text
from lantern.generation.core import generate_stream
from lantern.generation.settings import GenerationConfig
from lantern.tokenizers import TOKENIZER_FILE, CharTokenizer
from lantern.tokenizers.base import SPECIAL_TOKENS, THINK
from lantern.trm.problems import STEP_SEPARATOR, Problem

END_THINK = "</think>"
LATENT = "<lat>"
HOST_SPECIAL_TOKENS = (*SPECIAL_TOKENS, END_THINK, LATENT)
SLOT_FILE = "latent_slot.safetensors"
HOST_INFO_FILE = "trm_host.json"


@dataclass
class Segments:
    """A problem's token ids in four parts; `context` ends with the `<think>` token(s).
    `separators` are the indices in `thinking` of the last token of each `;` between reasoning
    steps (none for thinking of one step)."""

    context: list[int]
    thinking: list[int]
    close: list[int]
    answer: list[int]  # answer tokens, then end-of-sequence when the host has one
    separators: list[int] = field(default_factory=list)

    @property
    def full(self) -> list[int]:
        return self.context + self.thinking + self.close + self.answer

    @property
    def post_index(self) -> int:
        """Position of the last `</think>` token: its state predicts the first answer token."""
        return len(self.context) + len(self.thinking) + len(self.close) - 1

    @property
    def num_steps(self) -> int:
        return len(self.separators) + 1

    @property
    def boundaries(self) -> list[int]:
        """Positions in `full` of the token that closes each reasoning step: its `;`, and
        `</think>` for the last step (so one step has the single boundary `post_index`)."""
        return [len(self.context) + i for i in self.separators] + [self.post_index]

    @property
    def no_think(self) -> list[int]:
        return self.context + self.close + self.answer

    def with_slots(self, replaced: int, latent_id: int) -> tuple[list[int], list[int]]:
        """`question <think> <lat>*j [steps j+1.. of the thinking] </think> answer` for j =
        `replaced` steps, and the slots' positions (slot k stands for boundary k)."""
        if not 1 <= replaced <= self.num_steps:
            raise LanternError(f"{replaced} latent slots for a problem of {self.num_steps} "
                               "reasoning steps")
        rest = self.thinking[self.separators[replaced - 1] + 1:] if replaced < self.num_steps else []
        ids = self.context + [latent_id] * replaced + rest + self.close + self.answer
        return ids, list(range(len(self.context), len(self.context) + replaced))


def host_tokenizer(problems: list[Problem]) -> CharTokenizer:
    """A character vocabulary for the problems, with `</think>` and `<lat>` as single tokens."""
    chars = {c for p in problems for c in p.question + p.thinking + p.answer}
    return CharTokenizer(sorted(chars), special_tokens=HOST_SPECIAL_TOKENS, byte_fallback=False)


class LatentSlot(nn.Module):
    """The `<lat>` position's input: its token embedding plus a learned projection of a state."""

    def __init__(self, state_size: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(state_size, hidden_size)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.proj(state)


class Host:
    """What every phase needs of a host model."""

    hidden_size: int
    num_layers: int
    eos_id: int | None
    model: nn.Module
    context_length: int | None = None  # the most tokens it reads; None where it names no limit
    num_slots: int = 1  # K latent slots, one per reasoning step (1: the thinking is one step)

    def check_length(self, ids: torch.Tensor) -> None:
        """Refuse, in one line, rows longer than the host reads (its position table, or the
        context it was trained for, ends there)."""
        if self.context_length is not None and ids.shape[1] > self.context_length:
            raise LanternError(f"a sequence of {ids.shape[1]} tokens is longer than the host's "
                               f"{self.context_length}-token context (longer problems or text than "
                               "it was trained for?)")

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def think_ids(self) -> tuple[list[int], list[int]]:
        raise NotImplementedError

    def hidden_states(self, ids: torch.Tensor, layer: int) -> torch.Tensor:
        """(B, L, D) states at `layer` for right-padded ids (causal, so padding never leaks)."""
        raise NotImplementedError

    def resolve_layer(self, layer: int) -> int:
        resolved = self.num_layers + 1 + layer if layer < 0 else layer
        if not 0 <= resolved <= self.num_layers:
            raise LanternError(f"--layer {layer} is outside this host's layers 0..{self.num_layers}")
        return resolved

    def segments(self, problem: Problem) -> Segments:
        """The problem's ids. With K > 1 slots the thinking is encoded step by step with the
        `;` between, so the step boundaries are exact token positions whatever the tokenizer
        merges; a host of one slot reads the whole thinking as one step."""
        think, close = self.think_ids()
        answer = self.encode(problem.answer) + ([self.eos_id] if self.eos_id is not None else [])
        context = self.encode(problem.question) + think
        if self.num_slots == 1:
            return Segments(context, self.encode(problem.thinking), close, answer)
        thinking, separators = [], []
        for i, step in enumerate(problem.steps):
            if i:
                thinking += self.encode(STEP_SEPARATOR)
                separators.append(len(thinking) - 1)
            thinking += self.encode(step)
        return Segments(context, thinking, close, answer, separators)

    @property
    def fingerprint(self) -> str:
        """Identity of the weights (a hash of the input embedding), stored with derived data."""
        weight = self.model.get_input_embeddings().weight if hasattr(
            self.model, "get_input_embeddings") else self.model.get_embedding_matrix()
        data = weight.detach().float().cpu().contiguous().numpy().tobytes()
        return hashlib.sha256(data).hexdigest()[:16]

    @torch.no_grad()
    def states_of(self, sequences: list[list[int]], layer: int, batch_size: int = 16
                  ) -> list[torch.Tensor]:
        """Per-sequence (L_i, D) states at `layer`, in batches of right-padded rows."""
        out: list[torch.Tensor] = []
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start:start + batch_size]
            ids = pad_right(chunk, 0)
            states = self.hidden_states(ids, layer).float()
            out.extend(states[row, :len(seq)].cpu() for row, seq in enumerate(chunk))
        return out


def pad_right(sequences: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return ids


class LanternHost(Host):
    """A LANTERN run directory; with `trm_host.json` beside it, also its latent slot."""

    def __init__(self, model, tokenizer, slot: LatentSlot | None = None, num_slots: int = 1) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.slot = slot
        self.num_slots = num_slots  # K: one slot per reasoning step it was trained to stand for
        self.hidden_size = model.config.hidden_size
        self.num_layers = model.config.num_blocks
        self.eos_id = tokenizer.eos_id
        self.latent_id = tokenizer.token_to_id(LATENT)
        self.end_think_id = tokenizer.token_to_id(END_THINK)
        self.context_length = model.config.context_length

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def think_ids(self) -> tuple[list[int], list[int]]:
        if self.end_think_id is None or self.tokenizer.think_id is None:
            raise LanternError("this host's vocabulary has no <think> and </think> tokens; train "
                               "one with `lantern trm host`")
        return [self.tokenizer.think_id], [self.end_think_id]

    def slot_sequence(self, seg: Segments, replaced: int | None = None) -> tuple[list[int], list[int]]:
        """The problem with its first `replaced` reasoning steps in latent slots, and the slots'
        positions; by default all K: `question <think> <lat>*K </think> answer`, for which the
        thinking itself is not needed."""
        self.require_slot()
        if replaced is None or replaced == self.num_slots:
            ids = seg.context + [self.latent_id] * self.num_slots + seg.close + seg.answer
            return ids, list(range(len(seg.context), len(seg.context) + self.num_slots))
        if seg.num_steps != self.num_slots:
            raise LanternError(f"this host has {self.num_slots} latent slot(s), one per reasoning "
                               f"step, but a problem has {seg.num_steps} step(s) (steps are "
                               "separated by ';' in the thinking)")
        return seg.with_slots(replaced, self.latent_id)

    def slot_prompt(self, seg: Segments) -> tuple[list[int], list[int]]:
        """`question <think> <lat>*K </think>`: where the answer is generated from the slots."""
        ids, positions = self.slot_sequence(seg)
        return ids[:len(ids) - len(seg.answer)], positions

    def require_slot(self) -> LatentSlot:
        if self.slot is None or self.latent_id is None:
            raise LanternError("this host has no latent slot; train one with `lantern trm host`")
        return self.slot

    def embed(self, ids: torch.Tensor, position_ids: torch.Tensor, slot_states: torch.Tensor | None,
              slot_index: torch.Tensor | None) -> torch.Tensor:
        """Input embeddings, with projected states added at the slots: `slot_states` (B, D) at
        `slot_index` (B,), or (B, S, D) at (B, S) where an index of -1 marks no slot."""
        h = self.model.embed(ids, position_ids)
        if slot_states is not None:
            if slot_states.dim() == 2:
                slot_states, slot_index = slot_states[:, None], slot_index[:, None]
            used = slot_index >= 0
            rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(slot_index)[used]
            positions = slot_index[used]
            extra = self.require_slot()(slot_states[used].to(h.dtype))
            h = h.index_put((rows, positions), h[rows, positions] + extra)
        return h

    def forward(self, ids: torch.Tensor, slot_states: torch.Tensor | None = None,
                slot_index: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalized states (B, L, C) of a right-padded batch."""
        self.check_length(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        h = self.embed(ids, positions, slot_states, slot_index)
        return self.model.transformer(h, position_ids=positions)

    def hidden_states(self, ids: torch.Tensor, layer: int) -> torch.Tensor:
        layer = self.resolve_layer(layer)
        if layer == self.num_layers:
            return self.forward(ids)
        captured: list[torch.Tensor] = []
        if layer == 0:
            self.check_length(ids)
            positions = torch.arange(ids.shape[1], device=ids.device)[None]
            return self.model.embed(ids, positions)
        block = self.model.transformer.blocks[layer - 1]
        handle = block.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.forward(ids)
        finally:
            handle.remove()
        return captured[-1]  # a recursive block runs several times; its last output

    def answer_of(self, tokens: list[int]) -> str:
        """The text after `</think>` (or all of it), up to end-of-sequence."""
        if self.end_think_id in tokens:
            tokens = tokens[tokens.index(self.end_think_id) + 1:]
        if self.eos_id in tokens:
            tokens = tokens[:tokens.index(self.eos_id)]
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    @torch.no_grad()
    def complete(self, prompts: list[list[int]], max_new_tokens: int,
                 slot_states: torch.Tensor | list[torch.Tensor] | None = None,
                 slot_index: list[int] | list[list[int]] | None = None,
                 stop_id: int | None = None, batch_size: int = 64, temperature: float = 0.0,
                 seed: int | None = None) -> list[list[int]]:
        """Continuations (greedy, or sampled at `temperature`; row i seeded `seed + i`), each
        ending with `stop_id` when it came, from the decoding core. With `slot_states`, prompt
        i's `<lat>` at `slot_index[i]` (one position, or a list for K slots) gets its token
        embedding plus the projected state(s) `slot_states[i]` ((D,) or (K, D))."""
        stop_id = self.eos_id if stop_id is None else stop_id
        out: list[list[int]] = [[] for _ in prompts]
        room = self.model.config.context_length
        for start in range(0, len(prompts), batch_size):
            rows = list(range(start, min(start + batch_size, len(prompts))))
            embeds = None
            if slot_states is not None:
                table = self.model.get_embedding_matrix()
                embeds = []
                for i in rows:
                    e = table[torch.tensor(prompts[i], device=self.device)].clone()
                    e[slot_index[i]] += self.require_slot()(slot_states[i].to(self.device, e.dtype))
                    embeds.append(e)
            # Never past the context: a position table has no row for it.
            budget = max(1, min(max_new_tokens, room - max(len(prompts[i]) for i in rows)))
            config = GenerationConfig(max_new_tokens=budget, temperature=temperature,
                                      seed=None if seed is None else seed + start)
            stream = generate_stream(self.model, None, [prompts[i] for i in rows], config,
                                     stop_ids=() if stop_id is None else (stop_id,),
                                     inputs_embeds=embeds)
            for row, event in stream:
                out[rows[row]].append(event.token)
        return out

    @property
    def device(self) -> torch.device:
        return self.model.get_embedding_matrix().device

    def save_run(self, directory: Path, train_config: dict, step: int) -> None:
        """A run directory every loader accepts: `final_model.pt`, `config.json`,
        `tokenizer.json`, and the latent slot with `trm_host.json`."""
        config = self.model.config
        save_checkpoint(directory / "final_model.pt", {
            "config": config.to_dict(), "model_state_dict": self.model.state_dict(),
            "tokenizer": self.tokenizer.to_json(), "train_config": train_config, "step": step})
        atomic_write_text(directory / "config.json", config.to_json() + "\n")
        atomic_write_text(directory / TOKENIZER_FILE, self.tokenizer.to_json())
        self.save_slot(directory, state_layer=config.num_blocks)

    def save_slot(self, directory: Path, state_layer: int) -> None:
        slot = self.require_slot()
        tensors = {k: v.detach().cpu().contiguous() for k, v in slot.state_dict().items()}
        atomic_write(directory / SLOT_FILE, lambda f: f.write(save_safetensors(tensors)))
        info = {"state_layer": state_layer, "state_size": slot.proj.in_features,
                "num_slots": self.num_slots, "latent_token": LATENT, "end_think_token": END_THINK}
        atomic_write_text(directory / HOST_INFO_FILE, json.dumps(info, indent=2) + "\n")


class HFHost(Host):
    """A Hugging Face causal LM in a local directory (hidden states only: no latent slot)."""

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise LanternError(f"cannot load a Hugging Face model from {path}: "
                               f"{str(exc).splitlines()[0][:200]}") from None
        self.model.to(device).eval()
        self.hidden_size = self.model.config.hidden_size
        self.num_layers = self.model.config.num_hidden_layers
        self.eos_id = self.tokenizer.eos_token_id
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def think_ids(self) -> tuple[list[int], list[int]]:
        return self.encode(THINK), self.encode(END_THINK)

    def hidden_states(self, ids: torch.Tensor, layer: int) -> torch.Tensor:
        layer = self.resolve_layer(layer)
        self.check_length(ids)
        device = self.model.get_input_embeddings().weight.device
        out = self.model(input_ids=ids.to(device), output_hidden_states=True)
        return out.hidden_states[layer]


def is_hf_model_dir(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def load_host(path: str | Path, device: str | torch.device = "cpu") -> Host:
    """A LANTERN run directory (with its latent slot when it has one) or a local HF model dir."""
    path = Path(path)
    if not path.exists():
        raise LanternError(f"host not found: {path}")
    if path.is_dir() and is_hf_model_dir(path):
        return HFHost(path, device)
    model, tokenizer, _ = load_model(path, device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    directory = path if path.is_dir() else path.parent
    slot, num_slots = None, 1
    if (directory / HOST_INFO_FILE).is_file():
        info = json.loads((directory / HOST_INFO_FILE).read_text())
        slot = LatentSlot(int(info["state_size"]), model.config.hidden_size)
        slot.load_state_dict(load_safetensors((directory / SLOT_FILE).read_bytes()))
        slot.to(device).eval().requires_grad_(False)
        num_slots = int(info.get("num_slots", 1))
    return LanternHost(model, tokenizer, slot, num_slots)
