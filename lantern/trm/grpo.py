"""Phase 3: group-relative policy optimisation (GRPO) of the TRM and the compressor; host frozen.

The policy is the host answering with the predicted state in its latent slot:
pi(answer | problem) = host(answer | `question <think> <lat>=decompress(TRM(compress(pre))) </think>`),
so the log-probability of a sampled answer is differentiable in the TRM and compressor weights.
Per problem, G answers are sampled; reward = exact answer; advantages are the rewards normalised
within the group; the loss is PPO's clipped surrogate on the sequence log-probability ratio,
plus an optional KL penalty to the starting policy (the k3 estimator). TRL's GRPOTrainer only
trains causal LMs, hence this short loop.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from pathlib import Path

import torch
from torch import nn

from lantern.checkpoint import save_checkpoint
from lantern.device import pick_device
from lantern.errors import LanternError
from lantern.models.lantern_model import IGNORE_INDEX
from lantern.training.loop import (
    RunSettings,
    TrainingLoop,
    Updates,
    constant_schedule,
    restore_random,
    start_run,
)
from lantern.training.optim import make_optimizer
from lantern.training.precision import Precision
from lantern.training.settings import OptimizerSection, PrecisionSection
from lantern.trm.compressor import (
    DimensionCompressor,
    check_compressor_fits,
    load_compressor,
    save_compressor,
)
from lantern.trm.host import LanternHost, load_host
from lantern.trm.host_training import thinking_targets
from lantern.trm.model import SequenceTRM
from lantern.trm.problems import Problem, load_problems
from lantern.trm.settings import GRPOConfig
from lantern.trm.training import batch_inputs, load_trm

COMMAND = "lantern trm grpo"

def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(P, G) rewards -> advantages normalised within each group (0 where a group is uniform)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def grpo_objective(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                   clip: float, kl_coef: float = 0.0, logp_ref: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Clipped surrogate (to minimise) over sampled sequences, plus kl_coef x KL to a reference."""
    ratio = torch.exp(logp_new - logp_old)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    loss = -surrogate.mean()
    if kl_coef > 0 and logp_ref is not None:
        delta = logp_ref - logp_new
        loss = loss + kl_coef * (torch.exp(delta) - delta - 1).mean()
    return loss


class SlotPolicy:
    """The frozen host's latent slot, fed by a TRM + compressor passed in per call (the trained
    pair or the frozen reference)."""

    def __init__(self, host: LanternHost, problems: list[Problem]) -> None:
        self.host = host
        self.segments = [host.segments(p) for p in problems]
        self.pre = host.states_of([s.context for s in self.segments], -1)
        prompts = [host.slot_prompt(s) for s in self.segments]
        self.prompts = [ids for ids, _ in prompts]
        self.slot_positions = [positions for _, positions in prompts]

    def states(self, trm: SequenceTRM, comp: DimensionCompressor, rows: list[int]) -> torch.Tensor:
        device = self.host.device
        x, padding = batch_inputs([comp.compress(self.pre[i].to(device)) for i in rows],
                                  list(range(len(rows))), device)
        return comp.decompress(trm(x, padding))

    def logprobs(self, states: torch.Tensor, rows: list[int], answers: list[list[int]]
                 ) -> torch.Tensor:
        """Sum of log-probabilities of each answer's tokens after its slot prompt."""
        seqs = [self.prompts[i] + a for i, a in zip(rows, answers, strict=True)]
        ids, targets = thinking_targets(seqs, [len(self.prompts[i]) for i in rows],
                                        self.host.tokenizer.pad_id)
        device = states.device
        index = torch.tensor([self.slot_positions[i] for i in rows], device=device)
        if states.dim() == 2:  # one slot
            index = index[:, 0]
        logits = self.host.model.lm_head(self.host.forward(ids.to(device), states, index)).float()
        targets = targets.to(device)
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp_min(0)[..., None])[..., 0]
        return (picked * (targets != IGNORE_INDEX)).sum(dim=1)


