"""Phase 3 GRPO: the objective on a toy with a known optimum, and the pipeline loop."""

from __future__ import annotations

import pytest
import torch

from lantern.errors import LanternError
from lantern.trm.compressor import CompressorConfig, load_compressor, train_compressor
from lantern.trm.datagen import DatagenConfig, generate_pairs
from lantern.trm.grpo import GRPOConfig, group_advantages, grpo_objective, train_grpo
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.problems import synthetic_problems, write_problems
from lantern.trm.training import TRMTrainConfig, load_trm, train_trm


def toy_run(steps: int, kl_coef: float = 0.0, best: int = 3) -> torch.Tensor:
    """A 5-armed bandit: reward 1 for one arm. GRPO must find it (the known optimum)."""
    torch.manual_seed(0)
    logits = torch.zeros(5, requires_grad=True)
    reference = torch.zeros(5)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        with torch.no_grad():
            old = torch.log_softmax(logits, -1)
            arms = torch.multinomial(old.exp(), 4 * 8, replacement=True)  # 4 problems x G=8
        rewards = (arms == best).float().view(4, 8)
        adv = group_advantages(rewards).flatten()
        for _ in range(2):
            new = torch.log_softmax(logits, -1)
            loss = grpo_objective(new[arms], old[arms], adv, clip=0.2, kl_coef=kl_coef,
                                  logp_ref=torch.log_softmax(reference, -1)[arms])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return torch.softmax(logits.detach(), -1)


def test_grpo_finds_the_rewarded_arm():
    probs = toy_run(80)
    assert probs[3] > 0.95


def test_kl_penalty_holds_the_policy_near_the_reference():
    free, held = toy_run(40), toy_run(40, kl_coef=5.0)
    assert held[3] < free[3]
    assert held[3] > 0.2  # still moves towards the reward


def test_advantages_and_clipping():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    torch.testing.assert_close(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-4, rtol=0)
    assert adv[1].abs().max() == 0  # a uniform group teaches nothing
    new = torch.tensor([0.5, -0.5], requires_grad=True)  # ratios e^0.5 (above 1.2), e^-0.5
    grpo_objective(new, torch.zeros(2), torch.tensor([1.0, -1.0]), clip=0.2).backward()
    assert new.grad.abs().max() == 0  # both outside the clip range in the advantage's direction


def test_grpo_pipeline_runs_and_saves_loadable_checkpoints(tmp_path):
    write_problems(tmp_path / "train.jsonl", synthetic_problems("add", 1, 40))
    train_host(HostTrainConfig(problems=str(tmp_path / "train.jsonl"), output_dir=str(tmp_path / "h"),
                               hidden_size=32, num_heads=2, num_blocks=1, mlp_hidden_size=64,
                               max_steps=2, batch_size=4, eval_interval=2, eval_problems=2,
                               device="cpu"), quiet=True)
    train_compressor(CompressorConfig(host=str(tmp_path / "h"), output_dir=str(tmp_path / "c"),
                                      stage="1b", data=str(tmp_path / "train.jsonl"), d_compressed=8,
                                      num_epochs=1), quiet=True)
    generate_pairs(DatagenConfig(host=str(tmp_path / "h"), dataset=str(tmp_path / "train.jsonl"),
                                 output_dir=str(tmp_path / "p"), num_samples=40), quiet=True)
    train_trm(TRMTrainConfig(data=str(tmp_path / "p"), compressor_checkpoint=str(tmp_path / "c/stage1b_best"),
                             output_dir=str(tmp_path / "t"), num_epochs=1, n_latent_steps=1,
                             n_deep_recursions=1, n_supervision_steps=2, device="cpu"), quiet=True)
    cfg = GRPOConfig(host=str(tmp_path / "h"), trm_checkpoint=str(tmp_path / "t"),
                     compressor_checkpoint=str(tmp_path / "c/stage1b_best"),
                     dataset=str(tmp_path / "train.jsonl"), output_dir=str(tmp_path / "g"),
                     num_samples=8, group_size=4, problems_per_step=4, max_new_tokens=4,
                     learning_rate=1e-2, kl_coef=0.1)
    summary = train_grpo(cfg, quiet=True)
    assert summary["steps"] == 2
    trm, _ = load_trm(tmp_path / "g" / "trm.pt")
    before, _ = load_trm(tmp_path / "t")
    changed = any(not torch.equal(a, b) for a, b in zip(trm.state_dict().values(),
                                                          before.state_dict().values(), strict=True))
    comp, info = load_compressor(tmp_path / "g" / "compressor")
    assert info["grpo"] and comp.hidden_size == 32
    assert changed or summary["reward_first_quarter"] in (0.0, 1.0)  # uniform groups give no update
    with pytest.raises(LanternError, match="group_size"):
        GRPOConfig(group_size=1)
