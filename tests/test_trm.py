"""LLM-TRM: problems, host and latent slot, datagen, and the bad-input paths."""

from __future__ import annotations

import json
import re

import pytest
import torch

from lantern.cli.main import main
from lantern.errors import LanternError
from lantern.trm.datagen import DatagenConfig, generate_pairs, load_pairs, pairs_from_outputs
from lantern.trm.host import load_host
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.problems import is_held_out, read_problems, synthetic_problems, write_problems


def operands(question: str) -> tuple[int, int]:
    a, b = re.findall(r"\d+", question)
    return int(a), int(b)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("trm")
    write_problems(root / "train.jsonl", synthetic_problems("add", 2, 64))
    write_problems(root / "test.jsonl", synthetic_problems("add", 2, 16, split="test"))
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / "host"),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=3, batch_size=4, eval_interval=3, eval_problems=2,
                               warmup_steps=1, device="cpu"), quiet=True)
    return root


def test_problems_are_right_and_splits_disjoint():
    for task, digits, op in (("add", 3, int.__add__), ("mul", 2, int.__mul__)):
        train = synthetic_problems(task, digits, 300)
        test = synthetic_problems(task, digits, 300, split="test")
        pairs_train = {operands(p.question) for p in train}
        pairs_test = {operands(p.question) for p in test}
        assert not pairs_train & pairs_test
        assert all(is_held_out(*ab) for ab in pairs_test)
        for p in train[:50]:
            a, b = operands(p.question)
            assert int(p.answer) == op(a, b)
            if task == "mul":
                assert int(p.thinking.split("=")[-1]) == a * b
    rev = synthetic_problems("add", 3, 20, reverse=True)
    for p in rev:
        a, b = (int(x[::-1]) for x in re.findall(r"\d+", p.question))
        assert int(p.answer[::-1]) == a + b


def test_distinct_draws_every_pair_of_its_split_once_before_any_repeat():
    train_pairs = sum(not is_held_out(a, b) for a in range(10) for b in range(10))
    problems = synthetic_problems("mul", 1, train_pairs + 5, distinct=True)
    pairs = [operands(p.question) for p in problems]
    assert len(set(pairs[:train_pairs])) == train_pairs  # all of them, none twice
    assert not any(is_held_out(*ab) for ab in pairs)
    assert set(pairs[train_pairs:]) <= set(pairs[:train_pairs])


