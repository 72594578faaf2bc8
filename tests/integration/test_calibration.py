"""Calibration: the reference methods put every metric's floor at chance and its ceiling near 1.

These are tests of the metrics (issue 12): on each task, the ``oracle`` (the task's own ground truth)
scores >= 0.95 on every metric whose ceiling is 1, and the ``null`` (a constant and noise features)
scores within 0.05 of chance. Small splits, shipped zoo models, CI speed.
"""

from __future__ import annotations

import pytest

from deeprobe_bench import calibration, cli, runner
from deeprobe_bench.results import Result
from deeprobe_bench.subject import load_subject

OTHELLO = {"n_train": "40", "n_label": "80", "n_test": "80", "objective_games": "20", "n_causal": "80"}
CHESS = {"n_train": "40", "n_label": "150", "n_test": "150", "objective_games": "20"}


def _references(task, model, options, tmp_path):
    subjects = {model: load_subject(model)}
    cells = runner.run_grid(task, model, ["oracle", "null"], [0], task_options=options, results_dir=str(tmp_path),
                            progress=False, subject_loader=subjects.__getitem__)  # fmt: skip
    for r in cells:
        assert r.ok, (r.method, r.error, (r.details or {}).get("traceback"))
    return {r.method: r for r in cells}


def _m(r, name):
    return r.metrics[name]["value"]


@pytest.mark.parametrize(("task", "model", "options"), [("othello", "othello-mini", OTHELLO),
                                                        ("chess", "chess-mini", CHESS)])  # fmt: skip
def test_board_metrics_have_their_ceiling_at_the_oracle_and_their_floor_at_chance(task, model, options, tmp_path):
    ref = _references(task, model, options, tmp_path)
    oracle, null = ref["oracle"], ref["null"]
    assert oracle.supervision == "oracle" and null.supervision == "null"
    for name in ("reconstruction", "coverage", "reconstruction_paper"):
        assert _m(oracle, name) >= 0.95, name
        assert _m(null, name) <= 0.05, name  # chance: 0 after the correction; nothing tagged at precision 0.95
    assert oracle.details["board"]["coverage_n_scored"] > 0
    # the paper's uncorrected coverage rewards the constant feature (2p / (1 + p) per element), the corrected one not
    assert _m(null, "coverage_paper") > _m(null, "coverage") + 0.01
    task_cls = runner.registry.get_task(task)
    rows = calibration.calibrate([oracle], [null], task_cls.calibration_notes, task_cls.calibration_chance)
    assert all(r.ok for r in rows), [(r.metric, r.floor, r.ceiling) for r in rows if not r.ok]


def test_calibrate_command_prints_floor_ceiling_and_verdicts(tmp_path, capsys):
    argv = ["-q", "calibrate", "--task", "othello", "--results-dir", str(tmp_path)]
    for k, v in OTHELLO.items():
        argv += ["-T", f"{k}={v}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    for metric in ("reconstruction", "coverage", "reconstruction_paper", "causal_success"):
        assert "separates" in lines[metric], lines[metric]
    assert "n/a:" in lines["coverage_paper"] and "n/a:" in lines["size"]
    assert len(list(tmp_path.rglob("*.json"))) == 2  # the reference cells are results like any other


def _result(method, **metrics):
    return Result(task="t", method=method, supervision=method,
                  metrics={k: {"value": v, "higher_is_better": k != "loss"} for k, v in metrics.items()})  # fmt: skip


def test_verdicts_follow_the_gap_in_the_better_direction():
    rows = calibration.calibrate(
        [_result("oracle", good=0.97, weak=0.5, loss=0.0, count=12.0)],
        [_result("null", good=0.01, weak=0.4, loss=1.0, count=2.0)],
        notes={"count": "a count"},
    )
    verdict = {r.metric: r.verdict for r in rows}
    assert verdict == {"good": "separates", "weak": "FAILS", "loss": "separates", "count": "n/a: a count"}
    assert [r.gap for r in rows][:3] == pytest.approx([0.96, 0.1, 1.0])


def test_a_metric_with_a_chance_level_is_judged_against_it():
    def judged(method, score, n):
        r = _result(method)
        r.metrics = {"judge_score": {"value": score, "higher_is_better": True, "stderr": None},
                     "judge_n_scored": {"value": n, "higher_is_better": True}}  # fmt: skip
        return r

    ok = calibration.calibrate([judged("oracle", 1.0, 10)], [judged("null", 0.55, 1)])
    verdict = {r.metric: r.verdict for r in ok}
    assert verdict["judge_score"].startswith("separates")  # 1 feature x 10 examples: se 0.158, 0.55 is chance
    assert verdict["judge_n_scored"].startswith("n/a")
    bad = calibration.calibrate([judged("oracle", 0.9, 10)], [judged("null", 0.5, 1)])
    assert bad[0].verdict.startswith("FAILS")  # the ceiling must reach 0.5 + 0.9 x 0.5 = 0.95


def test_a_noted_metric_no_reference_reports_is_listed_with_its_note():
    rows = calibration.calibrate([_result("oracle", good=1.0)], [_result("null", good=0.0)],
                                 notes={"agreement": "a ranking's agreement"})  # fmt: skip
    assert [(r.metric, r.floor, r.ceiling) for r in rows] == [("good", 0.0, 1.0), ("agreement", None, None)]
    assert rows[1].verdict.startswith("n/a: a ranking's agreement") and rows[1].ok
