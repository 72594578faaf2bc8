"""Autointerp (explanation then detection) through the local judge server: oracle ~1, random ~chance."""

import pytest
import torch

from deeprobe_bench.api import ExampleSet, FeatureSet
from deeprobe_bench.judge import JudgeClient, LocalJudgeServer, local_config
from deeprobe_bench.metrics.autointerp import AutointerpConfig, score_activations, score_features


def make_examples(n=300, d=6, seed=0) -> ExampleSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    labels = torch.stack([x[:, 0] > 0.5, x[:, 1] > 0.5, x[:, 2] > 0.0], dim=1)
    texts = [ExampleSet.mark(f"row {i}: ", "tok") for i in range(n)]
    return ExampleSet(texts, x, labels, ["alpha", "beta", "gamma"], name="toy")


@pytest.fixture(scope="module")
def judge():
    with LocalJudgeServer() as server:
        c = JudgeClient(local_config(server.base_url, cache_path=""))
        yield c
        c.close()


def test_an_oracle_feature_scores_one_random_features_score_about_chance_and_dead_ones_chance(judge):
    ex = make_examples()
    x = ex.acts
    oracle = (x[:, 0] - 0.5).clamp(min=0)  # fires exactly where "alpha" holds
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(len(ex), 30, generator=g) * (torch.rand(len(ex), 30, generator=g) < 0.3)
    dead = torch.zeros(len(ex))
    acts = torch.cat([oracle[:, None], noise, dead[:, None]], dim=1)
    scores = score_activations(acts, ex, judge, seed=0)
    assert scores[0].score == 1.0 and scores[0].judged and "alpha" in scores[0].explanation
    rnd = [s.score for s in scores[1:31]]
    assert 0.35 < sum(rnd) / len(rnd) < 0.65
    assert scores[-1].score == 0.5 and not scores[-1].judged


def test_judge_score_of_a_feature_set_uses_its_ranking_and_reruns_from_the_cache(judge):
    ex = make_examples()
    d = ex.acts.shape[1]
    dirs = torch.eye(d)[:3]
    thresholds = torch.tensor([0.5, 0.5, 0.0])  # each column fires exactly where its concept holds
    fs = FeatureSet(
        "h", dirs, encoder=lambda v: (v[..., :3] - thresholds).clamp(min=0), scores=torch.tensor([0.0, 2.0, 1.0])
    )
    cfg = AutointerpConfig(n_features=2)
    res = score_features(fs, ex, judge, seed=3, config=cfg)
    assert [f.explanation.split('"')[1] for f in res.features] == ["beta", "gamma"]  # best-ranked first
    assert res.value == 1.0
    calls = judge.usage().calls
    again = score_features(fs, ex, judge, seed=3, config=cfg)
    assert again.value == res.value and judge.usage().calls == calls  # same draws, all cached


def test_feature_acts_must_match_the_examples(judge):
    ex = make_examples(n=20)
    with pytest.raises(ValueError, match="feature_acts"):
        score_activations(torch.zeros(19, 2), ex, judge)


def test_a_dense_detector_such_as_a_probe_probability_scores_like_the_concept_it_detects(judge):
    ex = make_examples()
    x = ex.acts
    probability = torch.sigmoid(8 * (x[:, 1] - 0.5))  # > 0 everywhere, about 1 where "beta" holds
    flat = torch.sigmoid(torch.randn(len(ex), generator=torch.Generator().manual_seed(5)))  # dense and meaningless
    scores = score_activations(torch.stack([probability, flat], dim=1), ex, judge, seed=0)
    assert scores[0].score >= 0.9 and "beta" in scores[0].explanation
    assert scores[1].score <= 0.7


def test_examples_from_tokens_mark_the_site_token_and_keep_the_context():
    from deeprobe_bench.metrics.autointerp import examples_from_tokens
    from deeprobe_bench.subject import word_level_tokenizer

    tok = word_level_tokenizer(["You", "are", "kind", "mean", ".", "Answer", ":"])
    ids = lambda ws: [tok.convert_tokens_to_ids(w) for w in ["<bos>", *ws]]  # noqa: E731
    rows = [ids(["You", "are", "kind", ".", "Answer", ":"]), ids(["You", "are", "mean", "."]) + [0, 0]]
    tokens, lengths, site = torch.tensor(rows), torch.tensor([7, 5]), torch.tensor([3, 3])
    ex = examples_from_tokens(tok, tokens, lengths, site, torch.zeros(2, 4), torch.tensor([[True, False], [False, True]]),
                              ["nice", "nasty"], name="toy")  # fmt: skip
    assert ex.texts == ["You are <<kind>> . Answer :", "You are <<mean>> ."]
    assert ex.concepts_of(1) == ["nasty"] and ex.name == "toy"


def rare_examples(n=400, seed=0) -> ExampleSet:
    """Six disjoint concepts of base rate 5-20% (at most one per row): ten random rows share none by half."""
    g = torch.Generator().manual_seed(seed)
    which = torch.multinomial(torch.tensor([0.05, 0.1, 0.1, 0.15, 0.2, 0.2, 0.2]), n, replacement=True, generator=g)
    labels = torch.stack([which == k for k in range(6)], 1)  # class 6: no concept
    acts = torch.randn(n, 4, generator=g)
    texts = [ExampleSet.mark(f"rare row {i}: ", "tok") for i in range(n)]
    return ExampleSet(texts, acts, labels, [f"c{k}" for k in range(6)], name="rare toy")


