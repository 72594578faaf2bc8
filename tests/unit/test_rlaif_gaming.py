"""A reward made only of judge scores can be gamed; the causal term of the rlaif reward prevents it.

Known by construction: the task's behaviour runs along e0 only (the objective of a feature is |cos| of its
direction with e0). The *pleaser* reads a concept the judge can explain perfectly ("decoy": x1 > 0.5) and
writes along e1, so it has no task effect at all. The *real* feature writes along e0 (full task effect)
and reads a mix of e0 and e2, so the judge explains it less well. A judge-only reward prefers the
pleaser; the rlaif reward with its causal term prefers the real feature.
"""

import pytest
import torch

from deeprobe_bench.api import ExampleSet, FeatureSet
from deeprobe_bench.baselines.rlaif import RewardWeights, feature_rewards
from deeprobe_bench.judge import JudgeClient, LocalJudgeServer, local_config
from deeprobe_bench.metrics.autointerp import AutointerpConfig, JudgeScorer

D = 8


def examples(n=400) -> ExampleSet:
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(0))
    labels = torch.stack([x[:, 0] > 0.5, x[:, 1] > 0.5], dim=1)
    texts = [ExampleSet.mark(f"row {i}: ", "tok") for i in range(n)]
    return ExampleSet(texts, x, labels, ["cause", "decoy"], name="gaming toy")


def objective(fs: FeatureSet) -> float:
    d = torch.nn.functional.normalize(fs.directions.float(), dim=-1)
    return float(d[:, 0].abs().mean())  # task effect: the share of the direction along e0


def features() -> FeatureSet:
    e = torch.eye(D)
    read = torch.stack([e[1], (e[0] + 2 * e[2]) / 5**0.5])  # pleaser reads e1; real reads e0 mixed with e2
    write = torch.stack([e[1], e[0]])  # pleaser writes e1 (no effect); real writes e0
    return FeatureSet("h", write, encoder=lambda x: (x @ read.T - 0.5).clamp(min=0))


@pytest.fixture(scope="module")
def scorer():
    with LocalJudgeServer() as server:
        client = JudgeClient(local_config(server.base_url, cache_path=""))
        yield JudgeScorer(client, examples(), seed=0, config=AutointerpConfig(n_detect_pos=10, n_detect_neg=10))
        client.close()


def test_a_judge_only_reward_is_gamed_and_the_causal_term_prevents_it(scorer):
    fs = features()
    judge_only = feature_rewards(fs, scorer, objective, RewardWeights(judge=1.0, simple=0.5, causal=0.0))
    pleaser, real = judge_only["reward"].tolist()
    assert judge_only["detection"][0] == 1.0 and "decoy" in judge_only["explanations"][0]
    assert judge_only["detection"][1] < 0.95
    assert pleaser > real  # gamed: the feature without any task effect wins
    assert objective(fs.subset([0])) == 0.0 and objective(fs.subset([1])) == 1.0

    with_causal = feature_rewards(fs, scorer, objective, RewardWeights(judge=1.0, simple=0.5, causal=1.0))
    pleaser, real = with_causal["reward"].tolist()
    assert with_causal["causal"].tolist() == [0.0, 1.0]
    assert real > pleaser  # the causal term ties the reward to the model's computation
