"""Calibration of the persona metrics (issue 12): the reference ``oracle`` scores at the ceiling of every
metric and ``null`` at chance, through the runner and the local judge server, on a small split of the
shipped persona-mini (README, "Calibration").

The ceiling of ``steering_success`` is not 1: it is the largest shift of p(+ answer) the held-out questions
allow from where the model stands without a persona, ``mean(1 - p_0(match))`` (about 0.5: persona-mini is
undecided without one), recorded as ``task_info.steering_ceiling``; the oracle must reach 95% of it.
"""

import pytest

from deeprobe_bench.judge import JudgeClient, LocalJudgeServer, local_config
from deeprobe_bench.runner import run_grid

LIMIT = 48  # 8 contrast pairs per trait and half


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("results")
    with LocalJudgeServer() as server:
        client = JudgeClient(local_config(server.base_url, cache_path=""))
        cells = run_grid("persona", None, ["oracle", "null"], [0], results_dir=str(out), limit=LIMIT,
                         progress=False, judge=client)  # fmt: skip
        client.close()
    return {r.method: r for r in cells}


def test_the_oracle_reaches_the_ceiling_of_every_persona_metric(results):
    oracle = results["oracle"]
    assert oracle.ok, oracle.error
    ceiling = oracle.details["task_info"]["steering_ceiling"]["test"]
    assert 0.4 < ceiling < 0.6  # undecided without a persona
    assert oracle.metric("steering_success") >= 0.95 * ceiling
    assert oracle.metric("steering_fraction") == pytest.approx(oracle.metric("steering_success") / ceiling)
    assert oracle.metric("steering_fraction") >= 0.95
    assert oracle.metric("detection_auroc") >= 0.95
    assert oracle.metric("fluency_cost") <= 0.05
    assert oracle.metric("judge_score") >= 0.95 and oracle.metric("judge_n_scored") == 6  # one per concept


def test_the_null_sits_at_chance_on_every_persona_metric(results):
    null = results["null"]
    assert null.ok, null.error
    assert abs(null.metric("steering_success")) <= 0.05
    assert abs(null.metric("steering_fraction")) <= 0.05
    assert abs(null.metric("detection_auroc") - 0.5) <= 0.05
    assert null.metric("fluency_cost") <= 0.05
    assert abs(null.metric("judge_score") - 0.5) <= 0.05
    assert null.metric("judge_n_scored") == 9  # the noise features; the constant cannot be scored: left out, counted
    assert null.details["autointerp"]["left_out"] == {"0": "constant"}


def test_every_persona_metric_separates_the_references_or_says_why_not(results):
    from deeprobe_bench import calibration
    from deeprobe_bench.tasks.persona import PersonaTask

    rows = calibration.calibrate([results["oracle"]], [results["null"]], PersonaTask.calibration_notes,
                                 PersonaTask.calibration_chance)  # fmt: skip
    verdict = {r.metric: r.verdict for r in rows}
    assert all(r.ok for r in rows), verdict
    for metric in ("steering_fraction", "detection_auroc", "judge_score"):
        assert verdict[metric].startswith("separates"), (metric, verdict[metric])
