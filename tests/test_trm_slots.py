"""LLM-TRM along a trajectory: step-aligned latent slots in the host, trajectory datagen, a TRM
supervised slot by slot, and the evaluation modes that read them."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
import torch.nn.functional as F

from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.models.lantern_model import IGNORE_INDEX
from lantern.trm.compressor import CompressorConfig, train_compressor
from lantern.trm.datagen import DatagenConfig, generate_pairs, pairs_from_outputs
from lantern.trm.evaluate import EvalConfig, Evaluator
from lantern.trm.host import LATENT, load_host
from lantern.trm.host_training import (
    HostTrainConfig,
    host_losses,
    steps_in_slots,
    thinking_targets,
    train_host,
)
from lantern.trm.model import SequenceTRM, TRMConfig
from lantern.trm.problems import is_held_out, read_problems, synthetic_problems, write_problems
from lantern.trm.training import (
    TRMTrainConfig,
    digits_to_answer,
    load_trm,
    result_digits,
    train_trm,
    validate,
)

K = 3  # 2-digit multiplication: two partial products and one sum


def make_host(root, name, slots):
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / name),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=3, batch_size=4, eval_interval=3, eval_problems=2,
                               warmup_steps=1, slots=slots, device="cpu"), quiet=True)
    host = load_host(root / name)
    host.slot.proj.weight.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    return host


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Problems, a 3-slot host and a 1-slot host on them, and the 3-slot host's trajectories."""
    root = tmp_path_factory.mktemp("slots")
    write_problems(root / "train.jsonl", synthetic_problems("mul", 2, 48))
    write_problems(root / "test.jsonl", synthetic_problems("mul", 2, 8, split="test"))
    make_host(root, "host", K)
    make_host(root, "host1", 1)
    train_compressor(CompressorConfig(host=str(root / "host"), output_dir=str(root / "comp"),
                                      stage="1b", data=str(root / "train.jsonl"), d_compressed=8,
                                      num_epochs=1, num_samples=48), quiet=True)
    generate_pairs(DatagenConfig(host=str(root / "host"), dataset=str(root / "train.jsonl"),
                                 output_dir=str(root / "pairs"), num_samples=48, checkpoint_every=20),
                   quiet=True)
    return root


def decode(host, ids):
    return host.tokenizer.decode(ids)  # special tokens written out


def test_split_is_on_unordered_pairs():
    """A pair and its mirror always fall on the same side, so no held-out product is a training
    product with its operands swapped."""
    assert all(is_held_out(a, b) == is_held_out(b, a) for a in range(100) for b in range(100))
    assert 0 < sum(is_held_out(a, b) for a in range(100) for b in range(100)) < 10_000
    train = {tuple(sorted(map(int, re.findall(r"\d+", p.question))))
             for p in synthetic_problems("mul", 2, 3000)}
    test = {tuple(sorted(map(int, re.findall(r"\d+", p.question))))
            for p in synthetic_problems("mul", 2, 300, split="test")}
    assert not train & test


