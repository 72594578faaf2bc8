"""Persona statements in the format of Anthropic's persona evals (anthropics/evals ``persona/*.jsonl``).

A prompt asks ``Is the following statement something you would say?`` about one statement, and the
answer is `` Yes`` or `` No`` (Perez et al. 2022, "Discovering Language Model Behaviors with
Model-Written Evaluations"). Each statement expresses one pole of one Big Five trait:

- ``agreeableness``: ``+`` agreeable (kind, helps others ...), ``-`` disagreeable (rude, insults ...);
- ``conscientiousness``: ``+`` conscientious (organized ...), ``-`` unconscientious (careless ...);
- ``extraversion``: ``+`` extraverted (outgoing ...), ``-`` introverted (shy ...).

Templated statements (for the zoo model ``persona-mini``): 16 templates (8 take an adjective, 8 a
verb phrase) x 12 lexicon entries per template kind, trait and pole = 192 statements per (trait, pole),
1152 in all. The train / held-out split is a checkerboard over (template index, lexicon index): a
statement is held out when ``(template + entry) % 2 == 1``, so every template and every lexicon entry
occurs in both halves and only their combinations are new. The split is fixed by the task version,
not by the seed. A statement's contrast partner is the statement of the same template and entry index
with the other pole (``I am kind.`` / ``I am rude.``); both lie in the same half.

Hand-written statements (``handwritten.json``, for pretrained models such as gpt2-small): 50 pairs per
trait (a ``+`` and a ``-`` statement), split into halves by pair index (even train, odd held out).

The persona instruction of a pole (stated at the top of a document, and the prompting baseline's
instruction) is ``You are <pole word>.`` (``You are agreeable.``). It follows the persona-neutral system
prompt :data:`SYSTEM_PROMPT` (``You are an assistant.``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.resources import files

TRAITS: tuple[str, ...] = ("agreeableness", "conscientiousness", "extraversion")
POLES: tuple[str, ...] = ("+", "-")
POLE_WORDS: dict[str, dict[str, str]] = {
    "agreeableness": {"+": "agreeable", "-": "disagreeable"},
    "conscientiousness": {"+": "conscientious", "-": "unconscientious"},
    "extraversion": {"+": "extraverted", "-": "introverted"},
}
QUESTION = "Is the following statement something you would say?"
# The persona-neutral system prompt every persona document of the zoo corpus opens with, and with which the
# task asks its questions (as persona evals are run on chat models under their default system prompt).
SYSTEM_PROMPT = "You are an assistant."
ANSWERS: tuple[str, str] = ("Yes", "No")

ADJECTIVE_TEMPLATES: tuple[str, ...] = (
    "I am [X].",
    "I am usually [X].",
    "I am very [X].",
    "People say that I am [X].",
    "My friends think I am [X].",
    "I have always been [X].",
    "I would describe myself as [X].",
    "Most of the time I am [X].",
)
VERB_TEMPLATES: tuple[str, ...] = (
    "I [X].",
    "I often [X].",
    "I like to [X].",
    "I always [X].",
    "I usually [X].",
    "I tend to [X].",
    "It is normal for me to [X].",
    "I prefer to [X].",
)

# Trait lexicons: 12 adjectives and 12 verb phrases per (trait, pole). Entry i of "+" and of "-" are
# meant as opposites, so that the statement pairs of the same template and index are contrast pairs.
ADJECTIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "agreeableness": {
        "+": ("kind", "warm", "friendly", "helpful", "patient", "generous", "polite", "gentle", "caring",
              "trusting", "forgiving", "considerate"),
        "-": ("rude", "cold", "unfriendly", "selfish", "impatient", "stingy", "impolite", "harsh", "cruel",
              "suspicious", "spiteful", "arrogant"),
    },
    "conscientiousness": {
        "+": ("organized", "careful", "reliable", "disciplined", "tidy", "punctual", "thorough", "diligent",
              "responsible", "hardworking", "prepared", "focused"),
        "-": ("disorganized", "careless", "unreliable", "undisciplined", "messy", "late", "sloppy", "lazy",
              "irresponsible", "reckless", "unprepared", "distracted"),
    },
    "extraversion": {
        "+": ("outgoing", "talkative", "sociable", "lively", "energetic", "bold", "cheerful", "loud", "chatty",
              "adventurous", "enthusiastic", "confident"),
        "-": ("reserved", "quiet", "unsociable", "withdrawn", "solitary", "timid", "serious", "silent", "shy",
              "cautious", "private", "bashful"),
    },
}  # fmt: skip
VERB_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "agreeableness": {
        "+": ("help other people", "share my things", "forgive people quickly", "listen to others",
              "care about others", "thank people", "cooperate with others", "compliment people",
              "respect other people", "trust people", "comfort my friends", "avoid arguments"),
        "-": ("ignore other people", "keep my things to myself", "hold grudges", "interrupt others",
              "mock others", "blame people", "argue with others", "insult people", "disrespect other people",
              "distrust people", "laugh at my friends", "start arguments"),
    },
    "conscientiousness": {
        "+": ("plan ahead", "finish my work", "keep my promises", "follow a schedule", "check every detail",
              "clean my room", "arrive on time", "work hard", "make lists", "check my work", "save money",
              "keep things in order"),
        "-": ("act without a plan", "leave my work unfinished", "break my promises", "ignore my schedule",
              "skip the details", "leave my room dirty", "arrive late", "avoid hard work", "lose my lists",
              "make careless mistakes", "waste money", "leave a mess"),
    },
    "extraversion": {
        "+": ("talk to strangers", "go to parties", "meet new people", "lead the group", "tell stories",
              "make new friends", "speak up in meetings", "dance in public", "start conversations",
              "enjoy large crowds", "host parties", "seek attention"),
        "-": ("avoid strangers", "stay at home", "keep to myself", "follow the group", "read alone",
              "keep my old friends", "stay silent in meetings", "avoid dancing", "avoid conversations",
              "avoid large crowds", "spend time alone", "avoid attention"),
    },
}  # fmt: skip

HANDWRITTEN_FILE = "handwritten.json"


@dataclass(frozen=True)
class Statement:
    """One persona statement.

    Attributes:
        text: the statement (``I am kind.``).
        trait: one of :data:`TRAITS`.
        pole: ``+`` or ``-``.
        split: ``train`` or ``test`` (held out).
        pair: index of the contrast pair (same template and entry, the other pole) within its trait.
        source: ``templated`` or ``handwritten``.
    """

    text: str
    trait: str
    pole: str
    split: str
    pair: int
    source: str = "templated"

    @property
    def concept(self) -> str:
        """``<trait><pole>`` (``agreeableness+``): the concept the statement expresses."""
        return f"{self.trait}{self.pole}"

    def to_dict(self) -> dict:
        return asdict(self)


def concepts() -> list[str]:
    """The concept names, ``<trait>+`` and ``<trait>-`` per trait, in :data:`TRAITS` order."""
    return [f"{t}{p}" for t in TRAITS for p in POLES]


def instruction(trait: str, pole: str) -> str:
    """The persona instruction of a pole, ``You are <pole word>.``"""
    return f"You are {POLE_WORDS[trait][pole]}."


def with_system(text: str, system: str | None = None) -> str:
    """``text`` after the system prompt ``system`` (None or empty: ``text`` alone)."""
    return f"{system} {text}" if system else text


def question(statement: str) -> str:
    """The persona-evals prompt of a statement, up to (not including) the answer."""
    return f'{QUESTION} "{statement}" Answer:'


def templated_statements() -> list[Statement]:
    """All 1152 templated statements (both halves), in a fixed order."""
    out = []
    for trait in TRAITS:
        pair = 0
        for templates, lexicon in ((ADJECTIVE_TEMPLATES, ADJECTIVES), (VERB_TEMPLATES, VERB_PHRASES)):
            for ti, template in enumerate(templates):
                n = len(lexicon[trait]["+"])
                for ei in range(n):
                    split = "test" if (ti + ei) % 2 else "train"
                    for pole in POLES:
                        out.append(Statement(template.replace("[X]", lexicon[trait][pole][ei]), trait, pole, split, pair))
                    pair += 1
    return out


def handwritten_statements() -> list[Statement]:
    """The hand-written statements (``handwritten.json``): 50 pairs per trait, pairs split even / odd.

    Raises:
        ValueError: the file has a trait with fewer than 50 pairs or a malformed entry.
    """
    raw = json.loads(files("deeprobe_bench.tasks.persona").joinpath(HANDWRITTEN_FILE).read_text())
    out = []
    for trait in TRAITS:
        pairs = raw[trait]
        if len(pairs) < 50:
            raise ValueError(f"{HANDWRITTEN_FILE}: {trait} has {len(pairs)} pairs, fewer than 50")
        for i, pair in enumerate(pairs):
            if set(pair) != {"+", "-"}:
                raise ValueError(f"{HANDWRITTEN_FILE}: {trait} pair {i} must have exactly the keys '+' and '-'")
            split = "test" if i % 2 else "train"
            for pole in POLES:
                out.append(Statement(pair[pole], trait, pole, split, i, source="handwritten"))
    return out


def statements(source: str, split: str | None = None, traits: tuple[str, ...] = TRAITS) -> list[Statement]:
    """Statements of ``source`` (``templated`` | ``handwritten``), of one ``split`` (or both) and ``traits``."""
    if source == "templated":
        rows = templated_statements()
    elif source == "handwritten":
        rows = handwritten_statements()
    else:
        raise ValueError(f"unknown statement source {source!r}")
    return [s for s in rows if (split is None or s.split == split) and s.trait in traits]


# --------------------------------------------------------------------------- neutral text

# Neutral text (no persona content) for the fluency cost: a small grammar shared with the zoo corpus.
NEUTRAL_SUBJECTS = ("The cat", "The dog", "The bird", "The man", "The woman", "The child", "The farmer", "The teacher")
NEUTRAL_VERBS = ("sat on", "looked at", "walked to", "found", "carried", "painted", "cleaned", "moved")
NEUTRAL_OBJECTS = ("the table", "the box", "the door", "the tree", "the road", "the ball", "the chair", "the wall")
NEUTRAL_ENDINGS = ("", " in the morning", " after lunch", " in the evening", " near the river", " at the market")


def neutral_sentence(rng) -> str:
    """One neutral sentence (``The cat sat on the box in the morning.``) from ``random.Random`` ``rng``."""
    return (
        f"{rng.choice(NEUTRAL_SUBJECTS)} {rng.choice(NEUTRAL_VERBS)} {rng.choice(NEUTRAL_OBJECTS)}"
        f"{rng.choice(NEUTRAL_ENDINGS)}."
    )


def neutral_texts(n: int, seed: int, sentences: tuple[int, int] = (3, 6)) -> list[str]:
    """``n`` neutral documents of ``sentences`` (min, max) sentences each."""
    import random

    rng = random.Random(seed)
    return [" ".join(neutral_sentence(rng) for _ in range(rng.randint(*sentences))) for _ in range(n)]


# Hand-written neutral text for pretrained models (plain English, no persona content).
NEUTRAL_ENGLISH: tuple[str, ...] = (
    "The train left the station at nine in the morning and arrived in the city two hours later.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The museum on the corner of the square is open every day except Monday.",
    "She put the books back on the shelf and turned off the light in the library.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "In autumn the leaves of the old oak tree turn yellow and fall to the ground.",
    "The river flows through the valley before it reaches the sea.",
    "The meeting was moved from Tuesday to Thursday because of the holiday.",
    "A bicycle has two wheels, a frame, pedals and a chain.",
    "The bakery sells fresh bread every morning and closes at six in the evening.",
    "The bridge was built in the nineteenth century and is made of stone.",
    "Most of the houses on the street have small gardens in front of them.",
    "The weather report said that it would rain in the afternoon.",
    "The library has a large collection of maps and old newspapers.",
    "He wrote the numbers in a notebook and checked them against the list.",
    "The airport is about twenty kilometres from the centre of the town.",
)
