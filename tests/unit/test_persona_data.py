"""Persona statements: templated lexicons, the checkerboard split, hand-written pairs, labels."""

import torch

from deeprobe_bench.tasks.persona import data
from deeprobe_bench.tasks.persona.metrics import concept_labels


def test_templated_statements_split_into_halves_with_every_template_and_entry_in_both():
    rows = data.templated_statements()
    assert len(rows) == 3 * 2 * 16 * 12
    train = [s for s in rows if s.split == "train"]
    test = [s for s in rows if s.split == "test"]
    assert len(train) == len(test) and not {s.text for s in train} & {s.text for s in test}
    for t in data.TRAITS:
        for pole in data.POLES:
            for word in data.ADJECTIVES[t][pole]:
                for half in (train, test):
                    assert any(s.text.endswith(f" {word}.") and s.trait == t for s in half)
    # each contrast pair is one template and entry with both poles, in one half
    by_pair = {}
    for s in rows:
        by_pair.setdefault((s.trait, s.pair), []).append(s)
    assert all(len(v) == 2 and {x.pole for x in v} == {"+", "-"} and len({x.split for x in v}) == 1 for v in by_pair.values())


def test_lexicons_do_not_cross_traits_or_poles():
    seen = {}
    for lex in (data.ADJECTIVES, data.VERB_PHRASES):
        for t in data.TRAITS:
            for pole in data.POLES:
                assert len(lex[t][pole]) == 12
                for entry in lex[t][pole]:
                    assert seen.setdefault(entry, (t, pole)) == (t, pole), entry
    pole_words = {w for d in data.POLE_WORDS.values() for w in d.values()}
    assert not pole_words & set(seen)  # the instruction words never appear in statements


def test_handwritten_pairs_cover_every_trait():
    rows = data.handwritten_statements()
    for t in data.TRAITS:
        mine = [s for s in rows if s.trait == t]
        assert len(mine) >= 100 and len({s.text for s in mine}) == len(mine)
        assert {s.split for s in mine} == {"train", "test"}


def test_prompts_follow_the_persona_evals_format():
    assert data.question("I am kind.") == 'Is the following statement something you would say? "I am kind." Answer:'
    assert data.instruction("agreeableness", "-") == "You are disagreeable."
    assert data.with_system("You are kind.", data.SYSTEM_PROMPT) == "You are an assistant. You are kind."
    assert data.with_system("You are kind.", None) == data.with_system("You are kind.", "") == "You are kind."
    assert data.concepts() == ["agreeableness+", "agreeableness-", "conscientiousness+", "conscientiousness-",
                               "extraversion+", "extraversion-"]  # fmt: skip


def test_concept_labels_yes_expresses_the_statement_pole_and_no_the_other():
    rows = [data.Statement("I am kind.", "agreeableness", "+", "train", 0),
            data.Statement("I am shy.", "extraversion", "-", "train", 0)]  # fmt: skip
    lab = concept_labels(rows, data.concepts())
    c = data.concepts().index
    assert lab.sum() == 4 and lab.sum(1).tolist() == [1, 1, 1, 1]
    assert lab[0, c("agreeableness+")] and lab[1, c("agreeableness-")]
    assert lab[2, c("extraversion-")] and lab[3, c("extraversion+")]
    assert lab.dtype == torch.bool


def test_persona_contrast_labels_follow_the_instruction():
    rows = [data.Statement("I am shy.", "extraversion", "-", "train", 0)]
    lab = concept_labels(rows, data.concepts(), "persona")
    c = data.concepts().index
    assert lab[0, c("extraversion+")] and lab[1, c("extraversion-")] and lab.sum() == 2
