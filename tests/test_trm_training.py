"""LLM-TRM phases 1-2 and evaluation: compressor against PCA, SequenceTRM training rules (EMA,
schedule, halting), the Hugging Face host path, and the skip-thinking report."""

from __future__ import annotations

import json

import pytest
import torch

from lantern.errors import LanternError
from lantern.training.optim import LRSchedule
from lantern.training.settings import ScheduleSection
from lantern.trm.compressor import CompressorConfig, load_compressor, train_compressor
from lantern.trm.datagen import DatagenConfig, Pairs, generate_pairs, load_pairs
from lantern.trm.evaluate import EvalConfig, Evaluator, bootstrap_ci, evaluate, per_char_accuracy
from lantern.trm.host import load_host
from lantern.trm.host_training import HostTrainConfig, train_host
from lantern.trm.model import SequenceTRM, TRMConfig, halting_loss
from lantern.trm.problems import read_problems, synthetic_problems, write_problems
from lantern.trm.training import AnswerLoss, TRMTrainConfig, load_trm, prepare, train_trm


def make_host(root, name, seed):
    train_host(HostTrainConfig(problems=str(root / "train.jsonl"), output_dir=str(root / name),
                               hidden_size=32, num_heads=2, num_blocks=2, mlp_hidden_size=64,
                               max_steps=3, batch_size=4, eval_interval=3, eval_problems=2,
                               warmup_steps=1, seed=seed, device="cpu"), quiet=True)
    return root / name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny host, its compressor (1b) and its teacher-forced pairs."""
    root = tmp_path_factory.mktemp("trm2")
    write_problems(root / "train.jsonl", synthetic_problems("add", 2, 60))
    write_problems(root / "test.jsonl", synthetic_problems("add", 2, 12, split="test"))
    host = make_host(root, "host", 1)
    train_compressor(CompressorConfig(host=str(host), output_dir=str(root / "comp"), stage="1b",
                                      data=str(root / "train.jsonl"), d_compressed=8, num_epochs=2,
                                      num_samples=60), quiet=True)
    generate_pairs(DatagenConfig(host=str(host), dataset=str(root / "train.jsonl"),
                                 output_dir=str(root / "pairs"), num_samples=60, checkpoint_every=30),
                   quiet=True)
    return root


def trm_config(run, out, **kw):
    values = dict(data=str(run / "pairs"), compressor_checkpoint=str(run / "comp" / "stage1b_best"),
                  output_dir=str(out), batch_size=16, num_epochs=2, n_latent_steps=1,
                  n_deep_recursions=2, n_supervision_steps=3, learning_rate=1e-3, device="cpu")
    values.update(kw)
    return TRMTrainConfig(**values)


def test_compressor_approaches_pca(run, tmp_path):
    """The best tied linear D -> D' -> D map is PCA: training gets close to its error."""
    host = load_host(run / "host")
    with torch.no_grad():
        host.model.embed_tokens.weight.mul_(20)  # states with a clear principal structure
    torch.manual_seed(0)
    problems = read_problems(run / "train.jsonl")
    states = torch.cat(host.states_of([host.segments(p).full for p in problems], -1))
    centered = states - states.mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    basis = v[:8]
    pca = centered @ basis.T @ basis + states.mean(0)
    pca_err = ((pca - states).norm(dim=-1) ** 2).mean()
    comp = load_compressor(run / "comp" / "stage1b_best.safetensors")[0]
    from lantern.trm.compressor import DimensionCompressor
    model = DimensionCompressor(32, 8)
    with torch.no_grad():
        model.bias.copy_(states.mean(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        loss = ((model(states) - states) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() >= pca_err.item() * 0.999
    assert loss.item() <= pca_err.item() * 1.05
    assert comp.d_compressed == 8 and comp.hidden_size == 32


def test_compressor_files_and_stage_1b_from_1a(run, tmp_path):
    info = json.loads((run / "comp" / "stage1b_best.json").read_text())
    assert info["hidden_size"] == 32 and info["layer"] == 2 and "val_cosine" in info
    text = tmp_path / "t.txt"
    text.write_text("12+34=046\n" * 200)
    train_compressor(CompressorConfig(host=str(run / "host"), output_dir=str(tmp_path), stage="1a",
                                      data=str(text), d_compressed=8, num_epochs=1, window=16),
                     quiet=True)
    out = train_compressor(CompressorConfig(host=str(run / "host"), output_dir=str(tmp_path),
                                            stage="1b", data=str(run / "train.jsonl"), d_compressed=8,
                                            num_epochs=1, init=str(tmp_path / "stage1a_best")),
                           quiet=True)
    assert 0 < out["val_cosine"] <= 1
    with pytest.raises(LanternError, match="d_compressed"):
        train_compressor(CompressorConfig(host=str(run / "host"), output_dir=str(tmp_path),
                                          stage="1b", data=str(run / "train.jsonl"), d_compressed=4,
                                          init=str(tmp_path / "stage1a_best"), overwrite=True),
                         quiet=True)
    with pytest.raises(LanternError, match="--overwrite"):
        train_compressor(CompressorConfig(host=str(run / "host"), output_dir=str(tmp_path),
                                          stage="1b", data=str(run / "train.jsonl")), quiet=True)


def test_schedule_counts_optimizer_steps_and_loader_uses_ema(run, tmp_path):
    cfg = trm_config(run, tmp_path, use_halting=False, ema_decay=0.5)
    summary = train_trm(cfg, quiet=True)
    batches = -(-54 // 16)  # 60 pairs, 6 held out
    assert summary["planned_optimizer_steps"] == 2 * batches * 3 == summary["optimizer_steps"]
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    schedule = LRSchedule(ScheduleSection(0, None), 1e-3, summary["planned_optimizer_steps"])
    expected = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1)
    assert log[-1]["lr"] == pytest.approx(schedule.apply(expected, summary["optimizer_steps"] - 1))
    assert log[-1]["lr"] < 1.1e-4  # the cosine ran to its end, not 8x past it or short of it
    data = torch.load(tmp_path / "final.pt", weights_only=True)
    model, _ = load_trm(tmp_path / "final.pt")
    differs = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, data["model_state_dict"][name])
        differs += not torch.equal(value, data["raw_state_dict"][name])
    assert differs > 0  # EMA weights, not the last ones
    assert "mean_predictor_val_cosine" in summary and -1 <= summary["best_val_cosine"] <= 1


def test_per_batch_updates_plan_one_step_per_batch(run, tmp_path):
    summary = train_trm(trm_config(run, tmp_path, per_step_updates=False, use_halting=False,
                                   use_ema=False, num_epochs=1, d_hidden=12), quiet=True)
    assert summary["optimizer_steps"] == summary["planned_optimizer_steps"] == 4
    model, data = load_trm(tmp_path)  # a network wider than D' = 8, projected in and out
    assert (model.cfg.d_model, model.cfg.width) == (8, 12) and model.input_proj.weight.shape == (12, 8)
    x = torch.randn(3, 5, 8)
    pred, _ = model.predict(x, torch.zeros(3, 5, dtype=torch.bool), halt_at=None)
    assert torch.allclose(pred, model(x, torch.zeros(3, 5, dtype=torch.bool)), atol=1e-6)


@pytest.mark.parametrize("bce", [False, True])
def test_halting_targets_are_detached(bce):
    pred = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8)
    logit = torch.zeros(4, requires_grad=True)
    halting_loss(logit, pred, target, bce, threshold=0.0).backward()
    assert pred.grad is None and logit.grad is not None and logit.grad.abs().sum() > 0


def test_deep_recursion_gradient_skips_the_first_t_minus_1(run):
    torch.manual_seed(0)
    model = SequenceTRM(TRMConfig(d_model=8, n_heads=2, n_latent_steps=1, n_deep_recursions=3))
    model.output.weight.data.normal_()
    x, pad = torch.randn(2, 5, 8), torch.zeros(2, 5, dtype=torch.bool)
    carry = model.start(x, pad)
    _, pred, _ = model.deep_recursion(carry)
    pred.sum().backward()
    got = [p.grad.clone() for p in model.net.parameters()]
    model.zero_grad()
    with torch.no_grad():  # reference: two recursions computed and frozen, then one with grad
        c = model.latent_recursion(model.embed_input(x), carry)
        c = model.latent_recursion(model.embed_input(x), c)
    c = model.latent_recursion(model.embed_input(x), c)
    model.output(c.y[:, -1]).sum().backward()
    for a, p in zip(got, model.net.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_bad_pairs_and_compressors_are_refused(run, tmp_path):
    write_problems(tmp_path / "train.jsonl", synthetic_problems("add", 2, 8))
    other = make_host(tmp_path, "other", 7)
    with pytest.raises(LanternError, match="another host"):
        train_trm(trm_config(run, tmp_path / "t", host=str(other)), quiet=True)
    wide = tmp_path / "wide"
    train_host(HostTrainConfig(problems=str(tmp_path / "train.jsonl"), output_dir=str(wide),
                               hidden_size=16, num_heads=2, num_blocks=1, max_steps=1, batch_size=2,
                               eval_interval=1, eval_problems=1, device="cpu"), quiet=True)
    generate_pairs(DatagenConfig(host=str(wide), dataset=str(tmp_path / "train.jsonl"),
                                 output_dir=str(tmp_path / "wp"), num_samples=8), quiet=True)
    with pytest.raises(LanternError, match="hidden size 32, not 16"):
        train_trm(trm_config(run, tmp_path / "t", data=str(tmp_path / "wp")), quiet=True)
    with pytest.raises(LanternError, match="needs --host"):
        trm_config(run, tmp_path, answer_loss_weight=1.0)


def test_answer_loss_through_the_slot_and_eval_report(run, tmp_path):
    summary = train_trm(trm_config(run, tmp_path / "trm", host=str(run / "host"), bce_halt_loss=True),
                        quiet=True)
    assert summary["answer_loss"] > 0
    cfg = EvalConfig(host=str(run / "host"), dataset=str(run / "test.jsonl"),
                     output=str(tmp_path / "report.json"), trm_checkpoint=str(tmp_path / "trm"),
                     compressor_checkpoint=str(run / "comp" / "stage1b_best"), num_samples=6,
                     max_new_tokens=24, bootstrap=50)
    evaluator = Evaluator(cfg)
    ckpt = torch.load(tmp_path / "trm" / "best.pt", weights_only=True)
    for name, value in evaluator.trm.state_dict().items():
        torch.testing.assert_close(value, ckpt["model_state_dict"][name])  # EMA weights
    report = evaluate(cfg)
    assert set(report["modes"]) == {"full", "no_think", "oracle", "oracle_compressed", "trm", "mean",
                                    "zero", "shuffled", "lm_head_first_token"}
    for values in report["modes"].values():
        lo, hi = values["exact_match_ci95"]
        assert lo <= values["exact_match"] <= hi
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert report["modes"]["oracle"]["generated_tokens"] <= 24 + 1  # the slot counts


def test_metrics_helpers():
    assert per_char_accuracy("123", "124") == pytest.approx(2 / 3)
    assert per_char_accuracy("", "12") == 0
    values = torch.tensor([1.0] * 30 + [0.0] * 70).numpy()
    lo, hi = bootstrap_ci(values, 2000, 0)
    assert lo < 0.3 < hi and hi - lo == pytest.approx(2 * 1.96 * (0.21 / 100) ** 0.5, rel=0.25)


def test_hugging_face_host(tmp_path, run):
    """Phases 1-2 on a tiny random LlamaForCausalLM with a character tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set("0123456789+=,<>/thinkm*"))
    vocab = {c: i for i, c in enumerate(["<unk>", "</s>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=4, max_position_embeddings=128))
    hf = tmp_path / "hf"
    model.save_pretrained(hf)
    fast.save_pretrained(hf)
    pairs, _ = generate_pairs(DatagenConfig(host=str(hf), dataset=str(run / "test.jsonl"),
                                            output_dir=str(tmp_path / "pairs"), num_samples=4),
                              quiet=True)
    p = read_problems(run / "test.jsonl")[0]
    text = f"{p.question}<think>{p.thinking}</think>"
    ids = fast(text, return_tensors="pt").input_ids
    reference = model(ids, output_hidden_states=True).hidden_states[-1][0, -1]
    torch.testing.assert_close(pairs.hidden_post[0], reference)
    assert len(pairs.hidden_pre[0]) == len(fast(f"{p.question}<think>").input_ids)
    train_compressor(CompressorConfig(host=str(hf), output_dir=str(tmp_path / "c"), stage="1b",
                                      data=str(run / "test.jsonl"), d_compressed=8, num_epochs=1),
                     quiet=True)
    summary = train_trm(trm_config(run, tmp_path / "t", data=str(tmp_path / "pairs"),
                                   compressor_checkpoint=str(tmp_path / "c" / "stage1b_best"),
                                   num_epochs=1, val_fraction=0.25), quiet=True)
    assert summary["optimizer_steps"] > 0
    with pytest.raises(LanternError, match="another host"):
        train_trm(trm_config(run, tmp_path / "t", data=str(tmp_path / "pairs"), overwrite=True),
                  quiet=True)
    with pytest.raises(LanternError, match="already holds best.pt, final.pt"):
        train_trm(trm_config(run, tmp_path / "t", data=str(tmp_path / "pairs")), quiet=True)


def test_validation_split_keeps_each_question_on_one_side(run):
    """A problem drawn twice must not be trained on and validated on (it made the held-out
    cosine a partly-training figure)."""
    pairs = load_pairs(run / "pairs")
    twice = Pairs(pairs.hidden_pre * 2, torch.cat([pairs.hidden_post] * 2), pairs.num_thinking_tokens * 2,
                  pairs.problems * 2, pairs.answers * 2, pairs.meta)
    comp, _ = load_compressor(run / "comp" / "stage1b_best")
    data = prepare(twice, comp, 0.2, seed=0)
    train_q = {twice.problems[i] for i in data.train}
    val_q = {twice.problems[i] for i in data.val}
    assert val_q and not train_q & val_q
    assert sorted(data.train + data.val) == list(range(len(twice)))
    assert len(val_q) == int(len(set(pairs.problems)) * 0.2)
    one = Pairs(pairs.hidden_pre[:1] * 3, pairs.hidden_post[:1].repeat(3, 1), [1] * 3, pairs.problems[:1] * 3,
                pairs.answers[:1] * 3, pairs.meta)
    with pytest.raises(LanternError, match="single distinct problem"):
        prepare(one, comp, 0.2, seed=0)


def test_answer_exactness_is_what_greedy_decoding_writes(run):
    """`val_answer_exact` scores answers without decoding; the decoding core is the reference:
    a row counts exactly when greedy decoding from `</think>` writes its target tokens."""
    host = load_host(run / "host")
    host.slot.proj.weight.data.normal_(0, 0.5)  # make the slot matter
    pairs = load_pairs(run / "pairs")
    answers = AnswerLoss(host, pairs)
    rows = list(range(6))
    states = torch.randn(6, host.hidden_size, generator=torch.Generator().manual_seed(0))
    expected = []
    for j, i in enumerate(rows):
        seq, (slot,) = answers.sequences[i]
        prompt, length = seq[:slot + 2], len(seq) - slot - 2
        greedy = host.complete([prompt], length, states[j:j + 1], [slot], stop_id=-1)[0]
        if j % 2:  # odd rows: the target is what greedy writes, but for one token
            greedy[j % length] = (greedy[j % length] + 1) % host.tokenizer.vocab_size
        answers.sequences[i] = (prompt + greedy, [slot])
        expected.append(j % 2 == 0)
    assert answers.exact(states, rows).tolist() == expected
