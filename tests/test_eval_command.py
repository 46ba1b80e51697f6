"""`lantern eval`: held-out figures checked against transformers and llama.cpp running the same
weights, in windows laid out by hand here as lm-evaluation-harness lays them out."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_TEXT, perturbed_model, save_run
from transformers import AutoModelForCausalLM

from lantern.cli.main import main
from lantern.evaluation.calibration import Calibration, auroc, expected_calibration_error
from lantern.export.gguf_export import export_gguf
from lantern.export.hf_export import export_hf
from lantern.tokenizers import CharTokenizer

LLAMA = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
TEXT = (TINY_TEXT + "Árvíztűrő tükörfúrógép, ő és ű 🙂\n") * 2  # several windows; multi-byte characters


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer.train([TEXT])


def harness_windows(tokens: list[int], context: int, prefix: int) -> list[tuple[list[int], list[int]]]:
    """lm-evaluation-harness's rolling windows (context_len 1), made disjoint: what the model reads
    and the tokens scored at the end of it."""
    first = min(context, len(tokens))
    windows = [([prefix, *tokens[:first - 1]], tokens[:first])]
    done = first
    while done < len(tokens):
        take = min(context, len(tokens) - done)
        end = done + take
        windows.append((tokens[end - context - 1:end - 1], tokens[end - take:end]))
        done = end
    return windows


def reference_figures(hf, tokens: list[int], context: int, prefix: int, text: str) -> dict:
    nll, correct = 0.0, 0
    for inputs, targets in harness_windows(tokens, context, prefix):
        with torch.no_grad():
            logits = hf(torch.tensor([inputs])).logits[0, -len(targets):].double()
        target = torch.tensor(targets)
        nll += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(-1) == target).sum())
    return {"tokens": len(tokens), "loss": nll / len(tokens), "accuracy": correct / len(tokens),
            "bits_per_byte": nll / math.log(2) / len(text.encode("utf-8"))}


def run_eval(*flags: str) -> dict:
    assert main(["eval", "--quiet", *flags]) == 0
    out = flags[flags.index("--output") + 1]
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def check_close(ours: dict, reference: dict) -> None:
    assert ours["tokens"] == reference["tokens"]
    assert ours["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert ours["bits_per_byte"] == pytest.approx(reference["bits_per_byte"], rel=1e-5)
    assert ours["accuracy"] == pytest.approx(reference["accuracy"], abs=1.5 / reference["tokens"])


def test_figures_equal_transformers_on_the_exported_model_in_harness_windows(tok, tmp_path):
    model = perturbed_model(tok, **LLAMA)
    save_run(model, tok, tmp_path / "run")
    export_hf(model, tok, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    (tmp_path / "held_out.txt").write_text(TEXT, encoding="utf-8")
    tokens = tok.encode(TEXT)
    assert len(tokens) > 3 * model.config.context_length  # several windows, the last one partial
    report = run_eval("--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "held_out.txt"),
                      "--output", str(tmp_path / "r.json"))
    reference = reference_figures(hf, tokens, model.config.context_length, tok.bos_id, TEXT)
    check_close(report["results"][0], reference)
    assert report["first_token_scored"] and report["bytes"] == len(TEXT.encode("utf-8"))
    # a transformers directory is scored the same way (imported onto LANTERN's model)
    report = run_eval("--checkpoint", str(tmp_path / "hf"), "--data", str(tmp_path / "held_out.txt"),
                      "--output", str(tmp_path / "r_hf.json"))
    check_close(report["results"][0], reference)


def test_depths_score_a_recursive_model_as_deeper_exports_of_it(tok, tmp_path):
    model = perturbed_model(tok, **LLAMA, steps_per_block=2)
    save_run(model, tok, tmp_path / "run")
    text = TEXT[:400]
    (tmp_path / "held_out.txt").write_text(text, encoding="utf-8")
    report = run_eval("--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "held_out.txt"),
                      "--depths", "1,3", "--output", str(tmp_path / "r.json"))
    results = {row["label"]: row for row in report["results"]}
    for depth in (1, 3):  # the same weights written out as a transformers model that deep
        model.config.steps_per_block = depth
        export_hf(model, tok, tmp_path / f"hf{depth}")
        hf = AutoModelForCausalLM.from_pretrained(tmp_path / f"hf{depth}").eval()
        assert hf.config.num_hidden_layers == depth * model.config.num_blocks
        reference = reference_figures(hf, tok.encode(text), model.config.context_length, tok.bos_id, text)
        check_close(results[f"depth {depth}"], reference)


def test_llamacpp_scores_the_gguf_as_pytorch_scores_its_weights(tok, tmp_path):
    model = perturbed_model(tok, **LLAMA)
    save_run(model, tok, tmp_path / "run")
    export_gguf(model, tok, tmp_path / "m.gguf", "f32")
    text = TEXT[:300]
    (tmp_path / "held_out.txt").write_text(text, encoding="utf-8")
    theirs = run_eval("--checkpoint", str(tmp_path / "m.gguf"), "--data", str(tmp_path / "held_out.txt"),
                      "--output", str(tmp_path / "llama.json"))
    assert theirs["engine"] == "llama.cpp" and theirs["context"] == model.config.context_length - 1
    ours = run_eval("--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "held_out.txt"),
                    "--context", str(theirs["context"]), "--output", str(tmp_path / "torch.json"))
    a, b = theirs["results"][0], ours["results"][0]
    assert a["tokens"] == b["tokens"] == len(tok.encode(text))
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1.5 / a["tokens"])


def test_bad_input_is_one_line_and_nothing_is_overwritten(tok, tmp_path, capsys):
    model = perturbed_model(tok, **LLAMA)
    save_run(model, tok, tmp_path / "run")
    (tmp_path / "held_out.txt").write_text(TEXT[:200], encoding="utf-8")
    (tmp_path / "kept.json").write_text("mine", encoding="utf-8")
    run, data = str(tmp_path / "run"), str(tmp_path / "held_out.txt")
    cases = {
        ("--depths", "2"): "--depths applies to recursive models",
        ("--depths", "1,x"): "--depths must be comma-separated",
        ("--depths", "0"): "at least 1",
        ("--engine", "llamacpp"): "not a GGUF",
        ("--output", str(tmp_path / "kept.json")): "already exists",
        ("--context", "1000"): "longer than the model's",
    }
    for flags, message in cases.items():
        assert main(["eval", "--checkpoint", run, "--data", data, *flags]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["eval", "--checkpoint", run, "--data", str(tmp_path / "missing.txt")]) == 1
    assert "not found" in capsys.readouterr().err
    assert (tmp_path / "kept.json").read_text(encoding="utf-8") == "mine"


def test_calibration_measures_against_brute_force_references():
    """ECE against a direct per-bin computation, AUROC against counting every pair, and the
    fitted temperature recovers the one the tokens were drawn at."""
    gen = torch.Generator().manual_seed(0)
    confidence = torch.rand(3000, generator=gen)
    correct = torch.rand(3000, generator=gen) < confidence ** 2  # over-confident
    bins = [(confidence >= b / 15) & (confidence < (b + 1) / 15) for b in range(15)]
    reference = sum(abs(correct[m].double().mean() - confidence[m].double().mean()).item() * m.sum().item()
                    for m in bins if m.any()) / 3000
    assert expected_calibration_error(confidence, correct) == pytest.approx(reference, rel=1e-9)
    score = torch.randint(0, 20, (400,), generator=gen).float()  # many ties
    positive = torch.rand(400, generator=gen) < 0.3 + score / 40
    pos, neg = score[positive], score[~positive]
    pairs = (pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert auroc(score, positive) == pytest.approx(pairs.mean().item(), rel=1e-12)
    logits = torch.randn(20000, 12, generator=gen) * 3
    drawn = torch.multinomial(F.softmax(logits / 2.0, dim=-1), 1, generator=gen)[:, 0]
    calibration = Calibration()
    calibration.add(logits[:10000], drawn[:10000], fit=True)
    calibration.add(logits[10000:], drawn[10000:], fit=False)
    figures = calibration.figures()
    assert figures["temperature"] == pytest.approx(2.0, rel=0.07)
    assert figures["ece_after_temperature"] < 0.02 < figures["ece"]  # T = 1 is over-confident here


def test_calibration_report_and_reliability_diagram(tok, tmp_path, capsys):
    model = perturbed_model(tok, **LLAMA)
    save_run(model, tok, tmp_path / "run")
    (tmp_path / "held_out.txt").write_text(TEXT, encoding="utf-8")
    report = run_eval("--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "held_out.txt"),
                      "--calibration", str(tmp_path / "rel.png"), "--output", str(tmp_path / "r.json"))
    row = report["results"][0]
    windows = report["windows"]
    assert windows >= 3 and (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    assert row["calibration_tokens"] + row["temperature_fit_tokens"] == row["tokens"]
    assert 0 <= row["ece"] <= 1 and 0 <= row["auroc_wrong_1_minus_top1"] <= 1
    (tmp_path / "small.txt").write_text(TEXT[:20], encoding="utf-8")
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "small.txt"),
                 "--calibration", str(tmp_path / "other.png")]) == 1
    assert "at least two windows" in capsys.readouterr().err
    export_gguf(model, tok, tmp_path / "m.gguf", "f32")
    assert main(["eval", "--checkpoint", str(tmp_path / "m.gguf"), "--data", str(tmp_path / "held_out.txt"),
                 "--calibration", str(tmp_path / "other.png")]) == 1
    err = capsys.readouterr().err
    assert "--engine pytorch" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other.png").exists()
