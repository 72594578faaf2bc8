from deeprobe_bench.tasks.ioi import data


def test_names_templates_and_splits_follow_wang_et_al():
    assert len(data.NAMES) == 100 and len(set(data.NAMES)) == 100
    assert len(data.BABA_TEMPLATES) == len(data.ABBA_TEMPLATES) == 15
    assert len(data.PLACES) == len(data.OBJECTS) == 8
    assert not set(data.TRAIN_NAMES) & set(data.HELDOUT_NAMES)
    assert not set(data.TRAIN_TEMPLATES) & set(data.HELDOUT_TEMPLATES)
    assert data.ABBA_TEMPLATES[0] == "Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]"


def test_prompts_are_ioi_and_abc_has_no_repeated_name():
    for p in data.generate_prompts(200, seed=3, names=data.TRAIN_NAMES, templates=data.TRAIN_TEMPLATES):
        words = p.prompt.replace(",", " ").replace(".", " ").split()
        assert words.count(p.s) == 2 and words.count(p.io) == 1 and p.io != p.s
        assert p.full == p.prompt + " " + p.io
        first_clause = p.prompt.index(p.io) < p.prompt.index(p.s)
        assert first_clause == (p.order == "ABBA")
        abc_names = [w for w in p.abc_prompt.replace(",", " ").replace(".", " ").split() if w in data.NAMES]
        assert len(abc_names) == 3 and len(set(abc_names)) == 3
        assert len(p.abc_prompt.split()) == len(p.prompt.split())


def test_splits_are_deterministic_and_disjoint_by_names_and_templates():
    a, b = data.make_split("test", 50, seed=0), data.make_split("test", 50, seed=0)
    assert a["prompt"] == b["prompt"]
    assert set(a["io"]) | set(a["s"]) <= set(data.HELDOUT_NAMES)
    assert set(a["template"]) <= set(data.HELDOUT_TEMPLATES)
    tr = data.make_split("train", 50, seed=0)
    assert set(tr["io"]) | set(tr["s"]) <= set(data.TRAIN_NAMES)
    assert tr["prompt"] != data.make_split("val", 50, seed=0)["prompt"]
