"""Synthetic English/Hungarian data from a small bilingual lexicon and grammar.

Every example is built from one meaning (who does what to what, where), rendered into both
languages by rule, so a translation pair is correct by construction. Hungarian is inflected,
not looked up: vowel harmony picks suffixes (-ban/-ben, -ok/-ek/-ök, -ja/-i), verbs agree with
the subject in person and number and take the definite conjugation with a definite object,
objects take the accusative -t, the article is `a` or `az` by the next word's first sound,
numerals take a singular noun, and the copula is dropped in the third person.

Four kinds of line, as `lantern data synth` writes them, each closed by `<eos>`:
sentences and stories (English or Hungarian), translation pairs and instructions/Q&A in the
chat layout of `lantern.chat_template`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lantern.chat_template import example
from lantern.tokenizers.base import EOS

# --- Hungarian morphology --------------------------------------------------------------------

BACK, FRONT, ROUNDED = "back", "front", "rounded"
_BACK_VOWELS, _ROUNDED_VOWELS, _FRONT_VOWELS = set("aáoóuú"), set("öőüű"), set("eéií")
_VOWELS = _BACK_VOWELS | _ROUNDED_VOWELS | _FRONT_VOWELS
_SIBILANTS = ("sz", "zs", "s", "z")


def harmony(word: str) -> str:
    """Vowel harmony class: any back vowel makes a word back (i and í are neutral); otherwise
    the last vowel decides between front unrounded and front rounded."""
    vowels = [c for c in word.lower() if c in _VOWELS]
    if any(v in _BACK_VOWELS for v in vowels):
        return BACK
    return ROUNDED if vowels and vowels[-1] in _ROUNDED_VOWELS else FRONT


def pick(word: str, back: str, front: str, rounded: str | None = None) -> str:
    """The suffix variant that harmonizes with `word`."""
    h = harmony(word)
    return back if h == BACK else (rounded if h == ROUNDED and rounded is not None else front)


def lengthen(word: str) -> str:
    """Final a/e lengthen before a suffix: alma -> almá-, kecske -> kecské-."""
    return word[:-1] + {"a": "á", "e": "é"}[word[-1]] if word[-1] in "ae" else word


def inessive(word: str) -> str:
    """'in X': -ban/-ben."""
    return lengthen(word) + pick(word, "ban", "ben")


def plural_accusative(plural: str) -> str:
    """Plurals end in -k and take -at/-et: almák -> almákat, könyvek -> könyveket."""
    return plural + pick(plural, "at", "et")


def article(next_word: str) -> str:
    """Hungarian definite article: `az` before a vowel sound, else `a`."""
    return "az" if next_word[0].lower() in _VOWELS else "a"


def _assimilate(stem: str, suffix: str) -> str:
    """A j-initial suffix after a sibilant doubles the sibilant: mos+ja -> mossa."""
    if suffix.startswith("j"):
        for s in _SIBILANTS:
            if stem.endswith(s):
                return stem[: -len(s)] + s[0] + s + suffix[1:]
    return stem + suffix


PERSONS = ("sg1", "sg3", "pl1", "pl3")


def conjugate(stem: str) -> dict[str, dict[str, str]]:
    """Present tense of a regular verb: indefinite and definite forms for four persons."""
    a = lambda back, front, rounded=None: pick(stem, back, front, rounded)  # noqa: E731
    indefinite = {"sg1": stem + a("ok", "ek", "ök"), "sg3": stem,
                  "pl1": stem + a("unk", "ünk"), "pl3": stem + a("nak", "nek")}
    if harmony(stem) == BACK:
        definite = {"sg1": stem + "om", "sg3": _assimilate(stem, "ja"),
                    "pl1": _assimilate(stem, "juk"), "pl3": _assimilate(stem, "ják")}
    else:
        definite = {"sg1": stem + a("", "em", "öm"), "sg3": stem + "i",
                    "pl1": _assimilate(stem, "jük"), "pl3": stem + "ik"}
    return {"indef": indefinite, "def": definite}


def _forms(indef: str, definite: str | None = None) -> dict[str, dict[str, str]]:
    """Irregular verbs: forms written out, sg1 sg3 pl1 pl3 separated by spaces."""
    out = {"indef": dict(zip(PERSONS, indef.split(), strict=True))}
    if definite:
        out["def"] = dict(zip(PERSONS, definite.split(), strict=True))
    return out


# --- the lexicon -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    hu: str
    hu_plural: str
    hu_accusative: str  # irregular enough (ló -> lovat, egér -> egeret) to be listed
    kind: str  # animal, person, food, thing, book, name

    @property
    def hu_plural_accusative(self) -> str:
        return plural_accusative(self.hu_plural)


def _nouns(kind: str, table: str) -> tuple[Noun, ...]:
    rows = [line.split() for line in table.strip().splitlines()]
    return tuple(Noun(en, en_pl, hu, hu_pl, acc, kind) for en, en_pl, hu, hu_pl, acc in rows)


NOUNS = (
    _nouns("animal", """
        cat cats macska macskák macskát
        dog dogs kutya kutyák kutyát
        bird birds madár madarak madarat
        horse horses ló lovak lovat
        fish fish hal halak halat
        mouse mice egér egerek egeret
        rabbit rabbits nyúl nyulak nyulat
        bear bears medve medvék medvét
        fox foxes róka rókák rókát
        cow cows tehén tehenek tehenet
    """)
    + _nouns("person", """
        child children gyerek gyerekek gyereket
        boy boys fiú fiúk fiút
        girl girls lány lányok lányt
        teacher teachers tanár tanárok tanárt
        friend friends barát barátok barátot
    """)
    + _nouns("food", """
        apple apples alma almák almát
        sandwich sandwiches szendvics szendvicsek szendvicset
        cake cakes sütemény sütemények süteményt
        banana bananas banán banánok banánt
        cookie cookies keksz kekszek kekszet
        pear pears körte körték körtét
        egg eggs tojás tojások tojást
    """)
    + _nouns("thing", """
        ball balls labda labdák labdát
        box boxes doboz dobozok dobozt
        flower flowers virág virágok virágot
        key keys kulcs kulcsok kulcsot
        chair chairs szék székek széket
        picture pictures kép képek képet
        car cars autó autók autót
        hat hats kalap kalapok kalapot
        doll dolls baba babák babát
        cup cups bögre bögrék bögrét
        pencil pencils ceruza ceruzák ceruzát
    """)
    + _nouns("book", """
        book books könyv könyvek könyvet
        letter letters levél levelek levelet
    """)
)
ANIMATE = ("animal", "person")
NAMES = (("Anna", "Annát"), ("Péter", "Pétert"), ("Kati", "Katit"), ("Bence", "Bencét"),
         ("Lili", "Lilit"), ("Máté", "Mátét"), ("Dani", "Danit"), ("Zsófi", "Zsófit"))


@dataclass(frozen=True)
class Adjective:
    en: str
    hu: str  # before a noun
    hu_predicate: str  # "the cat is small": kicsi, not kis
    hu_predicate_plural: str
    kinds: tuple[str, ...]


_COLOUR = ("animal", "thing", "food", "book")
ADJECTIVES = (
    Adjective("big", "nagy", "nagy", "nagyok", ("animal", "person", "thing", "food", "book")),
    Adjective("small", "kis", "kicsi", "kicsik", ("animal", "person", "thing", "food", "book")),
    Adjective("red", "piros", "piros", "pirosak", _COLOUR),
    Adjective("blue", "kék", "kék", "kékek", ("thing", "book")),
    Adjective("green", "zöld", "zöld", "zöldek", ("thing", "food")),
    Adjective("yellow", "sárga", "sárga", "sárgák", _COLOUR),
    Adjective("white", "fehér", "fehér", "fehérek", _COLOUR),
    Adjective("black", "fekete", "fekete", "feketék", _COLOUR),
    Adjective("new", "új", "új", "újak", ("thing", "book")),
    Adjective("beautiful", "szép", "szép", "szépek", ("animal", "person", "thing", "book")),
    Adjective("happy", "boldog", "boldog", "boldogok", ANIMATE),
    Adjective("hungry", "éhes", "éhes", "éhesek", ANIMATE),
    Adjective("tired", "fáradt", "fáradt", "fáradtak", ANIMATE),
    Adjective("fast", "gyors", "gyors", "gyorsak", ("animal", "thing")),
    Adjective("clean", "tiszta", "tiszta", "tiszták", ("thing", "book")),
    Adjective("warm", "meleg", "meleg", "melegek", ("food",)),
    Adjective("sweet", "édes", "édes", "édesek", ("food",)),
)


@dataclass(frozen=True)
class Verb:
    en: str  # base form; "look for" keeps its particle
    en_3sg: str
    hu: dict[str, dict[str, str]]
    objects: tuple[str, ...]  # noun kinds it takes; empty = intransitive

    @property
    def hu_citation(self) -> str:
        return self.hu["indef"]["sg3"]


_ANY = ("animal", "person", "food", "thing", "book", "name")
_OBJECTS = ("animal", "food", "thing", "book")
VERBS = (
    Verb("see", "sees", conjugate("lát"), _ANY),
    Verb("like", "likes", conjugate("szeret"), _ANY),
    Verb("want", "wants", conjugate("akar"), ("animal", "food", "thing", "book")),
    Verb("find", "finds", conjugate("talál"), _OBJECTS),
    Verb("bring", "brings", conjugate("hoz"), ("food", "thing", "book")),
    Verb("look for", "looks for", conjugate("keres"), _ANY),
    Verb("hold", "holds", conjugate("fog"), ("animal", "thing", "book")),
    Verb("wash", "washes", conjugate("mos"), ("animal", "thing")),
    Verb("draw", "draws", conjugate("rajzol"), _ANY),
    Verb("watch", "watches", conjugate("néz"), ("animal", "person", "thing", "name")),
    Verb("read", "reads", conjugate("olvas"), ("book",)),
    Verb("throw", "throws", conjugate("dob"), ("thing",)),
    Verb("know", "knows", conjugate("ismer"), ("animal", "person", "name")),
    Verb("hug", "hugs", conjugate("ölel"), ("animal", "person", "name")),
    Verb("pull", "pulls", conjugate("húz"), ("thing",)),
    Verb("cook", "cooks", conjugate("főz"), ("food",)),
    Verb("eat", "eats", _forms("eszem eszik eszünk esznek", "eszem eszi esszük eszik"), ("food",)),
    Verb("buy", "buys", _forms("veszek vesz veszünk vesznek", "veszem veszi vesszük veszik"),
         ("food", "thing", "book")),
)
INTRANSITIVE = (
    Verb("sleep", "sleeps", _forms("alszom alszik alszunk alszanak"), ()),
    Verb("play", "plays", _forms("játszom játszik játszunk játszanak"), ()),
    Verb("swim", "swims", _forms("úszom úszik úszunk úsznak"), ()),
    Verb("run", "runs", conjugate("fut"), ()),
    Verb("sit", "sits", conjugate("ül"), ()),
    Verb("sing", "sings", conjugate("énekel"), ()),
    Verb("dance", "dances", conjugate("táncol"), ()),
    Verb("walk", "walks", conjugate("sétál"), ()),
    Verb("wait", "waits", conjugate("vár"), ()),
    Verb("laugh", "laughs", conjugate("nevet"), ()),
)
PLACES = (("garden", "kert"), ("house", "ház"), ("park", "park"), ("forest", "erdő"),
          ("school", "iskola"), ("kitchen", "konyha"), ("room", "szoba"), ("town", "város"),
          ("village", "falu"))
NUMBERS = (("two", "két"), ("three", "három"), ("four", "négy"), ("five", "öt"))
COPULA_HU = {"sg1": "vagyok", "sg3": "van", "pl1": "vagyunk", "pl3": "vannak"}
COPULA_EN = {"sg1": "am", "sg3": "is", "pl1": "are", "pl3": "are"}


# --- meanings and their two renderings ---------------------------------------------------------


@dataclass(frozen=True)
class Phrase:
    """A noun phrase in both languages, with what the grammar needs to know about it."""

    en: str
    hu: str
    hu_accusative: str
    person: str  # sg1 sg3 pl1 pl3
    definite: bool
    noun: Noun | None = None


def _en_article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(rng: random.Random, kinds: tuple[str, ...], allow_plural: bool = True) -> Phrase:
    """'the red ball' / 'a ball' / 'the cats' / 'Anna', in both languages."""
    kind = rng.choice(kinds)
    if kind == "name":
        name, accusative = rng.choice(NAMES)
        return Phrase(name, name, accusative, "sg3", True)
    noun = rng.choice([n for n in NOUNS if n.kind == kind])
    adjective = rng.choice([None, None, *[a for a in ADJECTIVES if kind in a.kinds]])
    plural = allow_plural and rng.random() < 0.25
    definite = plural or rng.random() < 0.5
    en_noun = noun.en_plural if plural else noun.en
    hu_noun, hu_acc = ((noun.hu_plural, noun.hu_plural_accusative) if plural
                       else (noun.hu, noun.hu_accusative))
    en_words = f"{adjective.en} {en_noun}" if adjective else en_noun
    hu_pre = f"{adjective.hu} " if adjective else ""
    if definite:
        hu_art = article(hu_pre or hu_noun)
        en, hu, acc = f"the {en_words}", f"{hu_art} {hu_pre}{hu_noun}", f"{hu_art} {hu_pre}{hu_acc}"
    else:
        en = f"{_en_article(en_words)} {en_words}"
        hu, acc = f"egy {hu_pre}{hu_noun}", f"egy {hu_pre}{hu_acc}"
    return Phrase(en, hu, acc, "pl3" if plural else "sg3", definite, noun)


def subject(rng: random.Random, kinds: tuple[str, ...] = (*ANIMATE, "name")) -> Phrase:
    roll = rng.random()
    if roll < 0.12:
        return Phrase("I", "", "", "sg1", True)
    if roll < 0.22:
        return Phrase("we", "", "", "pl1", True)
    return noun_phrase(rng, kinds)


def place(rng: random.Random) -> tuple[str, str]:
    en, hu = rng.choice(PLACES)
    where = inessive(hu)
    return f"in the {en}", f"{article(where)} {where}"


def _en_verb(verb: Verb, person: str, negated: bool) -> str:
    if negated:
        return f"{'does' if person == 'sg3' else 'do'} not {verb.en}"
    return verb.en_3sg if person == "sg3" else verb.en


def _sentence(*words: str) -> str:
    text = " ".join(w for w in words if w)
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class Pair:
    en: str
    hu: str


def action(rng: random.Random, subj: Phrase | None = None) -> tuple[Pair, dict]:
    """Subject + verb (+ object) (+ place), possibly negated; returns the facts for Q&A too."""
    subj = subj or subject(rng)
    negated = rng.random() < 0.15
    transitive = rng.random() < 0.7
    verb = rng.choice(VERBS if transitive else INTRANSITIVE)
    obj = noun_phrase(rng, verb.objects) if transitive else None
    where = place(rng) if (not transitive or rng.random() < 0.4) else ("", "")
    conjugation = "def" if obj is not None and obj.definite else "indef"
    hu_verb = verb.hu[conjugation][subj.person]
    en = _sentence(subj.en, _en_verb(verb, subj.person, negated), obj.en if obj else "", where[0])
    hu = _sentence(subj.hu, "nem" if negated else "", hu_verb, obj.hu_accusative if obj else "",
                   where[1])
    return Pair(en, hu), {"subject": subj, "verb": verb, "object": obj, "place": where,
                          "negated": negated}


def description(rng: random.Random, subj: Phrase | None = None) -> Pair:
    """'The cats are small.' -> 'A macskák kicsik.'; 'I am happy.' -> 'Boldog vagyok.'"""
    subj = subj or subject(rng)
    kind = subj.noun.kind if subj.noun else "person"
    adjective = rng.choice([a for a in ADJECTIVES if kind in a.kinds])
    negated = rng.random() < 0.15
    plural = subj.person in ("pl1", "pl3")
    predicate = adjective.hu_predicate_plural if plural else adjective.hu_predicate
    en = _sentence(subj.en, COPULA_EN[subj.person], "not" if negated else "", adjective.en)
    if subj.person in ("sg1", "pl1"):  # the copula stays: (Nem) vagyok boldog / Boldog vagyok
        hu = _sentence("nem", COPULA_HU[subj.person], predicate) if negated else _sentence(
            predicate, COPULA_HU[subj.person])
    else:
        hu = _sentence(subj.hu, "nem" if negated else "", predicate)
    return Pair(en, hu)


def location(rng: random.Random) -> Pair:
    """'The cat is in the garden.' / 'There are three cats in the park.'"""
    en_where, hu_where = place(rng)
    if rng.random() < 0.5:
        subj = subject(rng)
        en = _sentence(subj.en, COPULA_EN[subj.person], en_where)
        hu = _sentence(subj.hu, hu_where, COPULA_HU[subj.person])
        return Pair(en, hu)
    noun = rng.choice([n for n in NOUNS if n.kind != "person"])
    if rng.random() < 0.5:
        return Pair(_sentence("there is", _en_article(noun.en), noun.en, en_where),
                    _sentence("van egy", noun.hu, hu_where))
    en_number, hu_number = rng.choice(NUMBERS)  # numerals take a singular noun in Hungarian
    return Pair(_sentence("there are", en_number, noun.en_plural, en_where),
                _sentence(hu_number, noun.hu, "van", hu_where))


def sentence(rng: random.Random) -> Pair:
    roll = rng.random()
    if roll < 0.6:
        return action(rng)[0]
    return description(rng) if roll < 0.8 else location(rng)


def story(rng: random.Random) -> Pair:
    """A few linked sentences about one hero: something found is then 'the' thing."""
    if rng.random() < 0.4:
        name, _ = rng.choice(NAMES)
        hero = Phrase(name, name, "", "sg3", True)
        intro = Pair(f"This is {name}.", f"Ez {name}.")
    else:
        noun = rng.choice([n for n in NOUNS if n.kind == "animal"])
        adjective = rng.choice([a for a in ADJECTIVES if "animal" in a.kinds])
        hero = Phrase(f"the {noun.en}", f"{article(noun.hu)} {noun.hu}", "", "sg3", True, noun)
        intro = Pair(f"This is {_en_article(adjective.en)} {adjective.en} {noun.en}.",
                     f"Ez egy {adjective.hu} {noun.hu}.")
    parts = [intro, description(rng, hero)]
    for _ in range(rng.randint(1, 3)):
        verb = rng.choice([v for v in VERBS if v.en != "find"
                           and ("food" in v.objects or "thing" in v.objects)])
        kind = rng.choice([k for k in ("food", "thing") if k in verb.objects])
        noun = rng.choice([n for n in NOUNS if n.kind == kind])
        en_where, hu_where = place(rng)
        find = Pair(_sentence(hero.en, "finds", _en_article(noun.en), noun.en, en_where),
                    _sentence(hero.hu, "talál egy", noun.hu_accusative, hu_where))
        hu_the = f"{article(noun.hu)} {noun.hu_accusative}"
        use = Pair(_sentence("then", hero.en, verb.en_3sg, "the", noun.en),
                   _sentence("aztán", hero.hu, verb.hu["def"]["sg3"], hu_the))
        parts += [find, use]
    ending = rng.choice(INTRANSITIVE)
    parts.append(Pair(_sentence("in the evening", hero.en, ending.en_3sg),
                      _sentence("este", hero.hu, ending.hu["indef"]["sg3"])))
    return Pair(" ".join(p.en for p in parts), " ".join(p.hu for p in parts))


# --- chat-form lines (through lantern.chat_template) --------------------------------------------


def translation(rng: random.Random) -> str:
    pair = sentence(rng) if rng.random() < 0.85 else story(rng)
    if rng.random() < 0.5:
        return example(pair.en, pair.hu, "Translate English to Hungarian.")
    return example(pair.hu, pair.en, "Translate Hungarian to English.")


def _word_question(rng: random.Random) -> tuple[str, str]:
    noun = rng.choice(NOUNS)
    roll = rng.random()
    if roll < 0.25:
        return (f'What is the Hungarian word for "{noun.en}"?',
                f'The Hungarian word for "{noun.en}" is "{noun.hu}".')
    if roll < 0.5:
        return (f'What does "{noun.hu}" mean in English?', f'"{noun.hu}" means "{noun.en}".')
    if roll < 0.75:
        return (f'What is the plural of the Hungarian word "{noun.hu}"?',
                f'The plural of "{noun.hu}" is "{noun.hu_plural}".')
    return (f'Mi a "{noun.hu}" szó tárgyesete?', f'A "{noun.hu}" tárgyesete "{noun.hu_accusative}".')


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    op = rng.choice("+-")
    a, b = (a, b) if op == "+" or a >= b else (b, a)
    result = a + b if op == "+" else a - b
    question = rng.choice([f"What is {a} {op} {b}?", f"Mennyi {a} {op} {b}?"])
    return (question, f"{a} {op} {b} = {result}")


def _reading(rng: random.Random) -> tuple[str, str]:
    """Q&A about a sentence: where is it, what does it do to what (answers in the accusative)."""
    subj = noun_phrase(rng, ANIMATE, allow_plural=False)
    while True:
        pair, facts = action(rng, subj)
        if facts["object"] is not None and not facts["negated"]:
            break
    obj, verb = facts["object"], facts["verb"]
    hu_subject = subj.hu if subj.definite else f"{article(subj.noun.hu)} {subj.noun.hu}"
    en_subject = subj.en if subj.definite else f"the {subj.noun.en}"
    if rng.random() < 0.5:
        return (f"{pair.en} What does {en_subject} {verb.en}?",
                obj.en[0].upper() + obj.en[1:] + ".")
    question = f"Mit {verb.hu['indef']['sg3']} {hu_subject}?"
    return (f"{pair.hu} {question}", obj.hu_accusative[0].upper() + obj.hu_accusative[1:] + ".")


def _make_plural(rng: random.Random) -> tuple[str, str]:
    noun = rng.choice([n for n in NOUNS if n.kind in ANIMATE])
    verb = rng.choice(INTRANSITIVE)
    singular = Pair(_sentence("the", noun.en, verb.en_3sg),
                    _sentence(article(noun.hu), noun.hu, verb.hu["indef"]["sg3"]))
    plural = Pair(_sentence("the", noun.en_plural, verb.en),
                  _sentence(article(noun.hu_plural), noun.hu_plural, verb.hu["indef"]["pl3"]))
    if rng.random() < 0.5:
        return (f"Make this sentence plural: {singular.en}", plural.en)
    return (f"Tedd többes számba: {singular.hu}", plural.hu)


def _count_words(rng: random.Random) -> tuple[str, str]:
    pair = sentence(rng)
    text = rng.choice((pair.en, pair.hu))
    return (f"How many words are in this sentence? {text}", str(len(text.split())))


# Each kind draws one (user, assistant) exchange.
INSTRUCTION_KINDS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "word": _word_question, "arithmetic": _arithmetic, "reading": _reading,
    "plural": _make_plural, "count": _count_words,
}
SYSTEM_PROMPTS = (None, "You are a helpful assistant.", "Answer briefly.",
                  "Te egy segítőkész asszisztens vagy.")


def instruction(rng: random.Random, kinds: tuple[str, ...] = tuple(INSTRUCTION_KINDS)) -> str:
    user, assistant = INSTRUCTION_KINDS[rng.choice(kinds)](rng)
    return example(user, assistant, rng.choice(SYSTEM_PROMPTS))


# --- the generator -----------------------------------------------------------------------------


def generate_lines(sentences: int = 10000, stories: int = 5000, translations: int = 3000,
                   instructions: int = 2000, seed: int = 0,
                   instruction_kinds: tuple[str, ...] = tuple(INSTRUCTION_KINDS)) -> Iterator[str]:
    """The built-in task mix, shuffled, one example per line; the same seed gives the same lines."""
    rng = random.Random(seed)
    plan = (["sentence"] * sentences + ["story"] * stories + ["translation"] * translations
            + ["instruction"] * instructions)
    rng.shuffle(plan)
    for item in plan:
        if item == "sentence":
            pair = sentence(rng)
            yield pair.en if rng.random() < 0.5 else pair.hu
        elif item == "story":
            pair = story(rng)
            yield pair.en if rng.random() < 0.5 else pair.hu
        elif item == "translation":
            yield translation(rng)
        else:
            yield instruction(rng, instruction_kinds)


def synth_text(lines: Iterator[str]) -> Iterator[str]:
    """Each example closed by `<eos>` so a model trained on it learns where answers stop."""
    for line in lines:
        yield f"{line}{EOS}\n"