def test_add_thinking_steps_are_column_sums():
    p = synthetic_problems("add", 3, 1)[0]
    a, b = operands(p.question)
    carry = 0
    for i, step in enumerate(p.steps):
        x, y, c, s = map(int, re.findall(r"\d+", step))
        assert (x, y, c) == (a // 10**i % 10, b // 10**i % 10, carry)
        assert s == x + y + c
        carry = s // 10


def test_hidden_post_is_the_state_that_predicts_the_first_answer_token(workdir, tmp_path):
    """The off-by-one: compare with LANTERNModel's own forward over each whole sequence alone."""
    host = load_host(workdir / "host")
    pairs, counts = generate_pairs(DatagenConfig(host=str(workdir / "host"),
                                                 dataset=str(workdir / "test.jsonl"),
                                                 output_dir=str(tmp_path / "p"), batch_size=5,
                                                 checkpoint_every=7, num_samples=16), quiet=True)
    assert counts["kept"] == len(pairs) == 16
    for i, p in enumerate(read_problems(workdir / "test.jsonl")):
        seg = host.segments(p)
        ids = torch.tensor([seg.full])
        k = seg.post_index
        assert seg.full[k] == host.end_think_id and seg.full[k + 1] == host.encode(p.answer)[0]
        logits, _ = host.model(ids)
        torch.testing.assert_close(host.model.lm_head(pairs.hidden_post[i]), logits[0, k])
        assert len(pairs.hidden_pre[i]) == len(seg.context)
        assert pairs.num_thinking_tokens[i] == len(seg.thinking)


def test_generated_pairs_read_every_row_after_its_own_forward(workdir):
    """Rows of one batch, the last included: hidden_post equals a lone forward's state."""
    host = load_host(workdir / "host")
    problems = read_problems(workdir / "test.jsonl")[:5]
    outputs = []
    for i, p in enumerate(problems):
        seg = host.segments(p)
        answer = seg.answer if i != 1 else host.encode("999") + [host.eos_id]
        outputs.append(seg.thinking + seg.close + answer if i != 2 else seg.thinking[:3])
    pairs, counts = pairs_from_outputs(host, problems, outputs, -1, batch_size=4)
    assert counts == {"attempted": 5, "kept": 3, "wrong": 1, "unclosed": 1}
    assert pairs.problems == [problems[i].question for i in (0, 3, 4)]
    for row, i in enumerate((0, 3, 4)):
        seg = host.segments(problems[i])
        logits, _ = host.model(torch.tensor([seg.full]))
        torch.testing.assert_close(host.model.lm_head(pairs.hidden_post[row]),
                                   logits[0, seg.post_index])


def test_greedy_with_slot_matches_uncached_argmax(workdir):
    host = load_host(workdir / "host")
    problems = read_problems(workdir / "test.jsonl")[:3]
    prompts, index = [], []
    for p in problems:
        seg = host.segments(p)
        seq, (slot,) = host.slot_sequence(seg)
        prompts.append(seq[:slot + 2])
        index.append(slot)
    states = torch.randn(3, host.hidden_size, generator=torch.Generator().manual_seed(0))
    host.slot.proj.weight.data.normal_(0, 0.5)
    got = host.complete(prompts, 6, states, index, stop_id=-1)
    for row in range(3):
        seq = list(prompts[row])
        for _ in range(6):  # reference: a full forward of the whole sequence per token
            h = host.forward(torch.tensor([seq]), states[row:row + 1], torch.tensor([index[row]]))
            seq.append(int(host.model.lm_head(h[0, -1]).argmax()))
        assert got[row] == seq[len(prompts[row]):]
    plain = host.complete([prompts[0]], 5, stop_id=-1)[0]
    ids = torch.tensor([prompts[0]])
    for _ in range(5):
        ids = torch.cat([ids, host.model(ids)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert plain == ids[0, len(prompts[0]):].tolist()


def test_slot_changes_only_later_positions(workdir):
    host = load_host(workdir / "host")
    seg = host.segments(read_problems(workdir / "test.jsonl")[0])
    seq, (slot,) = host.slot_sequence(seg)
    ids = torch.tensor([seq])
    host.slot.proj.weight.data.normal_(0, 0.5)
    a = host.forward(ids, torch.zeros(1, host.hidden_size), torch.tensor([slot]))
    b = host.forward(ids, torch.ones(1, host.hidden_size), torch.tensor([slot]))
    torch.testing.assert_close(a[:, :slot], b[:, :slot])
    assert (a[:, slot:] - b[:, slot:]).abs().amax() > 1e-3
    host.slot.proj.weight.data.zero_()
    host.slot.proj.bias.data.zero_()
    torch.testing.assert_close(host.forward(ids, torch.ones(1, host.hidden_size),
                                            torch.tensor([slot])), host.model.transformer(
        host.model.embed(ids, torch.arange(len(seq))[None])))


def test_auto_resume_gives_the_same_pairs(workdir, tmp_path):
    def run(out, **kw):
        return generate_pairs(DatagenConfig(host=str(workdir / "host"), dataset=str(workdir / "train.jsonl"),
                                            output_dir=str(out), num_samples=20, checkpoint_every=6,
                                            batch_size=4, **kw), quiet=True)
    whole, _ = run(tmp_path / "a")
    run(tmp_path / "b")
    first_chunk = (tmp_path / "b" / "chunk_00000.safetensors").stat().st_mtime_ns
    for f in ["chunk_00002.json", "chunk_00003.json", "chunk_00003.safetensors",
              "hidden_pairs.json", "hidden_pairs.safetensors"]:
        (tmp_path / "b" / f).unlink()  # as if interrupted while writing chunk 2
    resumed, counts = run(tmp_path / "b")
    assert (tmp_path / "b" / "chunk_00000.safetensors").stat().st_mtime_ns == first_chunk
    assert counts["kept"] == 20 and resumed.problems == whole.problems
    torch.testing.assert_close(resumed.hidden_post, whole.hidden_post, rtol=0, atol=0)
    for x, y in zip(resumed.hidden_pre, whole.hidden_pre, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    with pytest.raises(LanternError, match="batch_size was 4, now 5"):
        generate_pairs(DatagenConfig(host=str(workdir / "host"), dataset=str(workdir / "train.jsonl"),
                                     output_dir=str(tmp_path / "b"), num_samples=20,
                                     checkpoint_every=6, batch_size=5), quiet=True)
    with pytest.raises(LanternError, match="--overwrite"):
        run(tmp_path / "b", auto_resume=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before
    loaded = load_pairs(tmp_path / "b")
    assert loaded.meta["counts"]["kept"] == 20 and loaded.hidden_size == 32


def test_generate_mode_counts_unclosed_thinking(workdir, tmp_path):
    pairs, counts = generate_pairs(DatagenConfig(host=str(workdir / "host"),
                                                 dataset=str(workdir / "test.jsonl"),
                                                 output_dir=str(tmp_path), num_samples=6,
                                                 mode="generate", max_new_tokens=2), quiet=True)
    assert counts["attempted"] == 6 and counts["kept"] == len(pairs)
    assert counts["unclosed"] + counts["wrong"] + counts["kept"] == 6
    assert counts["unclosed"] >= 1


def test_cli_problems_and_bad_input(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["trm", "problems", "--task", "mul", "--digits", "2", "--num_samples", "5",
                 "--split", "test", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(set(r) == {"question", "thinking", "answer"} for r in rows)
    (tmp_path / "empty.jsonl").write_text("\n")
    capsys.readouterr()
    assert main(["trm", "datagen", "--host", str(tmp_path), "--dataset",
                 str(tmp_path / "empty.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lantern: error:") and err.count("\n") == 1
    assert main(["trm", "datagen", "--host", str(tmp_path / "nope"), "--dataset", str(out)]) == 1
    assert "host not found" in capsys.readouterr().err


def test_host_refuses_to_overwrite(workdir):
    with pytest.raises(LanternError, match="--overwrite"):
        train_host(HostTrainConfig(problems=str(workdir / "train.jsonl"),
                                   output_dir=str(workdir / "host"), max_steps=1), quiet=True)


def test_slot_loss_reaches_the_teacher_state_unless_detached(workdir):
    """Without detaching, the slot loss trains the full pass's </think> state as well."""
    from lantern.trm.host_training import host_losses

    host = load_host(workdir / "host")
    host.model.requires_grad_(True)
    host.slot.requires_grad_(True).proj.weight.data.normal_(0, 0.5)
    batch = [host.segments(p) for p in read_problems(workdir / "test.jsonl")[:4]]
    grads = {}
    for detach in (False, True):
        host.model.zero_grad()
        loss, metrics = host_losses(host, batch, [False] * 4, 1.0, torch.device("cpu"), detach)
        torch.autograd.grad(loss, host.slot.proj.weight)  # the slot is trained either way
        loss, _ = host_losses(host, batch, [False] * 4, 1.0, torch.device("cpu"), detach)
        slot_only = loss - metrics["full_loss"]
        grads[detach] = torch.autograd.grad(slot_only, host.model.transformer.blocks[0].attn_norm.weight,
                                            allow_unused=True)[0]
    assert grads[False] is not None
    assert grads[True] is None or not torch.allclose(grads[False], grads[True])


def test_host_continues_from_a_trained_one(workdir, tmp_path):
    start = load_host(workdir / "host")
    train_host(HostTrainConfig(problems=str(workdir / "train.jsonl"), output_dir=str(tmp_path / "h"),
                               init_from=str(workdir / "host"), max_steps=1, batch_size=2,
                               learning_rate=1e-12, warmup_steps=0, eval_interval=1, eval_problems=1,
                               device="cpu"), quiet=True)
    after = load_host(tmp_path / "h")
    for (name, a), b in zip(start.model.state_dict().items(), after.model.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(LanternError, match="drop --hidden_size"):
        train_host(HostTrainConfig(problems=str(workdir / "train.jsonl"), output_dir=str(tmp_path / "x"),
                                   init_from=str(workdir / "host"), hidden_size=64), quiet=True)


def test_host_validates_on_a_given_held_out_file(workdir, tmp_path):
    train_host(HostTrainConfig(problems=str(workdir / "train.jsonl"), output_dir=str(tmp_path),
                               val_problems=str(workdir / "test.jsonl"), hidden_size=32, num_heads=2,
                               num_blocks=1, max_steps=1, batch_size=2, eval_interval=1,
                               device="cpu"), quiet=True)
    assert read_problems(tmp_path / "val_problems.jsonl") == read_problems(workdir / "test.jsonl")
