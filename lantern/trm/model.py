"""SequenceTRM: a tiny recursive network that maps compressed pre-thinking states [L, D'] to a
compressed post-thinking state [D'].

As in the TRM paper (Less is More: Recursive Reasoning with Tiny Networks): a learnable
reasoning token is appended to the input x; two carried streams, the answer y and the latent z,
start from learned vectors; one latent recursion is

    z <- net(z + y + x)   (n times),   y <- net(y + z)

and one deep recursion is T latent recursions of which the first T - 1 run without gradient.
Each supervision step runs one deep recursion from the carried (detached) y, z and reads the
prediction and a halting logit from y at the reasoning token.

Along a trajectory of K latent slots (one per reasoning step of the host's thinking), the N
supervision steps are split into K equal groups: group k predicts slot k (its own output slice,
and optionally the digits of step k's intermediate result through a digit head), and a learned
step embedding tells the shared network which step it is on. K = 1 is the single-state TRM.

The network is a pre-norm transformer encoder, or (`core="mlp"`, the paper's TRM-MLP for short
fixed contexts) an MLP-mixer: a token-mixing MLP across the positions, then a channel MLP.
The mixer sees every input padded to `max_length` positions, with the reasoning token always last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lantern.errors import LanternError, require_positive


@dataclass
class TRMConfig:
    d_model: int = 256  # the compressed state size D' the TRM reads and predicts
    n_layers: int = 2
    n_heads: int = 4
    n_latent_steps: int = 6
    n_deep_recursions: int = 3
    n_supervision_steps: int = 8
    dropout: float = 0.0
    d_hidden: int | None = None  # the width the network works in (None: d_model, no projections)
    num_slots: int = 1  # K states predicted along the trajectory, one per group of N / K steps
    result_digits: int = 0  # R: digits per intermediate result the digit head reads (0: no head)
    core: str = "attention"  # "attention" (a transformer encoder) or "mlp" (an MLP-mixer)
    max_length: int = 0  # the longest input the MLP-mixer reads (its positions are fixed)

    @property
    def width(self) -> int:
        return self.d_hidden or self.d_model

    def __post_init__(self) -> None:
        require_positive(self, "d_model", "n_layers", "n_heads", "n_latent_steps", "n_deep_recursions",
                         "n_supervision_steps")
        if self.d_hidden is not None and self.d_hidden <= 0:
            raise LanternError(f"--d_hidden must be positive (got {self.d_hidden})")
        if self.width % self.n_heads:
            raise LanternError(f"the TRM width {self.width} is not divisible by --n_heads {self.n_heads}")
        require_positive(self, "num_slots")
        if self.core not in ("attention", "mlp"):
            raise LanternError(f"--core must be attention or mlp (got {self.core!r})")
        if self.core == "mlp" and self.max_length <= 0:
            raise LanternError("the MLP-mixer core needs the inputs' longest length (max_length)")
        if self.n_supervision_steps % self.num_slots:
            raise LanternError(f"--n_supervision_steps {self.n_supervision_steps} must be a multiple "
                               f"of the {self.num_slots} latent slots (an equal group of steps per slot)")

    @property
    def steps_per_slot(self) -> int:
        return self.n_supervision_steps // self.num_slots

    def slot_of(self, step: int) -> int:
        """The slot supervision step `step` (from 0) works toward."""
        return step // self.steps_per_slot

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Carry:
    x: torch.Tensor  # (B, L, D') compressed input (the reasoning token is added per step)
    y: torch.Tensor  # (B, L+1, width)
    z: torch.Tensor
    padding: torch.Tensor  # (B, L+1) True where there is no token


@dataclass
class Trajectory:
    slots: torch.Tensor  # (B, K, D') the prediction of each slot
    carry: Carry  # after the last step run


class MixerLayer(nn.Module):
    """One MLP-mixer layer (pre-norm): positions exchange information through an MLP along the
    sequence axis, then each position through a channel MLP. Padded positions are zeroed before
    the token mixing, so they carry nothing into the others."""

    def __init__(self, length: int, width: int, dropout: float) -> None:
        super().__init__()
        self.token_norm, self.channel_norm = nn.RMSNorm(width), nn.RMSNorm(width)
        self.token_mlp = nn.Sequential(nn.Linear(length, 4 * length), nn.GELU(),
                                       nn.Linear(4 * length, length))
        self.channel_mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                         nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        h = self.token_norm(x).masked_fill(padding[..., None], 0.0)
        x = x + self.token_mlp(h.transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.channel_norm(x))


class Mixer(nn.Module):
    """Mixer layers and a final norm, called as the transformer encoder is."""

    def __init__(self, length: int, width: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MixerLayer(length, width, dropout) for _ in range(layers))
        self.norm = nn.RMSNorm(width)

    def forward(self, x: torch.Tensor, src_key_padding_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, src_key_padding_mask)
        return self.norm(x)


class SequenceTRM(nn.Module):
    def __init__(self, cfg: TRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, width = cfg.d_model, cfg.width
        if cfg.core == "mlp":
            self.net = Mixer(cfg.max_length + 1, width, cfg.n_layers, cfg.dropout)
        else:
            layer = nn.TransformerEncoderLayer(width, cfg.n_heads, dim_feedforward=4 * width,
                                               dropout=cfg.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.net = nn.TransformerEncoder(layer, cfg.n_layers, norm=nn.RMSNorm(width),
                                             enable_nested_tensor=False)
        self.input_norm = nn.RMSNorm(d)
        self.input_proj = nn.Linear(d, width) if width != d else nn.Identity()
        self.reasoning_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.y_init = nn.Parameter(torch.zeros(width))
        self.z_init = nn.Parameter(torch.zeros(width))
        self.output = nn.Linear(width, cfg.num_slots * d)  # slot k reads slice k
        nn.init.zeros_(self.output.weight)  # starts at its bias (the caller may set the mean)
        self.halt_head = nn.Linear(width, 1)
        if cfg.num_slots > 1:
            self.step_embedding = nn.Parameter(torch.zeros(cfg.num_slots, width))
        if cfg.result_digits:
            self.digit_head = nn.Linear(width, cfg.num_slots * cfg.result_digits * 10)

    def start(self, x: torch.Tensor, padding: torch.Tensor) -> Carry:
        """x (B, L, D') and its padding mask (B, L) -> the initial carry (the mixer's inputs
        padded to its fixed length)."""
        if self.cfg.core == "mlp":
            extra = self.cfg.max_length - x.shape[1]
            if extra < 0:
                raise LanternError(f"an input of {x.shape[1]} positions is longer than the "
                                   f"{self.cfg.max_length} the MLP-mixer TRM was built for")
            x = F.pad(x, (0, 0, 0, extra))
            padding = F.pad(padding, (0, extra), value=True)
        batch, length, _ = x.shape
        padding = torch.cat([padding, padding.new_zeros(batch, 1)], dim=1)
        y = self.y_init.expand(batch, length + 1, self.cfg.width).contiguous()
        z = self.z_init.expand(batch, length + 1, self.cfg.width).contiguous()
        return Carry(x, y, z, padding)

    def embed_input(self, x: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """Normalized input with the reasoning token appended (built anew in every graph), and
        the step embedding of `slot` along a trajectory."""
        x = self.input_proj(self.input_norm(x))
        x = torch.cat([x, self.reasoning_token.expand(x.shape[0], 1, -1)], dim=1)
        return x + self.step_embedding[slot] if self.cfg.num_slots > 1 else x

    def latent_recursion(self, x: torch.Tensor, c: Carry) -> Carry:
        z = c.z
        for _ in range(self.cfg.n_latent_steps):
            z = self.net(z + c.y + x, src_key_padding_mask=c.padding)
        y = self.net(c.y + z, src_key_padding_mask=c.padding)
        return Carry(c.x, y, z, c.padding)

    def deep_recursion(self, c: Carry, slot: int = 0) -> tuple[Carry, torch.Tensor, torch.Tensor]:
        """(new carry, prediction of `slot` (B, D'), halting logit (B,)); T - 1 recursions
        without grad."""
        with torch.no_grad():
            x = self.embed_input(c.x, slot)
            for _ in range(self.cfg.n_deep_recursions - 1):
                c = self.latent_recursion(x, c)
        c = self.latent_recursion(self.embed_input(c.x, slot), c)
        d = self.cfg.d_model
        return c, self.output(c.y[:, -1])[:, slot * d:(slot + 1) * d], self.halt_head(c.y[:, -1]).squeeze(-1)

    def digit_logits(self, c: Carry, slot: int) -> torch.Tensor:
        """(B, R, 10): the digits of step `slot`'s intermediate result, read from y."""
        r = self.cfg.result_digits
        logits = self.digit_head(c.y[:, -1])[:, slot * r * 10:(slot + 1) * r * 10]
        return logits.unflatten(-1, (r, 10))

    def forward(self, x: torch.Tensor, padding: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """A differentiable prediction after `steps` supervision steps (no halting): the carry
        of the earlier steps is computed without gradient, as in training. Along a trajectory
        (K > 1), every step runs and the result is (B, K, D'): each slot from the last step of
        its group, only the last one with gradient."""
        if self.cfg.num_slots > 1:
            with torch.no_grad():
                early, _ = self.trajectory(x, padding, last=self.cfg.n_supervision_steps - 1)
            c = early.carry
            _, pred, _ = self.deep_recursion(c, self.cfg.num_slots - 1)
            return torch.cat([early.slots[:, :-1], pred[:, None]], dim=1)
        c = self.start(x, padding)
        for _ in range((steps or self.cfg.n_supervision_steps) - 1):
            with torch.no_grad():
                c, _, _ = self.deep_recursion(c)
        return self.deep_recursion(c)[1]

    def trajectory(self, x: torch.Tensor, padding: torch.Tensor, last: int | None = None
                   ) -> tuple[Trajectory, torch.Tensor | None]:
        """Every supervision step, no halting (how a trajectory is evaluated): the K slot
        predictions (B, K, D') and, with a digit head, their digits' logits (B, K, R, 10).
        `last` stops before that step (the carry is then what the step would start from)."""
        c = self.start(x, padding)
        slots = x.new_zeros(x.shape[0], self.cfg.num_slots, self.cfg.d_model)
        digits = [] if self.cfg.result_digits else None
        for step in range(self.cfg.n_supervision_steps if last is None else last):
            slot = self.cfg.slot_of(step)
            c, pred, _ = self.deep_recursion(c, slot)
            slots[:, slot] = pred
            if digits is not None and (step + 1) % self.cfg.steps_per_slot == 0:
                digits.append(self.digit_logits(c, slot))
        return Trajectory(slots, c), torch.stack(digits, dim=1) if digits else None

    @torch.no_grad()
    def predict(self, x: torch.Tensor, padding: torch.Tensor, max_steps: int | None = None,
                halt_at: float | None = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: supervision steps until each row halts (sigmoid(q) > halt_at; None = never)
        or `max_steps`. Returns (prediction (B, D'), steps used per row); along a trajectory,
        every step runs and the prediction is (B, K, D')."""
        if self.cfg.num_slots > 1:
            result, _ = self.trajectory(x, padding)
            return result.slots, torch.full((x.shape[0],), self.cfg.n_supervision_steps,
                                            dtype=torch.long, device=x.device)
        c = self.start(x, padding)
        steps = max_steps or self.cfg.n_supervision_steps
        out = torch.zeros(x.shape[0], self.cfg.d_model, device=x.device)
        used = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(steps):
            c, pred, halt = self.deep_recursion(c)
            out[active] = pred[active].float()
            used += active.long()
            if halt_at is not None:
                active &= torch.sigmoid(halt) <= halt_at
                if not bool(active.any()):
                    break
        return out, used


def halting_loss(halt_logit: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor,
                 bce: bool, threshold: float) -> torch.Tensor:
    """Train the halting head to foresee quality. MSE: sigmoid(q) vs cosine (clamped to [0, 1]);
    BCE: q vs [cosine > threshold]. Targets are detached: halting never pulls the prediction."""
    cosine = F.cosine_similarity(prediction.float(), target.float(), dim=-1).detach()
    if bce:
        return F.binary_cross_entropy_with_logits(halt_logit.float(), (cosine > threshold).float())
    return F.mse_loss(torch.sigmoid(halt_logit.float()), cosine.clamp(0.0, 1.0))


def halting_point(bce: bool, threshold: float) -> float:
    """Where sigmoid(q) means "stop": 0.5 for BCE (q predicts [cosine > threshold]); the
    threshold itself for MSE (sigmoid(q) predicts the cosine)."""
    return 0.5 if bce else threshold