class GRPOPhase:
    """GRPO as a phase of the training loop: a step samples G answers for each of a few
    problems with the policy as it stands, then makes `iterations` updates on them."""

    def __init__(self, policy: SlotPolicy, trm: SequenceTRM, comp: DimensionCompressor,
                 reference: tuple[SequenceTRM, DimensionCompressor], problems: list[Problem],
                 cfg: GRPOConfig) -> None:
        self.policy, self.trm, self.comp, self.reference = policy, trm, comp, reference
        self.problems, self.cfg = problems, cfg
        self.model = nn.ModuleList([trm, comp])
        self.per_epoch = math.ceil(len(problems) / cfg.problems_per_step)
        self.rng = random.Random(cfg.seed)
        self.order: list[int] = []
        self.rewards: list[float] = []

    def step(self, index: int, updates: Updates) -> list[dict]:
        cfg, policy, host = self.cfg, self.policy, self.policy.host
        position = index % self.per_epoch
        if position == 0:
            self.order = list(range(len(self.problems)))
            self.rng.shuffle(self.order)
        rows = self.order[position * cfg.problems_per_step:(position + 1) * cfg.problems_per_step]
        group_rows = [i for i in rows for _ in range(cfg.group_size)]
        with torch.no_grad():
            states = policy.states(self.trm, self.comp, rows).repeat_interleave(cfg.group_size, dim=0)
            index_of_slots = [policy.slot_positions[i] for i in group_rows]
            answers = host.complete([policy.prompts[i] for i in group_rows], cfg.max_new_tokens,
                                    states, index_of_slots, temperature=cfg.temperature,
                                    seed=cfg.seed + index * len(group_rows))
            logp_old = policy.logprobs(states, group_rows, answers)
            logp_ref = policy.logprobs(policy.states(*self.reference, rows).repeat_interleave(
                cfg.group_size, dim=0), group_rows, answers) if cfg.kl_coef > 0 else None
        reward = torch.tensor([float(host.answer_of(a) == self.problems[i].answer)
                               for i, a in zip(group_rows, answers, strict=True)])
        advantages = group_advantages(reward.view(len(rows), cfg.group_size)).flatten()
        for _ in range(cfg.iterations):
            states = policy.states(self.trm, self.comp, rows).repeat_interleave(cfg.group_size, dim=0)
            logp_new = policy.logprobs(states, group_rows, answers)
            loss = updates(grpo_objective(logp_new, logp_old, advantages.to(logp_new.device),
                                          cfg.clip, cfg.kl_coef, logp_ref))
        self.rewards.append(reward.mean().item())
        return [{"step": index + 1, "reward": self.rewards[-1], "loss": loss}]

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "order": self.order, "rewards": self.rewards}

    def load_state_dict(self, state: dict) -> None:
        restore_random(self.rng, state["rng"])
        self.order, self.rewards = list(state["order"]), list(state["rewards"])


def run_settings(cfg: GRPOConfig, quiet: bool = False) -> RunSettings:
    return RunSettings(Path(cfg.output_dir), COMMAND, cfg.save_interval, cfg.resume_from,
                       cfg.overwrite, ("trm.pt", "compressor.safetensors"), quiet=quiet)


def train_grpo(cfg: GRPOConfig, quiet: bool = False) -> dict:
    """Train (or continue); writes `trm.pt` and `compressor.*` and a log of the sampled reward
    per step."""
    resume = start_run(run_settings(cfg))
    device = pick_device(cfg.device)
    host = load_host(cfg.host, device)
    if not isinstance(host, LanternHost):
        raise LanternError("GRPO samples through the latent slot: --host must be a LANTERN host "
                           "trained by `lantern trm host`")
    host.require_slot()
    trm, trm_data = load_trm(cfg.trm_checkpoint, device)
    comp, comp_info = load_compressor(cfg.compressor_checkpoint)
    check_compressor_fits(comp_info, host.hidden_size, host.fingerprint, host.num_layers, "--host")
    if trm_data.get("host_fingerprint") != host.fingerprint:
        raise LanternError("the TRM was trained on pairs of another host than --host")
    if trm.cfg.num_slots != host.num_slots:
        raise LanternError(f"the TRM predicts {trm.cfg.num_slots} slot(s), the host has "
                           f"{host.num_slots}")
    comp.to(device)
    problems = load_problems(cfg.dataset, cfg.num_samples)
    torch.manual_seed(cfg.seed)
    reference = copy.deepcopy(trm).requires_grad_(False), copy.deepcopy(comp).requires_grad_(False)
    trm.train().requires_grad_(True)
    comp.train().requires_grad_(True)
    phase = GRPOPhase(SlotPolicy(host, problems), trm, comp, reference, problems, cfg)
    optimizer = make_optimizer(phase.model, OptimizerSection(cfg.learning_rate, weight_decay=0.0,
                                                             beta2=0.999))
    loop = TrainingLoop(phase, run_settings(cfg, quiet), cfg.num_epochs * phase.per_epoch, optimizer,
                        Precision(PrecisionSection(cfg.device, "float32")),
                        constant_schedule(cfg.learning_rate), 1.0, dataclasses.asdict(cfg), resume)
    loop.run()
    out = Path(cfg.output_dir)
    trm.eval()
    comp.eval()
    weights = {k: v.detach().cpu() for k, v in trm.state_dict().items()}
    meta = {k: v for k, v in trm_data.items() if k not in ("model_state_dict", "raw_state_dict",
                                                          "format_version")}
    save_checkpoint(out / "trm.pt", {**meta, "model_state_dict": weights, "raw_state_dict": weights,
                                     "ema": False, "grpo_config": dataclasses.asdict(cfg)})
    save_compressor(out / "compressor", comp, {**comp_info, "grpo": True})
    rewards = phase.rewards
    first = rewards[:max(1, len(rewards) // 4)]
    last = rewards[-max(1, len(rewards) // 4):]
    return {"steps": loop.step, "reward_first_quarter": sum(first) / len(first),
            "reward_last_quarter": sum(last) / len(last)}