def test_otsu_threshold_splits_two_groups_and_refuses_a_constant():
    from deeprobe_bench.metrics.autointerp import otsu_threshold

    assert otsu_threshold([0.0, 0.0, 0.0, 1.0, 1.0]) == 0.5
    assert otsu_threshold([-3.0, -2.9, -3.1, 5.0, 5.2]) == pytest.approx(1.05)  # midway between the groups
    assert otsu_threshold([2.0] * 7) is None


def test_explanation_and_detection_rows_are_disjoint_and_both_hold_positives_of_a_rare_concept():
    from deeprobe_bench.metrics.autointerp import _plan

    acts = [0.0] * 390 + [float(k + 1) for k in range(10)]  # ten activating rows, distinct strengths
    cfg = AutointerpConfig()
    for seed in range(20):
        plan, reason, n_active, rule = _plan(0, acts, cfg, seed, "f")
        assert reason == "" and rule == "> 0" and n_active == 10
        positives = {i for i, t in zip(plan.mix, plan.truth, strict=True) if t}
        assert not set(plan.explain) & set(plan.mix)  # disjoint
        assert len(plan.explain) == 5 and len(positives) == 5  # the ten positives shared, none used up
        assert 399 in plan.explain or 399 in positives  # the strongest row on one side, the next on the other
        assert ({399, 398} & set(plan.explain)) and ({399, 398, 397} & positives)


def test_a_set_that_reads_the_labels_scores_one_even_on_rare_concepts(judge):
    ex = rare_examples()
    reader = FeatureSet("h", torch.zeros(6, 4), encoder=lambda a: ex.labels.float())  # reads the labels of the rows
    res = score_features(reader, ex, judge, seed=0)
    assert res.n_scored == 6 and res.value >= 0.95
    assert all(f.judged and f.rule == "> 0" for f in res.features)


def test_a_signed_dense_detector_fires_on_its_own_top_quantile(judge):
    ex = rare_examples()
    g = torch.Generator().manual_seed(3)
    signed = torch.where(ex.labels[:, 1], 2.0, -1.0) + 0.3 * torch.randn(len(ex), generator=g)  # no zero to read
    (s,) = score_activations(signed[:, None], ex, judge, seed=0)
    assert s.judged and s.rule.startswith("top") and s.score >= 0.95 and "c1" in s.explanation
    assert s.n_active == int(ex.labels[:, 1].sum())  # its firing rate is the concept's base rate


def test_unscorable_features_are_left_out_and_counted_and_a_null_set_scores_chance(judge):
    ex = rare_examples()
    g = torch.Generator().manual_seed(4)
    const = torch.ones(len(ex))
    noise = torch.randn(len(ex), generator=g)
    scores = score_activations(torch.stack([const, noise], 1), ex, judge, seed=0)
    assert not scores[0].judged and scores[0].reason == "constant"
    assert scores[1].judged
    null = FeatureSet("h", torch.zeros(2, 4), encoder=lambda a: torch.stack([const, noise], 1))
    res = score_features(null, ex, judge, seed=0)
    assert res.n_scored == 1 and abs(res.value - 0.5) <= 0.05
    only_const = score_features(FeatureSet("h", torch.zeros(1, 4), encoder=lambda a: const[:, None]), ex, judge)
    assert (
        only_const.n_scored == 0 and only_const.value == 0.5 and only_const.details()["left_out"] == {"0": "constant"}
    )
    # a dead feature in a good set no longer drags the mean to 0.5: it is left out
    mixed = FeatureSet("h", torch.zeros(2, 4), encoder=lambda a: torch.stack([ex.labels[:, 0].float(), 0 * const], 1))
    res = score_features(mixed, ex, judge, seed=0)
    assert res.n_scored == 1 and res.value == 1.0


def test_a_calibrated_probability_of_a_rare_concept_fires_on_its_expected_share(judge):
    from deeprobe_bench.metrics.autointerp import otsu_threshold

    ex = rare_examples()
    g = torch.Generator().manual_seed(6)
    on = ex.labels[:, 0].nonzero().flatten()  # base rate 5%
    # confident on three rows of the concept, unsure (0.1-0.3) on the others, about 0.01 elsewhere
    p = 0.02 * torch.rand(len(ex), generator=g)
    p[on] = 0.1 + 0.2 * torch.rand(len(on), generator=g)
    p[on[:3]] = 0.99
    assert int((p > otsu_threshold(p.tolist())).sum()) == 3  # Otsu would keep the confident three: too few
    (s,) = score_activations(p[:, None], ex, judge, seed=0)
    assert s.rule.endswith("(mean probability)") and s.judged and s.score >= 0.95
    assert s.n_active == round(float(p.sum())) and 4 <= s.n_active <= len(on)


def test_examples_are_read_at_the_hook_of_the_features():
    resid, mlp = torch.randn(3, 4), torch.randn(3, 8)
    ex = ExampleSet(["<<a>>"] * 3, resid, hook_name="blocks.0.hook_resid_post",
                    acts_at=lambda hook: {"blocks.0.mlp.hook_post": mlp}[hook])  # fmt: skip
    assert ex.acts_for("blocks.0.hook_resid_post") is resid and ex.acts_for("") is resid
    assert ex.acts_for("blocks.0.mlp.hook_post") is mlp  # e.g. MLP neurons are encoded where they read
    bare = ExampleSet(["<<a>>"] * 3, resid, hook_name="blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match="cannot be judged"):
        bare.acts_for("blocks.0.mlp.hook_post")
    assert ExampleSet(["<<a>>"] * 3, resid).acts_for("anything") is resid  # hook unknown: as before
