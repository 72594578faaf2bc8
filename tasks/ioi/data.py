"""IOI prompts after Wang et al. 2022 (arXiv 2211.00593), generator of redwoodresearch/Easy-Transformer.

A prompt is a template with two names: ``[A]`` is the indirect object (IO), ``[B]`` the subject (S).
BABA templates name S first ("Then, [B] and [A] went ..."), ABBA templates swap the two names in the
first clause only. The prompt stops before the final name, which the model should complete with IO.

Counterfactual "ABC" prompts fill the three name slots (IO, S1, S2) with three other distinct names:
the same template with no name repeated, so no information on which name is the IO. They give the
per-template mean used for mean ablation (Wang et al. ablate with the ABC distribution, per template).

Splits are fixed (they do not depend on the seed), so that the zoo model's held-out names and templates
are the task's held-out names and templates:

- ``train``: names of ``TRAIN_NAMES`` in templates of ``TRAIN_TEMPLATES`` (what the zoo model saw in IOI
  sentences and what methods see);
- ``test``: names of ``HELDOUT_NAMES`` in templates of ``HELDOUT_TEMPLATES`` (neither seen in IOI
  sentences; held-out names still occur in the zoo model's filler text).
- ``val``: fresh prompts from the train names and templates (in-distribution, never shown to methods);
  the attribute-coverage metrics use it, since a concept such as "IO = Mary" needs its value in both
  the label split and the scored split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# 100 first names (single GPT-2 tokens with a leading space), after Easy-Transformer's NAMES.
NAMES: tuple[str, ...] = (
    "Michael", "Christopher", "Jessica", "Matthew", "Ashley", "Jennifer", "Joshua", "Amanda", "Daniel",
    "David", "James", "Robert", "John", "Joseph", "Andrew", "Ryan", "Brandon", "Jason", "Justin", "Sarah",
    "William", "Jonathan", "Stephanie", "Brian", "Nicole", "Nicholas", "Anthony", "Heather", "Eric",
    "Elizabeth", "Adam", "Megan", "Melissa", "Kevin", "Steven", "Thomas", "Timothy", "Christina", "Kyle",
    "Rachel", "Laura", "Lauren", "Amber", "Brittany", "Danielle", "Richard", "Kimberly", "Jeffrey", "Amy",
    "Crystal", "Michelle", "Tiffany", "Jeremy", "Benjamin", "Mark", "Emily", "Aaron", "Charles", "Rebecca",
    "Jacob", "Stephen", "Patrick", "Sean", "Erin", "Jamie", "Kelly", "Samantha", "Nathan", "Sara", "Dustin",
    "Paul", "Angela", "Tyler", "Scott", "Katherine", "Andrea", "Gregory", "Erica", "Mary", "Travis", "Lisa",
    "Kenneth", "Bryan", "Lindsey", "Kristen", "Jose", "Alexander", "Jesse", "Katie", "Lindsay", "Shannon",
    "Vanessa", "Courtney", "Christine", "Alicia", "Cody", "Allison", "Bradley", "Samuel", "Rose",
)  # fmt: skip

PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")

# The 15 BABA templates of Easy-Transformer (ioi_dataset.py, BABA_TEMPLATES).
BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)


def _abba(template: str) -> str:
    """Swap the first [B] and the first [A] (the first clause), as Easy-Transformer builds ABBA."""
    i, j = template.index("[B]"), template.index("[A]")
    assert i < j
    return template[:i] + "[A]" + template[i + 3 : j] + "[B]" + template[j + 3 :]


ABBA_TEMPLATES: tuple[str, ...] = tuple(_abba(t) for t in BABA_TEMPLATES)

# Fixed held-out sets: every fifth name, and three templates (in both orders).
HELDOUT_NAMES: tuple[str, ...] = NAMES[4::5]
TRAIN_NAMES: tuple[str, ...] = tuple(n for n in NAMES if n not in HELDOUT_NAMES)
HELDOUT_TEMPLATES: tuple[int, ...] = (3, 9, 11)
TRAIN_TEMPLATES: tuple[int, ...] = tuple(i for i in range(len(BABA_TEMPLATES)) if i not in HELDOUT_TEMPLATES)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Prompt:
    """One IOI prompt (without its final name) and its ABC counterfactual."""

    prompt: str
    io: str
    s: str
    template: int
    order: str  # "BABA" or "ABBA"
    place: str
    object: str
    abc_prompt: str
    full: str  # prompt + " " + io, the text a language model is trained on


def _fill(template: str, a: str, b: str, place: str, obj: str) -> str:
    return template.replace("[A]", a).replace("[B]", b).replace("[PLACE]", place).replace("[OBJECT]", obj)


def _fill_abc(template: str, a: str, b: str, c: str, place: str, obj: str) -> str:
    """Fill the first [A] / [B] with a / b and the later [B] (S2) with c; the final [A] is dropped."""
    first_b = template.index("[B]")
    second_b = template.index("[B]", first_b + 3)
    template = template[:second_b] + "[C]" + template[second_b + 3 :]
    return template.replace("[A]", a).replace("[B]", b).replace("[C]", c).replace("[PLACE]", place).replace(
        "[OBJECT]", obj
    )


def split_names_templates(split: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Names and template ids a split draws from.

    Raises:
        ValueError: unknown split.
    """
    if split in ("train", "val"):
        return TRAIN_NAMES, TRAIN_TEMPLATES
    if split == "test":
        return HELDOUT_NAMES, HELDOUT_TEMPLATES
    raise ValueError(f"unknown IOI split {split!r}; expected one of {SPLITS}")


def generate_prompts(
    n: int, seed: int, names: tuple[str, ...], templates: tuple[int, ...], orders: tuple[str, ...] = ("BABA", "ABBA")
) -> list[Prompt]:
    """``n`` IOI prompts, half BABA and half ABBA ("mixed"), deterministic in ``seed``.

    Args:
        n: number of prompts.
        seed: fixes every choice.
        names: the names IO and S are drawn from (distinct within a prompt); the ABC names too.
        templates: template ids (indices of ``BABA_TEMPLATES``).
        orders: which name orders to alternate.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        order = orders[i % len(orders)]
        t = rng.choice(templates)
        template = (BABA_TEMPLATES if order == "BABA" else ABBA_TEMPLATES)[t]
        io, s, a2, b2, c2 = rng.sample(names, 5) if len(names) >= 5 else (*rng.sample(names, 2), *rng.sample(names, 3))
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        full = _fill(template, io, s, place, obj)
        prompt = full[: full.rindex(" " + io)]
        abc_full = _fill_abc(template, a2, b2, c2, place, obj)
        abc_prompt = abc_full[: abc_full.rindex(" " + a2)]
        out.append(Prompt(prompt, io, s, t, order, place, obj, abc_prompt, full))
    return out


def make_split(split: str, n: int, seed: int):
    """The ``split`` of the IOI data as a ``datasets.Dataset`` (columns: the fields of :class:`Prompt`).

    The seed is offset per split so the three splits never share a draw.
    """
    import datasets

    names, templates = split_names_templates(split)
    prompts = generate_prompts(n, seed * 1000 + SPLITS.index(split), names, templates)
    cols = {k: [getattr(p, k) for p in prompts] for k in Prompt.__dataclass_fields__}
    return datasets.Dataset.from_dict(cols, split=split)
