"""leaderboard: aggregation over seeds, sort order, markdown / CSV files, the run table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from helpers import make_result

from deeprobe_bench import leaderboard
from deeprobe_bench.results import write_result


def _three_methods():
    return [
        make_result("a", seed=0, score=0.2, loss=(3.0, False)),
        make_result("a", seed=1, score=0.4, loss=(1.0, False)),
        make_result("b", seed=0, score=0.9, loss=(2.0, False)),
        make_result("b", seed=1, score=0.7, loss=(2.0, False)),
        make_result("b", seed=2, score=0.8, loss=(2.0, False)),
        make_result("c[k=2]", seed=0, score=0.5, loss=(0.5, False)),
    ]


def test_mean_std_and_sort_by_first_metric_when_task_unknown():
    df = leaderboard.build_table(_three_methods(), "toy")  # no task registered: first metric
    assert list(df.columns) == ["method", "model", "supervision", "seeds", "score ↑", "loss ↓"]
    assert list(df["method"]) == ["b", "c[k=2]", "a"]
    assert list(df["seeds"]) == [3, 1, 2]
    row = df.set_index("method")
    assert row.loc["a", "score ↑"] == f"0.300 ± {math.sqrt(0.02):.3f}"  # std with ddof=1
    assert row.loc["b", "score ↑"] == "0.800 ± 0.100"
    assert row.loc["c[k=2]", "score ↑"] == "0.500"  # one seed: no std
    assert row.loc["a", "loss ↓"] == "2.000 ± 1.414"


def test_aggregate_numbers():
    agg = leaderboard.aggregate(_three_methods(), "toy").set_index("method")
    assert agg.loc["a", "score_mean"] == pytest.approx(0.3)
    assert agg.loc["a", "score_std"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(agg.loc["c[k=2]", "score_std"])


def test_primary_metric_of_the_registered_task_decides_the_order(toys):
    rs = [
        make_result("a", n_features=(1.0, False), recovery=0.9),
        make_result("b", n_features=(5.0, False), recovery=0.95),
    ]
    df = leaderboard.build_table(rs, "toy")  # ToyTask.primary_metric == "recovery"
    assert list(df["method"]) == ["b", "a"]
    assert df.attrs["primary"] == "recovery"
    assert list(df.columns)[-2:] == ["n_features ↓", "recovery ↑"]  # the task's order is kept


def test_lower_is_better_primary_sorts_ascending():
    rs = [make_result("a", err=(0.5, False)), make_result("b", err=(0.1, False)), make_result("c", err=(0.3, False))]
    assert list(leaderboard.build_table(rs, "toy")["method"]) == ["b", "c", "a"]


def test_errors_limited_runs_other_tasks_and_old_versions_are_left_out():
    ok = make_result("ok", score=0.5)
    err = make_result("err", score=0.9)
    err.status = "error"
    limited = make_result("limited", score=0.9)
    limited.samples["limit"] = 10
    other = make_result("other", task="other", score=1.0)
    old = make_result("old", score=1.0)
    old.task_version = "0"
    new2 = make_result("ok2", score=0.1)
    new2.task_version = "2"
    ok.task_version = "2"
    rs = [ok, err, limited, other, old, new2]
    assert sorted(leaderboard.build_table(rs, "toy")["method"]) == ["ok", "ok2"]
    limited.task_version = "2"
    assert "limited" in set(leaderboard.build_table(rs, "toy", include_limited=True)["method"])


def test_results_of_a_retrained_models_older_weights_are_left_out(caplog):
    old = make_result("a", score=0.9)
    new = make_result("a", seed=1, score=0.1)
    other = make_result("b", score=0.5)  # another method on the new weights
    unknown = make_result("c", score=0.7)  # predates the recorded fingerprint: kept
    for r, sha, at in ((old, "1" * 64, "2026-01-01T00:00:00"), (new, "2" * 64, "2026-02-01T00:00:00"),
                       (other, "2" * 64, "2026-01-15T00:00:00")):
        r.model_info = {"weights_sha256": sha}
        r.finished_at = at
    df = leaderboard.aggregate([old, new, other, unknown], "toy").set_index("method")
    assert sorted(df.index) == ["a", "b", "c"]
    assert df.loc["a", "seeds"] == 1 and df.loc["a", "score_mean"] == pytest.approx(0.1)
    assert "1 results of other weights left out; publishing weights 222222222222 (2 results)" in caplog.text


def test_one_odd_result_never_evicts_the_others(tmp_path, caplog):
    # nine results on the real weights, then one on corrupted weights, finished last
    rs = [make_result(m, seed=s, score=0.5 + 0.01 * s) for m in ("a", "b", "c") for s in range(3)]
    for r in rs:
        r.model_info, r.finished_at = {"weights_sha256": "a" * 64}, "2026-01-01T00:00:00"
    odd = make_result("a", seed=7, score=0.0)
    odd.model_info, odd.finished_at = {"weights_sha256": "b" * 64}, "2026-02-01T00:00:00"
    df = leaderboard.aggregate([*rs, odd], "toy").set_index("method")
    assert list(df["seeds"]) == [3, 3, 3] and df.loc["a", "score_mean"] == pytest.approx(0.51)
    assert "1 results of other weights left out; publishing weights aaaaaaaaaaaa (9 results)" in caplog.text
    res = tmp_path / "res"
    for i, r in enumerate([*rs, odd]):
        write_result(r, res / f"{i}.json")
    md = leaderboard.write_leaderboards(res, tmp_path / "lb")[0].read_text()
    assert "- Weights of `toy`: `aaaaaaaaaaaa` (9 results); left out: `bbbbbbbbbbbb` (1 results)" in md


def test_task_options_are_part_of_a_rows_identity_and_shown(toys, tmp_path):
    # ToyTask's defaults: n_train=64, n_test=32, n_concepts=3, noise=0.1
    default = {"n_train": 64, "n_test": 32, "n_concepts": 3, "noise": 0.1}
    a, b = make_result("m", score=0.1), make_result("m", seed=1, score=0.3)
    a.task_config = b.task_config = dict(default)
    assert "task options" not in leaderboard.build_table([a, b], "toy").columns
    small = make_result("m", seed=0, score=0.9)
    small.task_config = {**default, "n_train": 16}
    df = leaderboard.build_table([a, b, small], "toy")
    assert len(df) == 2 and "task options" in df.columns
    assert sorted(df["task options"]) == ["", "n_train=16"]
    assert sorted(df["seeds"]) == [1, 2]  # never averaged with the default runs
    only_small = leaderboard.build_table([small], "toy")
    assert list(only_small["task options"]) == ["n_train=16"]  # marked even when it is the only config
    res = tmp_path / "res"
    for i, r in enumerate((a, b, small)):
        write_result(r, res / f"{i}.json")
    md = leaderboard.write_leaderboards(res, tmp_path / "lb")[0].read_text()
    assert "- Task config: defaults (`n_concepts=3, n_test=32, n_train=64, noise=0.1`)" in md
    assert "non-default options" in md


def test_empty_table():
    df = leaderboard.build_table([], "toy")
    assert len(df) == 0
    assert "_No results._" in leaderboard.to_markdown(df, "t")


def test_to_markdown_keeps_cells_as_given():
    df = pd.DataFrame({"method": ["a"], "score ↑": ["0.500"]})
    md = leaderboard.to_markdown(df, "Title", "a note")
    assert md.startswith("# Title\n\na note\n\n| method")
    assert "| 0.500" in md  # not reformatted as 0.5


def test_write_leaderboards(tmp_path, caplog):
    res = tmp_path / "results"
    for i, r in enumerate(_three_methods()):
        r.git_commit, r.dirty = "0123456789abcdef" * 2 + "01234567", i == 0
        write_result(r, res / f"{r.method_label}-{r.seed}.json")
    (res / "broken.json").write_text('{"task": "toy", "met')
    paths = leaderboard.write_leaderboards(res, tmp_path / "lb")
    assert [p.name for p in paths] == ["toy.md", "toy.csv"]
    md = paths[0].read_text()
    assert "# Leaderboard: toy" in md
    assert "`deeprobe-bench leaderboard build`" in md
    assert "- Model(s): `toy`" in md and "- Seeds: 0, 1, 2" in md
    assert "0123456789ab (dirty)" in md and "0123456789ab," in md
    assert md.index("| b ") < md.index("| c[k=2]") < md.index("| a ")
    csv = pd.read_csv(paths[1])
    assert list(csv["method"]) == ["b", "c[k=2]", "a"]
    assert csv.loc[0, "score_mean"] == pytest.approx(0.8)
    assert not [p for p in (tmp_path / "lb").iterdir() if p.name.endswith(".tmp")]
    # rebuilding gives the same bytes (no timestamps)
    assert leaderboard.write_leaderboards(res, tmp_path / "lb")[0].read_text() == md


def test_cells_table_puts_the_primary_metric_first(toys):
    text = leaderboard.cells_table([make_result("a", n_features=(1.0, False), recovery=0.5)])
    header = [c.strip() for c in text.splitlines()[0].split("|")[1:-1]]
    assert header[2:4] == ["recovery ↑", "n_features ↓"]


def test_cells_table():
    ok = make_result("a", seed=0, loss=(1.0, False), score=0.25)
    err = make_result("b", seed=1)
    err.status, err.error, err.metrics = "error", "discover failed: RuntimeError: boom\nmore", {}
    lim = make_result("c", seed=2, score=0.5, loss=(2.0, False))
    lim.samples["limit"] = 4
    text = leaderboard.cells_table([ok, err, lim])
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header == ["method", "seed", "loss ↓", "score ↑", "status", "time"]  # primary (first) metric first
    assert "0.250" in text and "error: discover failed: RuntimeError: boom" in text and "more" not in text
    assert "ok (limit 4)" in text
    assert leaderboard.cells_table([]) == "(no cells)"
