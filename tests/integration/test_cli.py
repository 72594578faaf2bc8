"""The CLI and the runner end to end, on the toy plugin of tests/helpers.py (no trained model).

Most tests call ``cli.main([...])`` in-process; a subprocess only where the exit code of the real
process is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import HELPERS_PATH, REPO_ROOT, ToySubject

from deeprobe_bench import api, cli, runner
from deeprobe_bench.results import read_result, result_path

PLUGIN = ["--plugin", str(HELPERS_PATH)]


def run_cli(capsys, *args):
    """``cli.main`` with the toy plugin; returns (exit code, stdout, stderr)."""
    code = cli.main([*PLUGIN, *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("deeprobe-bench: error:")]


def test_run_end_to_end_writes_json_and_prints_table(tmp_path, capsys):
    res = tmp_path / "res"
    code, out, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random,toy-diffmean",
                             "--method", "toy-search", "--seeds", "0,1", "--results-dir", str(res))
    assert code == 0, err
    header = [c.strip() for c in out.splitlines()[0].split("|")[1:-1]]
    assert header == ["method", "seed", "recovery ↑", "n_features ↓", "status", "time"]
    assert out.count("| ok ") == 6
    path = result_path(res, "toy", "toy", "toy-search", 1)
    data = json.loads(path.read_text())
    assert data["status"] == "ok" and data["supervision"] == "objective"
    assert data["objective_calls"] == 10 and data["method_config"] == {"budget": 20, "candidates": 10}
    assert data["metrics"]["recovery"]["higher_is_better"] is True
    assert list(data["metrics"]) == ["recovery", "n_features"]
    assert data["samples"] == {"n_train": 64, "n_test": 32, "limit": None}
    assert data["details"]["toy_note"] == "evaluated on the test split"
    assert data["details"]["features"]["n"] == 3
    assert data["model_info"] == {"name": "toy", "d_model": 8}
    diffmean = read_result(result_path(res, "toy", "toy", "toy-diffmean", 0))
    assert diffmean.details["features"]["labels"] == ["c0", "c1", "c2"]
    assert diffmean.metric("recovery") > 0.8
    random0 = read_result(result_path(res, "toy", "toy", "toy-random", 0))
    assert random0.details["features"]["meta"] == {"k": 3, "tensor": [0, 1, 2]}


def test_options_go_into_label_path_and_config(tmp_path, capsys):
    res = tmp_path / "res"
    code, out, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random", "-M", "k=2", "-M", "arch=b",
                             "-T", "n_concepts=2", "--seed", "4", "--results-dir", str(res))
    assert code == 0, err
    assert "toy-random[k=2,arch=b]" in out
    r = read_result(result_path(res, "toy[n_concepts=2]", "toy", "toy-random[k=2,arch=b]", 4))
    assert r.method_config["k"] == 2 and r.task_config["n_concepts"] == 2 and r.seed == 4


def test_finished_cells_are_skipped_unless_forced(tmp_path, capsys):
    res = tmp_path / "res"
    args = ["run", "--task", "toy", "--method", "toy-random", "--results-dir", str(res)]
    assert run_cli(capsys, *args)[0] == 0
    path = result_path(res, "toy", "toy", "toy-random", 0)
    first = read_result(path)
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "skipped (finished)" in err
    assert read_result(path).started_at == first.started_at and "| ok " in out
    stored = path.read_text()
    data = json.loads(stored)
    data["started_at"] = "marker"
    path.write_text(json.dumps(data))
    code, out, err = run_cli(capsys, *args, "--force")
    assert code == 0 and "skipped" not in err
    assert read_result(path).started_at != "marker"


def test_a_retrained_model_never_reuses_the_old_models_results(tmp_path, caplog, toys):
    import logging

    import torch
    from helpers import load_toy_subject

    weights = torch.nn.Linear(2, 2)

    def loader(name):
        subject = load_toy_subject(name)
        subject.model = weights  # the runner fingerprints ``subject.model``'s state_dict
        return subject

    def run():
        return runner.run_grid("toy", None, ["toy-random"], [0], results_dir=str(tmp_path), progress=False,
                               subject_loader=loader)

    first = run()[0]
    assert len(first.model_info["weights_sha256"]) == 64
    caplog.set_level(logging.INFO)
    run()
    assert "skipped (finished)" in caplog.text  # same weights: reused
    caplog.clear()
    with torch.no_grad():
        weights.weight.add_(1.0)
    del weights._deeprobe_fingerprint  # memoised per model object; a retrained model is a new object
    again = run()[0]
    assert "stored result differs in weights_sha256" in caplog.text and "skipped" not in caplog.text
    assert again.model_info["weights_sha256"] != first.model_info["weights_sha256"]


def test_limit_runs_are_recorded_and_kept_apart(tmp_path, capsys):
    res = tmp_path / "res"
    code, out, _ = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random", "--limit", "5",
                           "--results-dir", str(res))
    assert code == 0 and "ok (limit 5)" in out
    limited = read_result(result_path(res, "toy", "toy", "toy-random", 0, limit=5))
    assert limited.samples == {"n_train": 5, "n_test": 5, "limit": 5}
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random", "--results-dir", str(res))
    assert code == 0 and "skipped" not in err  # a limited run never passes for a full one
    assert read_result(result_path(res, "toy", "toy", "toy-random", 0)).samples["limit"] is None


def test_error_inside_discover_is_recorded_and_other_cells_continue(tmp_path, capsys):
    res = tmp_path / "res"
    code, out, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-crash,toy-random", "--seeds", "0,1",
                             "--results-dir", str(res))
    assert code == 1
    assert out.count("error: discover failed: RuntimeError: boom from toy-crash") == 2
    assert out.count("| ok ") == 2
    crash = read_result(result_path(res, "toy", "toy", "toy-crash", 1))
    assert crash.status == "error" and "boom from toy-crash" in crash.error
    assert "Traceback" in crash.details["traceback"] and crash.metrics == {}
    assert read_result(result_path(res, "toy", "toy", "toy-random", 1)).ok
    # an errored cell is not "finished": it runs again
    _, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-crash", "--results-dir", str(res))
    assert "skipped" not in err and "re-running" in err


def test_unknown_method_exit_2_with_closest_match(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-randm", "--results-dir", str(tmp_path))
    assert code == 2 and out == ""
    [line] = error_lines(err)
    assert "unknown method 'toy-randm'" in line and "did you mean 'toy-random'" in line
    assert "Traceback" not in err


def test_unknown_option_exit_2_one_line_before_any_work(tmp_path, capsys):
    res = tmp_path / "res"
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random,toy-search", "-M", "budget=3",
                           "--results-dir", str(res))
    assert code == 2
    assert err.strip().splitlines() == [
        "deeprobe-bench: error: unknown -M option of method toy-random 'budget'; "
        "valid keys: arch, dims, k, normalize, note, scale"
    ]
    assert not res.exists()  # toy-search (which knows budget) did not run either


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-M", "foo"], "-M 'foo': expected key=value"),
        (["-T", "=3"], "-T '=3': expected key=value"),
        (["-T", "noise=loud"], "noise='loud': expected float"),
        (["--seeds", "x"], "argument --seeds"),
        (["--limit", "0"], "argument --limit"),
        (["--model", "nope"], "unknown model 'nope'"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, args, needle):
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random", "--results-dir", str(tmp_path),
                           *args)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("deeprobe-bench: error:") and needle in line


def test_judge_method_needs_judge_examples_and_a_real_endpoint_needs_a_model(tmp_path, capsys):
    # Without --judge-base-url a judge method gets the local judge server; the toy task has no judge examples.
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-judge", "--results-dir", str(tmp_path / "r"))
    assert code == 2 and "method toy-judge needs judge examples" in err
    assert not (tmp_path / "r").exists()
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random", "--results-dir", str(tmp_path / "r"),
                           "--judge-base-url", "http://127.0.0.1:9/v1")  # fmt: skip
    assert code == 2 and "needs --judge-model" in err
    assert not (tmp_path / "r").exists()


def test_user_error_inside_discover_exits_2_traceback_only_verbose(tmp_path, capsys):
    args = ["run", "--task", "toy", "--method", "toy-needs-sae", "--results-dir", str(tmp_path)]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "needs an SAE" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "-v", *args)
    assert code == 2 and "Traceback" in err


def test_keyboard_interrupt_exits_130_without_partial_results(tmp_path, capsys):
    res = tmp_path / "res"
    code, _, err = run_cli(capsys, "run", "--task", "toy", "--method", "toy-random,toy-interrupt",
                           "--results-dir", str(res))
    assert code == 130 and "interrupted" in err
    files = sorted(p.relative_to(res).as_posix() for p in res.rglob("*") if p.is_file())
    assert files == ["toy/toy/toy-random/seed0.json"]


def test_global_options_after_the_command(tmp_path, capsys):
    code = cli.main(["run", "--plugin", str(HELPERS_PATH), "-q", "--task", "toy", "--method", "toy-random",
                     "--results-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0 and "| ok " in out and err == ""  # --quiet: no INFO lines


def test_ls_commands(capsys):
    code, out, _ = run_cli(capsys, "ls", "methods")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("| toy-search "))
    assert "objective" in row and "Keeps the random candidates" in row
    code, out, _ = run_cli(capsys, "ls", "tasks")
    assert code == 0 and any(line.startswith("| toy ") and "Recover hidden directions" in line
                             for line in out.splitlines())
    for args in (["ls", "models"], ["zoo", "ls"]):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and "8-d toy subject" in out


def test_zoo_train(tmp_path, capsys):
    code, out, err = run_cli(capsys, "zoo", "train", "toy", "--out", str(tmp_path), "--seed", "3")
    assert code == 0, err
    assert json.loads((tmp_path / "toy" / "card.json").read_text()) == {"name": "toy", "seed": 3}
    assert out.strip() == str(tmp_path / "toy")
    code, _, err = run_cli(capsys, "zoo", "train", "toyy")
    assert code == 2 and "did you mean 'toy'" in err


def test_leaderboard_build_skips_truncated_json(tmp_path, capsys):
    res, lb = tmp_path / "res", tmp_path / "lb"
    assert run_cli(capsys, "run", "--task", "toy", "--method", "toy-random,toy-diffmean", "--seeds", "0,1",
                   "--results-dir", str(res))[0] == 0
    bad = result_path(res, "toy", "toy", "toy-random", 1)
    bad.write_text(bad.read_text()[:50])
    code, out, err = run_cli(capsys, "leaderboard", "build", "--results-dir", str(res), "--out", str(lb))
    assert code == 0
    assert out.split() == [str(lb / "toy.md"), str(lb / "toy.csv")]
    assert "WARNING" in err and str(bad) in err
    md = (lb / "toy.md").read_text()
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| toy-")}
    assert list(row) == ["toy-diffmean", "toy-random"]  # sorted by recovery, best first
    assert "| 1 " in row["toy-random"] and "±" in row["toy-diffmean"]
    assert bad.exists()


def test_leaderboard_build_without_results_dir(tmp_path, capsys):
    code, _, err = run_cli(capsys, "leaderboard", "build", "--results-dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err


def test_help_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    assert "run" in capsys.readouterr().out


# --------------------------------------------------------------------------- runner API


def test_run_grid_loads_subject_once_and_prepares_once_per_seed(tmp_path, toys, monkeypatch):
    loads, prepares = [], []
    orig = toys.ToyTask.prepare

    def counting_prepare(self, subject, seed, limit=None):
        prepares.append(seed)
        return orig(self, subject, seed, limit)

    monkeypatch.setattr(toys.ToyTask, "prepare", counting_prepare)

    def loader(name):
        loads.append(name)
        return ToySubject(name)

    out = runner.run_grid("toy", None, ["toy-random", "toy-diffmean", "toy-search"], [0, 1],
                          results_dir=str(tmp_path), progress=False, subject_loader=loader)
    assert [(r.method, r.seed) for r in out] == [
        ("toy-random", 0), ("toy-diffmean", 0), ("toy-search", 0),
        ("toy-random", 1), ("toy-diffmean", 1), ("toy-search", 1),
    ]
    assert loads == ["toy"] and prepares == [0, 1]
    assert all(r.forward_passes == 0 for r in out)  # prepare's passes are not charged to methods
    # all finished: the model is loaded once more (its weights decide whether a result is reused), nothing
    # is prepared again
    again = runner.run_grid("toy", "toy", ["toy-random"], [0, 1], results_dir=str(tmp_path), subject_loader=loader)
    assert loads == ["toy", "toy"] and prepares == [0, 1] and all(r.ok for r in again)


def test_run_cell_respects_the_objective_budget(tmp_path, toys):
    r = runner.run_cell("toy", "toy", "toy-search", 0, method_options={"budget": "4"}, results_dir=str(tmp_path),
                        progress=False, subject_loader=toys.load_toy_subject)
    assert r.status == "error" and "BudgetExhausted" in r.error and r.objective_calls == 4
    assert r.method_label == "toy-search[budget=4]"


def test_run_grid_validates_before_work(tmp_path, toys):
    def loader(name):  # pragma: no cover - must not be called
        raise AssertionError("loaded a subject before validating")

    with pytest.raises(api.ConfigError):
        runner.run_grid("toy", None, ["toy-random"], [0], task_options={"bogus": "1"}, results_dir=str(tmp_path),
                        subject_loader=loader)
    with pytest.raises(api.UserError, match="unknown method"):
        runner.run_grid("toy", None, ["toy-random", "nope"], [0], results_dir=str(tmp_path), subject_loader=loader)
    with pytest.raises(api.UserError, match="limit"):
        runner.run_grid("toy", None, ["toy-random"], [0], limit=0, results_dir=str(tmp_path), subject_loader=loader)


def test_prepare_crash_is_recorded_for_each_method(tmp_path, toys, monkeypatch):
    def bad_prepare(self, subject, seed, limit=None):
        raise ValueError("no data")

    monkeypatch.setattr(toys.ToyTask, "prepare", bad_prepare)
    out = runner.run_grid("toy", None, ["toy-random", "toy-diffmean"], [0], results_dir=str(tmp_path),
                          subject_loader=toys.load_toy_subject)
    assert [r.status for r in out] == ["error", "error"]
    assert all("prepare failed: ValueError: no data" in r.error for r in out)


# --------------------------------------------------------------------------- real processes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(HELPERS_PATH.parent), env.get("PYTHONPATH", "")])
    return env


def test_process_exit_codes(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "deeprobe_bench.cli", *args], capture_output=True, text=True,
                              env=_env(), cwd=tmp_path, timeout=120)

    p = run("run", "--task", "toy", "--method", "m", "--seeds", "x")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "deeprobe-bench: error: argument --seeds: expected comma-separated integers like 0,1,2, got 'x' "
        "(see `deeprobe-bench run --help`)"
    ]
    p = run(*PLUGIN, "run", "--task", "toy", "--method", "toy-random", "-M", "nope=1")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "valid keys" in p.stderr
