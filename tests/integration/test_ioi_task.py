"""The IOI task on a tiny real model: its definitions hold on cases whose answer is known."""

import pytest
import torch
from helpers import tiny_ioi_subject

from deeprobe_bench.api import FeatureSet, UserError, parse_config
from deeprobe_bench.tasks.ioi import IOITask
from deeprobe_bench.tasks.ioi import metrics as ioi_metrics

SMALL = {"n_train": "48", "n_val": "64", "n_test": "40", "objective_batch": "24"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
    subject = tiny_ioi_subject(tmp_path_factory.mktemp("tok"))
    task = IOITask(parse_config(IOITask.Config, SMALL))
    return subject, task, task.prepare(subject, seed=0)


def fs(directions):
    return FeatureSet("blocks.0.hook_resid_post", directions, encoder=lambda x: x @ directions.T)


def test_positions_match_the_prompts(prepared):
    subject, _, data = prepared
    split = data.extra["splits"]["train"]
    for i in range(5):
        toks = split.tokens[i]
        p = {k: int(v[i]) for k, v in split.positions.items()}
        assert toks[p["IO"]] == split.io_tok[i] and toks[p["S1"]] == split.s_tok[i] == toks[p["S2"]]
        assert p["S1"] < p["S2"] < p["END"]
        row = split.dataset[i]
        assert (p["IO"] < p["S1"]) == (row["order"] == "ABBA")
    assert data.train_acts.shape == (48, 32) and data.n_test == 40
    assert data.train_labels.shape == (48, len(data.concepts)) and data.train_labels.sum(1).eq(3).all()


def test_full_space_is_perfectly_faithful_and_the_empty_set_is_zero(prepared):
    _, task, data = prepared
    full = task.evaluate(data, fs(torch.eye(32)))
    assert full["faithfulness"].value == pytest.approx(1.0, abs=1e-4)
    assert full["necessity"].value == pytest.approx(1.0, abs=1e-4)
    # keeping the whole stream is faithful by construction: flagged, and its size is the rank of the span
    assert full["size"].value == 32 and full["size_fraction"].value == 1.0 and full["full_span"].value == 1.0
    assert full["faithfulness_cpr"].value < 1.0  # 1 .. 16 basis vectors are not the whole stream
    curve = full["_details"]["faithfulness_curve"]
    assert curve["rank"] == [1, 1, 1, 3, 6, 16, 32] and curve["f"][-1] == 1.0
    redundant = task.evaluate(data, fs(torch.cat([torch.eye(32)[:4]] * 5)))  # 20 directions spanning 4 dimensions
    assert redundant["size"].value == 4 and redundant["full_span"].value == 0.0
    empty = task.evaluate(data, fs(torch.zeros(0, 32)))
    assert empty["faithfulness"].value == pytest.approx(0.0, abs=1e-6)
    assert empty["necessity"].value == pytest.approx(0.0, abs=1e-6)
    assert empty["size"].value == 0


def test_objective_counts_the_size_penalty_and_is_the_same_without_start_at_layer(prepared):
    subject, task, data = prepared
    assert task.objective(data, fs(torch.eye(32))) == pytest.approx(1.0 - 0.01 * 32, abs=1e-4)
    d = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    slow = IOITask(parse_config(IOITask.Config, {**SMALL, "reuse_below_hook": "false"}))
    assert task.objective(data, fs(d)) == pytest.approx(slow.objective(data, fs(d)), abs=1e-4)
    # from the hook, only the positions from S2 on were pushed through (the clean keys and values before it)
    assert data.extra["objective_split"].suffix_run(subject.model, data.hook_name) is not None
    assert list(data.extra["objective_split"]._suffix_runs) == [data.hook_name]


def test_attribute_coverage_of_the_oracle_is_one_and_of_the_null_is_chance(prepared):
    from deeprobe_bench.metrics.concepts import scored_concepts

    _, task, data = prepared
    oracle = task.oracle_features(data, seed=0)  # reads the train and val labels of each END activation
    metrics = task.evaluate(data, oracle)
    assert metrics["attribute_coverage"].value == pytest.approx(1.0, abs=1e-6)
    scored = scored_concepts(data.train_labels, data.extra["val_labels"], task.config.min_positives)
    assert metrics["_details"]["attribute_coverage"]["concepts_scored"] == int(scored.sum()) > 0
    const = FeatureSet("blocks.0.hook_resid_post", torch.randn(1, 32), encoder=lambda x: torch.ones(*x.shape[:-1], 1))
    assert task.evaluate(data, const)["attribute_coverage"].value == 0.0


def test_a_hook_beyond_the_model_is_a_user_error(prepared):
    subject, _, _ = prepared
    task = IOITask(parse_config(IOITask.Config, {**SMALL, "hook": "blocks.7.hook_resid_post"}))
    with pytest.raises(UserError):
        task.prepare(subject, seed=0)


def test_circuit_precision_recall():
    assert ioi_metrics.head_precision_recall([(9, 9), (9, 6), (0, 0)]) == (pytest.approx(2 / 3), pytest.approx(2 / 26))
    assert ioi_metrics.head_precision_recall([]) == (0.0, 0.0)