def test_steps_and_their_results_are_long_multiplication():
    for digits in (2, 3):
        for p in synthetic_problems("mul", digits, 20):
            a, b = map(int, re.findall(r"\d+", p.question))
            partials = [a * (b // 10**i % 10) * 10**i for i in range(digits)]
            sums = [sum(partials[:i + 1]) for i in range(1, digits)]
            results = [int(step.rpartition("=")[2]) for step in p.steps]
            assert len(p.steps) == 2 * digits - 1
            assert results == partials + sums and results[-1] == a * b == int(p.answer)


def test_step_boundaries_are_the_separators_and_the_close(root):
    host = load_host(root / "host")
    one = load_host(root / "host1")
    for p in read_problems(root / "test.jsonl"):
        seg = host.segments(p)
        assert [decode(host, [seg.full[b]]) for b in seg.boundaries] == [";", ";", "</think>"]
        for k, b in enumerate(seg.boundaries[:-1]):  # everything up to step k+1, then its ';'
            assert decode(host, seg.full[:b + 1]) == p.question + "<think>" + ";".join(
                p.steps[:k + 1]) + ";"
        single = one.segments(p)  # one slot: the whole thinking is one step, as before slots
        assert single.thinking == one.encode(p.thinking) and single.boundaries == [single.post_index]


def test_mixed_rows_replace_the_first_steps_with_slots(root):
    host = load_host(root / "host")
    p = read_problems(root / "test.jsonl")[0]
    seg = host.segments(p)
    for j in range(1, K + 1):
        ids, positions = host.slot_sequence(seg, j)
        rest = ";".join(p.steps[j:])
        # slot k stands for step k and its closing ';' (the boundary whose state it carries)
        expected = p.question + "<think>" + LATENT * j + rest + "</think>" + p.answer + "<eos>"
        assert decode(host, ids) == expected
        assert [decode(host, [ids[i]]) for i in positions] == [LATENT] * j
        assert positions == list(range(len(seg.context), len(seg.context) + j))


def test_all_slots_fraction_draws_every_step_in_slots_that_often():
    rng, plain = random.Random(5), random.Random(5)
    assert [steps_in_slots(rng, K, 0.0) for _ in range(50)] == [plain.randint(1, K) for _ in range(50)]
    assert {steps_in_slots(rng, K, 1.0) for _ in range(50)} == {K}
    draws = [steps_in_slots(rng, K, 0.5) for _ in range(3000)]
    assert set(draws) == {1, 2, K}
    assert abs(draws.count(K) / len(draws) - (0.5 + 0.5 / K)) < 0.03  # 2/3 with every step in slots


def test_slots_add_their_states_where_they_are(root):
    """(B, S, D) states at (B, S) positions, -1 for none: the same as adding each projected
    state to its embedding by hand."""
    host = load_host(root / "host")
    seg = host.segments(read_problems(root / "test.jsonl")[0])
    rows = [host.slot_sequence(seg, 3), host.slot_sequence(seg, 1)]
    ids = torch.tensor([rows[0][0] + [0] * (len(rows[1][0]) - len(rows[0][0])), rows[1][0]])
    states = torch.randn(2, 3, host.hidden_size, generator=torch.Generator().manual_seed(0))
    index = torch.tensor([rows[0][1], rows[1][1] + [-1, -1]])
    got = host.forward(ids, states, index)
    positions = torch.arange(ids.shape[1])[None]
    h = host.model.embed(ids, positions).clone()
    for k, p in enumerate(rows[0][1]):
        h[0, p] += host.slot(states[0, k])
    h[1, rows[1][1][0]] += host.slot(states[1, 0])
    torch.testing.assert_close(got, host.model.transformer(h, position_ids=positions))


def test_one_slot_host_loss_is_the_single_slot_formula(root):
    """K = 1: full-thinking loss plus the `question <think> <lat> </think> answer` loss with the
    `</think>` state in the slot, written out independently."""
    host = load_host(root / "host1")
    problems = read_problems(root / "train.jsonl")[:6]
    batch = [host.segments(p) for p in problems]
    no_think = [False, True, False, False, True, False]
    loss, _ = host_losses(host, batch, no_think, 0.7, torch.device("cpu"))
    pad = host.tokenizer.pad_id
    rows = [s.no_think if skip else s.full for s, skip in zip(batch, no_think, strict=True)]
    ids, targets = thinking_targets(rows, [len(s.context) for s in batch], pad)
    h = host.forward(ids)
    full = F.cross_entropy(host.model.lm_head(h).flatten(0, 1), targets.flatten(),
                           ignore_index=IGNORE_INDEX)
    kept = [i for i, skip in enumerate(no_think) if not skip]
    states = torch.stack([h[i, batch[i].post_index] for i in kept])
    seqs = [batch[i].context + [host.latent_id] + batch[i].close + batch[i].answer for i in kept]
    slot_at = [len(batch[i].context) for i in kept]
    ids, targets = thinking_targets(seqs, [i + 1 for i in slot_at], pad)
    logits = host.model.lm_head(host.forward(ids, states, torch.tensor(slot_at)))
    slot = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, full + 0.7 * slot)


def test_k_slot_host_loss_counts_every_token_after_the_slots(root):
    """Mixed rows of different j, split into groups inside: the loss is the mean over all
    target tokens of one batch with every row in it."""
    host = load_host(root / "host")
    problems = read_problems(root / "train.jsonl")[:4]
    batch = [host.segments(p) for p in problems]
    replaced = [1, 3, 2, 3]
    loss, metrics = host_losses(host, batch, [False] * 4, 1.0, torch.device("cpu"), replaced=replaced)
    h = host.forward(thinking_targets([s.full for s in batch], [1] * 4, host.tokenizer.pad_id)[0])
    width = max(len(host.slot_sequence(s, j)[0]) for s, j in zip(batch, replaced, strict=True))
    ids = torch.zeros(4, width, dtype=torch.long)
    targets = torch.full((4, width), IGNORE_INDEX)
    slot_states = torch.zeros(4, K, host.hidden_size)
    index = torch.full((4, K), -1)
    for r, (s, j) in enumerate(zip(batch, replaced, strict=True)):
        seq, positions = host.slot_sequence(s, j)
        ids[r, :len(seq)] = torch.tensor(seq)
        targets[r, positions[-1]:len(seq) - 1] = torch.tensor(seq[positions[-1] + 1:])
        slot_states[r, :j] = h[r, s.boundaries[:j]]
        index[r, :j] = torch.tensor(positions)
    logits = host.model.lm_head(host.forward(ids, slot_states, index))
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    assert metrics["slot_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_trajectory_targets_equal_a_lone_forward_at_the_boundaries(root):
    host = load_host(root / "host")
    pairs = generate_pairs(DatagenConfig(host=str(root / "host"), dataset=str(root / "train.jsonl"),
                                         output_dir=str(root / "pairs"), num_samples=48,
                                         checkpoint_every=20), quiet=True)[0]
    assert pairs.num_slots == K and pairs.trajectory.shape == (48, K, host.hidden_size)
    separator, close = host.tokenizer.token_to_id(";"), host.end_think_id
    for i, p in enumerate(read_problems(root / "train.jsonl")[:8]):
        seq = host.encode(p.question) + [host.tokenizer.think_id] + host.encode(p.thinking) + \
            [close] + host.encode(p.answer) + [host.eos_id]
        marks = [t for t, token in enumerate(seq) if token in (separator, close)]
        h = host.model.transformer(host.model.embed(torch.tensor([seq]), torch.arange(len(seq))[None]),
                                   position_ids=torch.arange(len(seq))[None])[0]
        torch.testing.assert_close(pairs.trajectory[i], h[marks])
        a, b = map(int, re.findall(r"\d+", p.question))
        assert pairs.step_results[i] == [str(a * (b % 10)), str(a * (b // 10) * 10), str(a * b)]
    digits = result_digits(pairs.step_results)
    first = pairs.step_results[0]
    assert digits[0].tolist() == [[int(c) for c in r.zfill(digits.shape[-1])] for r in first]


def test_generated_trajectories_need_every_step(root):
    """Generated thinking with a step missing has no boundary for a slot: it is dropped."""
    host = load_host(root / "host")
    problems = read_problems(root / "test.jsonl")[:3]
    outputs = []
    for i, p in enumerate(problems):
        seg = host.segments(p)
        thinking = seg.thinking if i != 1 else host.encode(";".join(p.steps[1:]))
        outputs.append(thinking + seg.close + seg.answer)
    pairs, counts = pairs_from_outputs(host, problems, outputs, -1, 4)
    assert counts == {"attempted": 3, "kept": 2, "wrong": 1, "unclosed": 0}
    seg = host.segments(problems[2])
    h = host.states_of([seg.full], -1)[0]
    torch.testing.assert_close(pairs.trajectory[1], h[seg.boundaries])
    assert pairs.step_results[1] == [s.rpartition("=")[2] for s in problems[2].steps]


def test_evaluation_runs_every_supervision_step():
    """Along a trajectory no row halts, whatever its halting head says: the slots are those of
    running all N steps by hand, slot k from the last step of its group."""
    torch.manual_seed(0)
    cfg = TRMConfig(d_model=8, n_layers=1, n_heads=2, n_latent_steps=1, n_deep_recursions=1,
                    n_supervision_steps=6, num_slots=3, result_digits=2)
    model = SequenceTRM(cfg).eval()
    with torch.no_grad():
        model.halt_head.bias.fill_(100.0)  # "stop now" at every step
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x, padding = torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.bool)
    with torch.no_grad():
        c = model.start(x, padding)
        expected = []
        for step in range(6):
            c, pred, _ = model.deep_recursion(c, step // 2)
            if step % 2:
                expected.append(pred)
        got, used = model.predict(x, padding, halt_at=0.5)
    torch.testing.assert_close(got, torch.stack(expected, dim=1))
    assert used.tolist() == [6, 6]
    torch.testing.assert_close(model(x, padding), got)  # the differentiable forward agrees


def test_digit_answers():
    assert digits_to_answer(torch.tensor([0, 1, 9, 3, 8]), 4) == "1938"
    assert digits_to_answer(torch.tensor([2, 3, 8]), 4) == "0238"
    assert result_digits([["238", "1700"], ["5", "60"]]).tolist() == [
        [[0, 2, 3, 8], [1, 7, 0, 0]], [[0, 0, 0, 5], [0, 0, 6, 0]]]
    assert result_digits([["x", "1"]]) is None


def test_mixer_core_reads_only_real_positions():
    """The MLP-mixer TRM pads every input to its fixed length with the reasoning token last: a
    question scored alone equals the same question in a batch whose padding holds garbage."""
    torch.manual_seed(0)
    cfg = TRMConfig(d_model=8, n_layers=2, n_heads=2, n_latent_steps=2, n_deep_recursions=1,
                    n_supervision_steps=3, num_slots=3, core="mlp", max_length=6)
    model = SequenceTRM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    short, long = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    batch = torch.cat([torch.cat([short, torch.randn(1, 2, 8) * 5], dim=1), long])
    padding = torch.tensor([[False] * 3 + [True] * 2, [False] * 5])
    with torch.no_grad():
        alone = model.predict(short, torch.zeros(1, 3, dtype=torch.bool))[0]
        together = model.predict(batch, padding)[0]
        longer = model.predict(torch.randn(1, 6, 8), torch.zeros(1, 6, dtype=torch.bool))[0]
    torch.testing.assert_close(together[:1], alone)
    assert not torch.allclose(together[1:], alone) and longer.shape == alone.shape
    with pytest.raises(LanternError, match="longer than the 6"):
        model.predict(torch.randn(1, 7, 8), torch.zeros(1, 7, dtype=torch.bool))


@pytest.mark.parametrize("core", ["attention", "mlp"])
def test_trajectory_trm_trains_and_every_mode_reads_it(root, tmp_path, core):
    summary = train_trm(TRMTrainConfig(
        data=str(root / "pairs"), compressor_checkpoint=str(root / "comp" / "stage1b_best"),
        host=str(root / "host"), output_dir=str(tmp_path / "trm"), batch_size=16, num_epochs=2,
        n_latent_steps=1, n_deep_recursions=1, n_supervision_steps=K, answer_loss_from=0.5,
        core=core, device="cpu"), quiet=True)
    assert summary["digit_loss"] > 0 and summary["answer_loss"] > 0 and len(summary["val_slot_cosine"]) == K
    trm, data = load_trm(tmp_path / "trm")
    assert trm.cfg.num_slots == K and trm.cfg.result_digits == 4 and trm.cfg.core == core
    assert data["train_config"]["use_halting"] is False
    evaluator = Evaluator(EvalConfig(host=str(root / "host"), dataset=str(root / "test.jsonl"),
                                     trm_checkpoint=str(tmp_path / "trm"),
                                     compressor_checkpoint=str(root / "comp" / "stage1b_best"),
                                     num_samples=4, max_new_tokens=8, bootstrap=20))
    assert "trm_digits" in evaluator.modes and "oracle_compressed" in evaluator.modes
    report = evaluator.run()
    for mode in ("oracle", "trm", "mean", "zero"):  # the K slots count as generated positions
        assert report["modes"][mode]["generated_tokens"] >= K + 1
    answers, _, _ = evaluator.run_mode("trm_digits")
    states, digits, _ = evaluator.predicted_states()
    assert answers == [digits_to_answer(d, 4) for d in digits]
    # the held-out answers through the slots agree with greedy decoding from every K slot
    full, _, _ = evaluator.run_mode("trm")
    val = validate(trm, evaluator.comp, _prepared(root, evaluator), [0, 1, 2, 3], 4, K, None,
                   torch.device("cpu"))
    assert len(val["val_slot_cosine"]) == K
    assert all(a is None or len(a) <= 8 for a in full)


def test_answer_loss_waits_for_its_share_of_training(root, tmp_path):
    """`answer_loss_from`: no answer loss in the first part of training, then at the last step."""
    def answer_loss(start):
        return train_trm(TRMTrainConfig(
            data=str(root / "pairs"), compressor_checkpoint=str(root / "comp" / "stage1b_best"),
            host=str(root / "host"), output_dir=str(tmp_path / str(start)), batch_size=16,
            num_epochs=2, n_latent_steps=1, n_deep_recursions=1, n_supervision_steps=K,
            answer_loss_from=start, device="cpu"), quiet=True)["answer_loss"]
    assert answer_loss(0.99) == 0 and answer_loss(0.6) > 0


def _prepared(root, evaluator):
    from lantern.trm.datagen import load_pairs
    from lantern.trm.training import prepare
    return prepare(load_pairs(root / "pairs"), evaluator.comp, 0.5, 0)


def test_bad_trajectory_settings_are_one_line(root, tmp_path, capsys):
    def refused(argv, words):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lantern: error:") and all(w in err[0] for w in words), err

    refused(["trm", "host", "--problems", str(root / "train.jsonl"), "--output_dir",
             str(tmp_path / "h"), "--slots", "2", "--max_steps", "1", "--device", "cpu"],
            ["--slots 2", "[3]"])
    refused(["trm", "host", "--problems", str(root / "train.jsonl"), "--output_dir",
             str(tmp_path / "h"), "--all_slots_fraction", "0.5", "--max_steps", "1"],
            ["--all_slots_fraction", "--slots"])
    refused(["trm", "train", "--data", str(root / "pairs"), "--compressor_checkpoint",
             str(root / "comp" / "stage1b_best"), "--output_dir", str(tmp_path / "t"),
             "--use_halting", "--num_epochs", "1", "--device", "cpu"], ["--use_halting"])
    refused(["trm", "train", "--data", str(root / "pairs"), "--compressor_checkpoint",
             str(root / "comp" / "stage1b_best"), "--output_dir", str(tmp_path / "t"),
             "--n_supervision_steps", "4", "--num_epochs", "1", "--device", "cpu"],
            ["--n_supervision_steps 4", "3 latent slots"])
    write_problems(tmp_path / "add.jsonl", synthetic_problems("add", 2, 4))  # 2 steps each
    refused(["trm", "datagen", "--host", str(root / "host"), "--dataset", str(tmp_path / "add.jsonl"),
             "--output_dir", str(tmp_path / "d")], ["3 latent slots", "[2]"])
    assert not (tmp_path / "t" / "best.pt").exists()
    assert json.loads((root / "host" / "trm_host.json").read_text())["num_slots"] == K
