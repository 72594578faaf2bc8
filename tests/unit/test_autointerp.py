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
    fs = FeatureSet("h", dirs, encoder=lambda v: (v[..., :3] - thresholds).clamp(min=0), scores=torch.tensor([0.0, 2.0, 1.0]))
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
