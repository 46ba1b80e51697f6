"""The bilingual generator: Hungarian grammar by rule, correct pairs, the built-in task mix, and a
model trained on its output that answers in `<assistant>` form and stops."""

from __future__ import annotations

import hashlib
import random
import re

import pytest
import torch

from lantern import chat_template
from lantern.api import LLM
from lantern.cli.main import main
from lantern.data import synth
from lantern.data.quality import file_stats
from lantern.tokenizers.base import EOS

CHAT = re.compile(r"^(<system>[^<]+</system>)?<user>[^<]+</user><assistant>[^<]+</assistant>$")
CHAT_PARTS = re.compile(r"^(?:<system>([^<]+)</system>)?<user>([^<]+)</user>"
                        r"<assistant>([^<]+)</assistant>$")


@pytest.mark.parametrize("stem, forms", [
    ("lát", "látok lát látunk látnak látom látja látjuk látják"),
    ("keres", "keresek keres keresünk keresnek keresem keresi keressük keresik"),
    ("főz", "főzök főz főzünk főznek főzöm főzi főzzük főzik"),
    ("olvas", "olvasok olvas olvasunk olvasnak olvasom olvassa olvassuk olvassák"),
    ("ölel", "ölelek ölel ölelünk ölelnek ölelem öleli öleljük ölelik"),
    ("hoz", "hozok hoz hozunk hoznak hozom hozza hozzuk hozzák"),
])
def test_conjugation_follows_vowel_harmony_and_definiteness(stem, forms):
    table = synth.conjugate(stem)
    got = [table[c][p] for c in ("indef", "def") for p in synth.PERSONS]
    assert got == forms.split()


def test_suffixes_harmonize_and_articles_agree():
    assert [synth.inessive(w) for w in ("kert", "ház", "erdő", "iskola", "konyha", "falu")] == [
        "kertben", "házban", "erdőben", "iskolában", "konyhában", "faluban"]
    assert [synth.plural_accusative(w) for w in ("almák", "könyvek", "lovak", "bögrék")] == [
        "almákat", "könyveket", "lovakat", "bögréket"]
    assert [synth.article(w) for w in ("alma", "új", "erdő", "kutya", "Ő")] == [
        "az", "az", "az", "a", "az"]


def test_pairs_agree_in_both_languages():
    rng = random.Random(5)
    for _ in range(300):
        pair, facts = synth.action(rng)
        subj, obj, verb = facts["subject"], facts["object"], facts["verb"]
        words = pair.hu.rstrip(".").lower().split()
        conjugation = "def" if obj is not None and obj.definite else "indef"
        assert verb.hu[conjugation][subj.person] in words  # agreement + definiteness
        if obj is not None:
            assert obj.hu_accusative.split()[-1].lower() in words  # accusative on the object
            assert (obj.en.startswith("the ") or obj.en[0].isupper()) == obj.definite
        if subj.person == "sg3":
            assert verb.en_3sg in pair.en or "does not" in pair.en
        assert pair.en[0].isupper() and pair.hu[0].isupper()


def test_numerals_take_singular_nouns_and_predicates_agree():
    rng = random.Random(1)
    seen_numeral = seen_plural = False
    for _ in range(400):
        pair = synth.location(rng)
        if pair.en.startswith("There are"):
            number = pair.en.split()[2]
            noun = next(n for n in synth.NOUNS if f" {n.en_plural} " in pair.en)
            assert pair.hu.startswith(dict(synth.NUMBERS)[number].capitalize() + f" {noun.hu} van")
            seen_numeral = True
        pair = synth.description(rng)
        if " are " in pair.en and not pair.en.startswith("We"):
            assert pair.hu.split()[-1].rstrip(".").endswith("k")  # plural predicate: kicsik
            seen_plural = True
    assert seen_numeral and seen_plural


def test_default_mix_is_chat_formed_unique_and_reproducible(tmp_path):
    out = tmp_path / "train.txt"
    assert main(["data", "synth", "--output", str(out), "--seed", "2"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20000 and all(line.endswith(EOS) for line in lines)
    stats = file_stats(out)
    assert stats.unique_share >= 0.65
    chats = [line.removesuffix(EOS) for line in lines if line.startswith(("<system>", "<user>"))]
    assert len(chats) == 5000 and all(CHAT.match(c) for c in chats)
    assert any("ő" in line or "ű" in line for line in lines)
    assert [line.removesuffix(EOS) for line in lines] == list(synth.generate_lines(seed=2))
    assert list(synth.generate_lines(20, 0, 20, 20, seed=3)) != list(
        synth.generate_lines(20, 0, 20, 20, seed=4))  # the seed is not ignored


# sha256 of `lantern data synth --sentences 200 --stories 50 --translations 200
# --instructions 300 --seed 0`, recorded with db17e2b's generator (its own chat f-strings).
RECORDED_SHA256 = "23eef78464fb1f8bb82713f3c511df94374d25a52df659e844d97b3b7af3be42"


def test_output_is_byte_identical_to_the_recorded_generator(tmp_path):
    """Rendering chat lines through lantern.chat_template changed no byte of the data."""
    out = tmp_path / "synth.txt"
    assert main(["data", "synth", "--sentences", "200", "--stories", "50", "--translations",
                 "200", "--instructions", "300", "--seed", "0", "--output", str(out)]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == RECORDED_SHA256


def test_chat_lines_are_the_chat_templates_examples():
    rng = random.Random(9)
    for _ in range(200):
        line = synth.instruction(rng)
        system, user, assistant = CHAT_PARTS.match(line).groups()
        assert line == chat_template.example(user, assistant, system)


def test_model_learns_to_answer_and_stop(tmp_path):
    """synth -> BPE -> train -> a greedy answer that closes the tag and ends with <eos>."""
    from lantern.checkpoint import load_model
    from lantern.tokenizers.training import train_tokenizer
    from lantern.training.trainer import TrainConfig, train

    data = tmp_path / "plural.txt"
    lines = synth.generate_lines(0, 0, 0, 3000, seed=1, instruction_kinds=("plural",))
    data.write_text("".join(synth.synth_text(lines)), encoding="utf-8")
    tok_file = tmp_path / "bpe.json"
    tok_file.write_text(train_tokenizer([data], "bpe", vocab_size=400).to_json())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a shared machine
    try:
        train(TrainConfig(config="nano", data_path=str(data), tokenizer=str(tok_file),
                          output_dir=str(tmp_path / "run"), max_steps=300, batch_size=16,
                          seq_length=64, hidden_size=64, num_heads=4, num_blocks=2,
                          steps_per_block=1, learning_rate=3e-3, warmup_steps=20,
                          eval_interval=300, save_interval=300, num_samples=0, device="cpu"),
              quiet=True)
        model, tok, _ = load_model(tmp_path / "run" / "final_model.pt",
                                   device=torch.device("cpu"))
        prompts = {"<user>Make this sentence plural: The dog sleeps.</user><assistant>": "The ",
                   "<user>Tedd többes számba: A lány fut.</user><assistant>": "A"}
        for prompt, start in prompts.items():
            ids = torch.tensor([tok.encode(prompt)])
            out = LLM(model).generate(ids, max_new_tokens=30, temperature=0, eos_token_id=tok.eos_id)
            new = out[0, ids.shape[1]:].tolist()
            answer = tok.decode(new)
            assert new[-1] == tok.eos_id, answer  # it stopped by itself
            assert answer.endswith(".</assistant><eos>") and answer.startswith(start), answer
    finally:
        torch.set_num_threads(threads)
