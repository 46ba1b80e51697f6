"""Uncertainty signals, the threshold policy, and the KV-cached adaptive generator."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lantern import GenerationController, UncertaintyController
from lantern.errors import LanternError
from lantern.generation.adaptive.controller import GenerationConfig
from lantern.generation.adaptive.uncertainty import mutual_information, semantic_dispersion
from lantern.models.lantern_model import LANTERNModel
from tests.conftest import tiny_config

INF = float("inf")
THINK, EOS = 4, 3


def recursive_model(**overrides) -> LANTERNModel:
    torch.manual_seed(0)
    values = dict(num_blocks=1, steps_per_block=3, position="rope", dropout=0.1)
    values.update(overrides)
    return LANTERNModel(tiny_config(**values)).eval()


def make_controller(model, taus=(INF, INF, INF), think=True, **kwargs) -> GenerationController:
    uc = UncertaintyController(*taus, **kwargs)
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0,
                           think_token_id=THINK if think else None, eos_token_id=None)
    return GenerationController(model=model, uncertainty_controller=uc, config=cfg)


def test_seed_snippet_runs_verbatim():
    model = recursive_model()
    uncertainty_controller = UncertaintyController(
        tau_low=1.0,
        tau_mid=2.0,
        tau_high=3.0,
    )
    gen_config = GenerationConfig(
        max_new_tokens=10,
        temperature=0.8,
        think_token_id=THINK,
        eos_token_id=EOS,
    )
    controller = GenerationController(
        model=model.transformer,
        lm_head=model.lm_head,
        embedding_matrix=model.get_embedding_matrix(),
        uncertainty_controller=uncertainty_controller,
        config=gen_config,
        recur_fn=lambda h, steps_max: model.transformer(h, steps_per_block=steps_max),
    )
    result = controller.generate(torch.tensor([[5, 6, 7]]))
    assert result.sequences.shape[0] == 1 and 1 <= len(result.visible_tokens(0, THINK)) <= 10
    entry = result.trace[0][0]
    assert entry.depth in (1, 2, 3) and entry.applications >= entry.depth
    assert entry.uncertainty >= entry.entropy >= 0


def test_signals():
    uc = UncertaintyController()
    embedding = torch.eye(5)
    uniform = torch.full((1, 5), 0.2)
    sure = torch.tensor([[1.0, 0, 0, 0, 0]])
    s = uc.signals(uniform, embedding)
    assert math.isclose(s.entropy.item(), math.log(5), rel_tol=1e-5)
    assert math.isclose(s.top1.item(), 0.2, rel_tol=1e-5)
    assert uc.signals(sure, embedding).score.item() < 1e-5
    same = torch.ones(5, 3)  # all candidates mean the same: no semantic spread
    assert semantic_dispersion(uniform, same).item() < 1e-5
    assert semantic_dispersion(uniform, embedding).item() > 0.7
    agree = uniform.expand(4, 1, 5)
    disagree = torch.eye(5)[:4, None, :]
    assert mutual_information(agree).item() < 1e-6 < mutual_information(disagree).item()


@pytest.mark.parametrize("shape", [{}, {"num_blocks": 3, "prelude_blocks": 1, "coda_blocks": 1}])
def test_cached_generation_equals_uncached_recomputation(shape):
    model = recursive_model(**shape)
    controller = make_controller(model, min_steps=3)
    prompt = torch.tensor([[5, 6, 7, 8]])
    result = controller.generate(prompt)
    ids = prompt
    for token in result.new_tokens[0]:
        assert controller.reference_probs(ids, 3).argmax().item() == token
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def test_every_threshold_changes_what_the_generator_does():
    model = recursive_model()
    prompt = torch.tensor([[5, 6, 7]])

    def run(taus):
        trace = make_controller(model, taus, mc_samples=3).generate(prompt).trace[0][1:]
        return {t.depth for t in trace}, any(t.think for t in trace), max(t.epistemic for t in trace)

    assert run((INF, INF, INF)) == ({1}, False, 0.0)  # shallow everywhere
    depths, think, epistemic = run((-1, INF, INF))  # tau_low crossed: deeper
    assert depths == {2} and not think and epistemic == 0.0
    depths, think, epistemic = run((-1, -1, INF))  # tau_mid crossed: max depth + MC dropout
    assert depths == {3} and not think and epistemic > 0
    depths, think, _ = run((-1, -1, -1))  # tau_high crossed: THINK tokens
    assert think and depths == {3}


def test_think_tokens_are_bounded_and_hidden():
    model = recursive_model()
    result = make_controller(model, (-1, -1, -1), max_think_tokens=2).generate(torch.tensor([[5]]))
    tokens = result.new_tokens[0]
    assert THINK in tokens and THINK not in result.visible_tokens(0, THINK)
    assert THINK in result.visible_tokens(0, THINK, show_think=True)
    assert all(tokens[i : i + 3] != [THINK] * 3 for i in range(len(tokens)))
    assert not any(t.think for t in make_controller(model, (-1, -1, -1), think=False)
                   .generate(torch.tensor([[5]])).trace[0])


def test_batch_rows_match_single_row_runs():
    model = recursive_model(num_blocks=2, steps_per_block=2, position="learned")
    controller = make_controller(model, min_steps=2)
    prompts = torch.tensor([[5, 6, 7], [9, 8, 7], [20, 21, 22]])
    batch = controller.generate(prompts)
    assert batch.sequences.shape == (3, 3 + 8)
    for row in range(3):
        single = controller.generate(prompts[row : row + 1])
        assert single.new_tokens[0] == batch.new_tokens[row]


def test_scoring_given_text_matches_model_loss():
    model = recursive_model(dropout=0.0)
    controller = make_controller(model, min_steps=3)
    ids = torch.randint(5, 40, (2, 12))
    result = controller.generate(ids[:, :1], targets=ids[:, 1:])
    losses = torch.tensor([[t.loss for t in row] for row in result.trace])
    _, expected = model(ids[:, :-1], ids[:, 1:])
    assert math.isclose(losses.mean().item(), expected.item(), rel_tol=1e-4)


def test_windowed_generation_keeps_cache_flat():
    model = recursive_model(attention_window=4, context_length=64)
    controller = make_controller(model, (0.5, INF, INF))
    controller.config.max_new_tokens = 40
    result = controller.generate(torch.tensor([[5, 6]]))
    assert len(result.new_tokens[0]) == 40


def test_bad_settings_are_clear_errors():
    with pytest.raises(LanternError, match="tau_low <= tau_mid"):
        UncertaintyController(3.0, 2.0, 1.0)
    model = recursive_model(position="learned")
    with pytest.raises(LanternError, match="pass model=model"):
        GenerationController(model.transformer, model.lm_head, model.get_embedding_matrix())


@torch.no_grad()
def sliding_reference(model, prompt: list[int], new: int, steps: int) -> list[int]:
    """Uncached greedy decoding at a fixed depth, with the documented slide (newest 3/4)."""
    context = model.config.context_length
    keep = int(context * 0.75)
    view, out = list(prompt), []
    for _ in range(new):
        out.append(int(model(torch.tensor([view]), steps_per_block=steps)[0][0, -1].argmax()))
        if len(view) == context:
            view = view[-(keep - 1):]
        view.append(out[-1])
    return out


def test_adaptive_generation_slides_past_the_context():
    """The controller runs on the core, so it slides like every other generator."""
    model = recursive_model(position="learned", context_length=12, dropout=0.0)
    controller = make_controller(model, (-1, -1, INF), think=False)  # always the deepest depth
    controller.config.max_new_tokens = 40
    result = controller.generate(torch.tensor([[5, 6, 7]]))
    assert result.new_tokens[0] == sliding_reference(model, [5, 6, 7], 40, 3)


def test_mc_dropout_uses_the_trained_rate_and_never_changes_the_choice():
    """Defect 7: MC dropout forced p = 0.1 on any model and sampled from the perturbed mean."""
    prompt = torch.tensor([[5, 6, 7, 8]])
    plain = recursive_model(dropout=0.0)
    controller = make_controller(plain, (-1, -1, INF), think=False, mc_samples=4)
    assert not controller.has_epistemic_signal
    result = controller.generate(prompt)
    assert all(t.epistemic == 0.0 and t.applications == 3 for t in result.trace[0][1:])
    trained = recursive_model(dropout=0.3)
    controller = make_controller(trained, (-1, -1, INF), think=False, mc_samples=4)
    assert controller.has_epistemic_signal and controller.mc_rate == 0.3
    result = controller.generate(prompt)
    assert all(t.epistemic > 0 and t.applications == 3 + 4 for t in result.trace[0][1:])
    # Tokens come from the deterministic distribution, not the Monte-Carlo average.
    ids = prompt
    for token in result.new_tokens[0]:
        assert controller.reference_probs(ids, 3).argmax().item() == token
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def dropout_rates_applied(model: LANTERNModel, monkeypatch) -> list[float]:
    """The rate every dropout really applied while the model ran: nn.Dropout's from its output
    (kept values are scaled by 1 / (1 - p)), attention dropout's from the `dropout_p` handed to
    scaled_dot_product_attention."""
    rates: list[float] = []

    def observe(module, inputs, output):
        if module.training:
            kept = output != 0
            rates.append(round(1 - float((inputs[0][kept] / output[kept]).mean()), 4))

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(observe)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def attention(*args, dropout_p=0.0, **kwargs):
        if dropout_p:
            rates.append(round(dropout_p, 4))
        return sdpa(*args, dropout_p=dropout_p, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", attention)
    return rates


@pytest.mark.parametrize("trained, asked, applied", [(0.3, None, 0.3), (0.3, 0.5, 0.5),
                                                     (0.0, 0.25, 0.25)])
def test_mc_dropout_passes_apply_the_rate_asked_for(monkeypatch, trained, asked, applied):
    """Defect 7: the passes ran at p = 0.1 whatever the model was trained with or
    --mc_dropout said; every dropout in them must run at the trained or the given rate."""
    model = recursive_model(dropout=trained)
    controller = make_controller(model, (-1, -1, INF), think=False, mc_samples=4, mc_dropout=asked)
    rates = dropout_rates_applied(model, monkeypatch)
    controller.generate(torch.tensor([[5, 6, 7, 8]]))
    # Per pass of every token after the first (the first comes from the prefill): the residual
    # dropouts after attention and MLP, and attention's own.
    assert len(rates) == 3 * 4 * (controller.config.max_new_tokens - 1)
    assert set(rates) == {applied}
    assert not model.training and all(m.p == trained for m in model.modules()
                                       if isinstance(m, torch.nn.Dropout))  # restored afterwards


def test_generate_adaptive_on_the_command_line(tmp_path, capsys):
    from lantern.checkpoint import save_checkpoint
    from lantern.cli.main import main
    from lantern.tokenizers import CharTokenizer
    from tests.conftest import TINY_TEXT

    tokenizer = CharTokenizer.train([TINY_TEXT])
    config = tiny_config(vocab_size=tokenizer.vocab_size, num_blocks=1, steps_per_block=2,
                         position="rope", dropout=0.1)
    torch.manual_seed(0)
    weights = LANTERNModel(config).state_dict()
    for name, loop in (("model.pt", {"pause_tokens": 2}), ("no_pauses.pt", {"pause_tokens": 0})):
        save_checkpoint(tmp_path / name, {
            "model_state_dict": weights, "config": config.to_dict(),
            "tokenizer": tokenizer.to_json(), "step": 1, "train_config": {"loop": loop}})
    out_file = tmp_path / "samples.jsonl"
    argv = ["generate", "--checkpoint", str(tmp_path / "model.pt"), "--prompt", "Once",
            "--max_new_tokens", "8", "--seed", "1", "--adaptive", "--tau_low", "0", "--tau_mid",
            "0", "--tau_high", "0", "--trace"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Once") and "<think>" not in out
    assert "THINK" in err and "compute" in err
    # Flags that used to be ignored with --adaptive now act: samples, output, stop strings.
    assert main(argv + ["--num_samples", "3", "--output", str(out_file), "--stop", "e",
                        "--min_p", "0.05", "--repetition_penalty", "1.2"]) == 0
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(records) == 3 and all("e" not in r["text"] for r in records)
    assert main(argv[:-7] + ["--adaptive", "--tau_low", "2", "--tau_mid", "1"]) == 1
    assert "lantern: error: thresholds" in capsys.readouterr().err
    assert main(argv + ["--num_beams", "2"]) == 1
    assert "has no effect with --num_beams" in capsys.readouterr().err
    # A model never trained with pause tokens emits no THINK, and a THINK threshold is refused.
    no_pauses = [str(tmp_path / "no_pauses.pt") if a.endswith("model.pt") else a for a in argv]
    assert main(no_pauses) == 1
    assert "tau_high: this model was not trained with THINK" in capsys.readouterr().err
    assert main(no_pauses[:-3] + ["--trace"]) == 0
    assert ", 0 THINK," in capsys.readouterr().err


def test_shallow_tokens_leave_no_empty_cache_layer():
    model = recursive_model(num_blocks=2, steps_per_block=3)
    controller = make_controller(model, (INF, INF, INF))  # every token at 1 step per block
    seen = []
    original = model.transformer.finish

    def spy(ctx):
        original(ctx)  # every layer has written this token's keys by now
        seen.append((ctx.cache.keys.clone(), int(ctx.cache.lengths[0])))

    model.transformer.finish = spy
    controller.generate(torch.tensor([[5, 6]]))
    keys, length = seen[-1]
    filled = keys[:, :, :, :length].abs().sum(dim=(1, 2, 4))  # (layers, positions)
    assert keys.shape[0] == 6 and (filled > 0).all()


@pytest.mark.parametrize("shape", [{}, {"num_blocks": 3, "prelude_blocks": 1, "coda_blocks": 1}])
def test_convergence_exit_stops_where_the_distribution_stops_moving(shape):
    model = recursive_model(steps_per_block=6, dropout=0.0, **shape)
    prompt = torch.tensor([[5, 6, 7, 8]])
    seen = set()
    for threshold in (1e9, 1e-3, 2e-4, 1e-6):
        controller = make_controller(model, exit_kl=threshold, max_steps=6, mc_samples=0)
        result = controller.generate(prompt)
        ids = prompt
        for i, trace in enumerate(result.trace[0]):
            # Reference: uncached recomputation at every depth, the first depth whose
            # distribution moved by at most the threshold from the one before (the first
            # token comes from the prompt's prefill, at full depth).
            probs = [controller.reference_probs(ids, k) for k in range(1, 7)]
            kls = [float((q * (q.log() - p.log())).sum()) for p, q in zip(probs, probs[1:], strict=False)]
            expected = next((k + 2 for k, kl in enumerate(kls) if kl <= threshold), 6)
            assert trace.depth == (expected if i else 6)
            seen.add(trace.depth)
            ids = torch.cat([ids, torch.tensor([[trace.token]])], dim=1)
    assert len(seen) >= 3  # the thresholds above lead to different depths on this model
    with pytest.raises(LanternError, match="exit_kl"):
        UncertaintyController(exit_kl=-1.0)


def test_the_token_budget_counts_visible_tokens_and_think_apart():
    model = recursive_model()
    controller = make_controller(model, (-1, -1, -1), max_think_tokens=2)  # THINK wherever it can
    result = controller.generate(torch.tensor([[5, 6]]))
    tokens = result.new_tokens[0]
    assert len(result.visible_tokens(0, THINK)) == 8  # max_new_tokens
    assert tokens.count(THINK) >= 4 and len(tokens) == 8 + tokens.count(THINK)


def test_fitted_thresholds_send_a_fifth_of_held_out_tokens_deeper(tmp_path):
    from lantern.checkpoint import load_model
    from lantern.data.batches import eval_windows
    from lantern.generation.adaptive.thresholds import DEEPER, adaptive_defaults
    from lantern.training.trainer import TrainConfig, prepare_data, train

    cfg = TrainConfig(config="gpt-64", num_blocks=1, steps_per_block=3, max_steps=40,
                      batch_size=8, seq_length=32, corpus_chars=20_000, learning_rate=3e-3,
                      eval_interval=40, eval_batches=2, save_interval=40, num_samples=0,
                      output_dir=str(tmp_path / "run"))
    train(cfg, quiet=True)
    model, tokenizer, state = load_model(tmp_path / "run")
    defaults = adaptive_defaults(state)
    assert defaults.fitted and not defaults.think and defaults.tau_high == INF
    assert state["adaptive"]["tau_high"] is None  # plain data in the checkpoint
    # The same held-out windows, scored token by token through the cached controller.
    windows = eval_windows(prepare_data(cfg, tokenizer).val_tokens, 32, 8, 2)
    uc = UncertaintyController(defaults.tau_low, INF, INF, mc_samples=0)
    controller = GenerationController(model, uncertainty_controller=uc,
                                      config=GenerationConfig(temperature=0.0))
    deeper = total = 0
    for x, y in windows:
        for row in torch.cat([x, y[:, -1:]], dim=1)[:, None]:  # one row at a time: a batch
            trace = controller.generate(row[:, :1], targets=row[:, 1:]).trace[0]  # goes together
            deeper += sum(t.depth > 1 for t in trace[1:])  # the first token runs at full depth
            total += len(trace) - 1
    assert abs(deeper / total - DEEPER) < 0.05


def test_the_old_import_path_is_the_adaptive_package_itself():
    import lantern.controller.generation
    from lantern.controller.thresholds import adaptive_defaults
    from lantern.controller.uncertainty import UncertaintyController as OldUncertainty

    from lantern.generation.adaptive import controller, thresholds, uncertainty

    assert lantern.controller.generation is controller
    assert lantern.controller.GenerationController is GenerationController
    assert adaptive_defaults is thresholds.adaptive_defaults
    assert OldUncertainty is uncertainty.UncertaintyController is UncertaintyController
