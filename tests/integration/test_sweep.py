"""Cells, plan, executors, per-cell locks and ``sweep`` on the toy plugin (tests/helpers.py).

A second plugin written per test, ``slow.py``, adds ``toy-slow``: a method that appends one line
``<seed>`` to ``$SLOW_LOG`` each time it computes, then sleeps ``$SLOW_S`` seconds; counting the lines
tells how many times each cell was computed, which is what the locks promise.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deeprobe_bench import api, cli
from deeprobe_bench.cells import Cell, expand, grid_from_dict, load_grid, plan, run_cell
from deeprobe_bench.executors import InProcess
from deeprobe_bench.results import CellLock, lock_path, read_result

HELPERS = str(Path(__file__).resolve().parents[1] / "helpers.py")

SLOW_PLUGIN = textwrap.dedent(
    """
    import os, time
    from deeprobe_bench import api

    class ToySlow(api.Method):
        name = "toy-slow"
        description = "random directions, slowly; logs each computation"
        supervision = "none"

        def discover(self, ctx):
            import torch
            with open(os.environ["SLOW_LOG"], "a") as fh:
                fh.write(f"{ctx.seed}\\n")
            pid_file = os.environ.get("SLOW_PID")
            if pid_file:
                with open(pid_file + f".{ctx.seed}", "w") as fh:
                    fh.write(str(os.getpid()))
            time.sleep(float(os.environ.get("SLOW_S", "1")))
            g = torch.Generator().manual_seed(ctx.seed)
            d = torch.randn(2, ctx.train_acts.shape[1], generator=g)
            return api.FeatureSet(hook_name="blocks.0.hook_resid_post", directions=d,
                                  encoder=lambda x: (x @ d.T).clamp(min=0))
    """
)


@pytest.fixture
def slow(tmp_path, monkeypatch):
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    log = tmp_path / "slow.log"
    monkeypatch.setenv("SLOW_LOG", str(log))
    return plugin, log


def _counts(log: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for line in log.read_text().split() if log.exists() else []:
        out[int(line)] = out.get(int(line), 0) + 1
    return out


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deeprobe_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------- grid files and plan


def test_a_grid_file_expands_to_its_cells_in_order_and_plan_skips_finished_ones(tmp_path, toys):
    grid_file = tmp_path / "g.toml"
    grid_file.write_text(textwrap.dedent("""
        seeds = [0, 1]
        [[run]]
        task = "toy"
        methods = ["toy-random", "toy-diffmean"]
        [[run]]
        task = "toy"
        method = "toy-random"
        method_options = { k = 2 }
        seeds = [3]
    """))
    cells = expand(load_grid(grid_file))
    assert [(c.method, c.seed, c.method_options) for c in cells] == [
        ("toy-random", 0, {}), ("toy-diffmean", 0, {}), ("toy-random", 1, {}), ("toy-diffmean", 1, {}),
        ("toy-random", 3, {"k": "2"}),
    ]
    assert all(c.model == "toy" for c in cells)  # the task's default model
    assert Cell.from_dict(json.loads(json.dumps(cells[4].to_dict()))) == cells[4]
    todo, done = plan(cells, tmp_path / "r")
    assert (len(todo), len(done)) == (5, 0)
    r = run_cell(cells[1], tmp_path / "r")
    assert r.ok and r.method == "toy-diffmean" and r.seed == 0
    assert cells[1].path(tmp_path / "r").is_file() and not lock_path(cells[1].path(tmp_path / "r")).exists()
    todo, done = plan(cells, tmp_path / "r")
    assert done == [cells[1]] and todo == [c for c in cells if c is not cells[1]]
    assert plan(cells, tmp_path / "r", force=True)[0] == cells


def test_a_yaml_grid_file_reads_like_toml(tmp_path, toys):
    pytest.importorskip("yaml")
    f = tmp_path / "g.yaml"
    f.write_text("seeds: [2]\nrun:\n  - task: toy\n    methods: toy-random,toy-diffmean\n")
    assert [(c.method, c.seed) for c in expand(load_grid(f))] == [("toy-random", 2), ("toy-diffmean", 2)]


@pytest.mark.parametrize("data, message", [
    ({"run": [{"task": "toy"}]}, "'methods' is missing"),
    ({"run": [{"task": "toy", "methods": ["nope"]}]}, "nope"),
    ({"run": [{"task": "toy", "methods": ["toy-random"], "colour": 1}]}, "unknown key 'colour'"),
    ({"seeds": [-1], "run": [{"task": "toy", "methods": ["toy-random"]}]}, "seeds must be integers"),
    ({"run": [{"task": "toy", "methods": ["toy-random"], "method_options": {"k": "x"}}]}, "k"),
    ({"run": [{"task": "toy", "methods": ["toy-judge"]}]}, "needs a judge"),
    ({"run": []}, "at least one [[run]]"),
])
def test_a_bad_grid_is_one_user_error_before_any_work(data, message, toys):
    with pytest.raises(api.UserError, match=None) as e:
        expand(grid_from_dict(data))
    assert message in str(e.value)


def test_sweep_with_a_bad_grid_file_exits_2_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "g.toml"
    f.write_text("[[run]]\ntask = 'toy'\nmethods = ['toy-random']\nseeds = 'x'\n")
    assert cli.main(["--plugin", HELPERS, "sweep", str(f), "--results-dir", str(tmp_path / "r")]) == 2
    assert "seeds must be integers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    f.write_text("[[run]\n")
    assert cli.main(["sweep", str(f), "--results-dir", str(tmp_path / "r")]) == 2
    assert "does not parse" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep


def test_sweep_runs_a_grid_resumes_and_summarises_failures(tmp_path, capsys):
    r = str(tmp_path / "r")
    args = ["--plugin", HELPERS, "-q", "sweep", "--task", "toy", "--method", "toy-random,toy-crash", "--seeds", "0,1",
            "--results-dir", r]
    assert cli.main(args) == 1  # toy-crash fails, the rest goes on
    out = capsys.readouterr().out
    assert "sweep: 2 done, 0 skipped (finished), 2 failed, of 4 cells" in out
    assert "failed toy/toy/toy-crash/seed0: discover failed: RuntimeError: boom from toy-crash" in out
    first = read_result(Path(r) / "toy/toy/toy-random/seed1.json")
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "sweep: 0 done, 2 skipped (finished), 2 failed, of 4 cells" in out
    assert read_result(Path(r) / "toy/toy/toy-random/seed1.json").started_at == first.started_at  # not recomputed


def test_sweep_on_a_process_pool_gives_the_results_of_one_process(tmp_path, capsys):
    base = ["--plugin", HELPERS, "-q", "sweep", "--task", "toy", "--method", "toy-random,toy-diffmean", "--seeds", "0,1"]
    assert cli.main([*base, "--results-dir", str(tmp_path / "a")]) == 0
    assert cli.main([*base, "--workers", "2", "--results-dir", str(tmp_path / "b")]) == 0
    assert "sweep: 4 done, 0 skipped (finished), 0 failed, of 4 cells" in capsys.readouterr().out
    for p in sorted((tmp_path / "a").rglob("*.json")):
        a, b = read_result(p), read_result(tmp_path / "b" / p.relative_to(tmp_path / "a"))
        assert a.metrics == b.metrics  # a seed fixes every number, whichever process runs the cell


# --------------------------------------------------------------------------- locks


def test_two_concurrent_runs_on_one_results_folder_compute_each_cell_once(tmp_path, slow):
    plugin, log = slow
    r = str(tmp_path / "r")
    args = ["--plugin", HELPERS, "--plugin", str(plugin), "run", "--task", "toy", "--method", "toy-slow",
            "--seeds", "0,1,2", "--results-dir", r]
    env = {"SLOW_S": "1.5"}
    a, b = _cli(*args, env=env), _cli(*args, env=env)
    out_a, out_b = a.communicate(timeout=120), b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, (out_a[1][-2000:], out_b[1][-2000:])
    assert _counts(log) == {0: 1, 1: 1, 2: 1}  # each cell once across both runs
    assert len(list(Path(r).rglob("*.json"))) == 3 and not list(Path(r).rglob("*.lock"))
    # the later run reused the earlier one's results (waited on its lock, or found them finished)
    assert "finished by another run" in out_a[1] + out_b[1] or "skipped (finished)" in out_a[1] + out_b[1]


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, toys):
    cell = Cell(task="toy", model="toy", method="toy-random", seed=0)
    path = cell.path(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": platform.node(), "pid": int(dead.stdout), "since": "then"}))
    t0 = time.perf_counter()
    assert run_cell(cell, tmp_path).ok
    assert time.perf_counter() - t0 < 30 and not lock.exists() and path.is_file()


def test_a_live_lock_makes_a_second_taker_wait_and_a_silent_foreign_lock_goes_stale(tmp_path):
    path = tmp_path / "cell.json"
    held = CellLock(path)
    assert held.acquire(wait=False)
    other = CellLock(path)
    assert not other.acquire(wait=False)  # this process is alive: not stale
    held.release()
    assert other.acquire(wait=False)
    other.release()
    lock_path(path).write_text(json.dumps({"host": "another-host", "pid": 1, "since": "then"}))
    assert not CellLock(path, stale_s=3600).acquire(wait=False)  # refreshed recently: someone works on it
    old = time.time() - 7200
    os.utime(lock_path(path), (old, old))
    taker = CellLock(path, stale_s=3600)
    assert taker.acquire(wait=False)  # not refreshed for 2 h: its run was killed
    assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    taker.release()


def test_the_in_process_executor_reports_each_cell(tmp_path, toys):
    cells = expand(grid_from_dict({"seeds": [0], "run": [{"task": "toy", "methods": ["toy-random", "toy-crash"]}]}))
    seen = []
    outcomes = InProcess().run(cells, str(tmp_path), on_done=seen.append)
    assert [o.status for o in outcomes] == ["done", "failed"] and seen == outcomes
    assert outcomes[1].error == "discover failed: RuntimeError: boom from toy-crash"


def test_in_process_cells_share_the_model_and_data_and_no_number_changes(tmp_path, toys, monkeypatch):
    from deeprobe_bench.runner import SharedState

    task_cls = toys.ToyTask
    calls: list[int] = []
    prepare = task_cls.prepare

    def counting(self, subject, seed, limit=None):
        calls.append(seed)
        return prepare(self, subject, seed, limit)

    grid = {"seeds": [0, 1], "run": [{"task": "toy", "methods": ["toy-random"]},
                                      {"task": "toy", "methods": ["toy-diffmean"]}]}  # fmt: skip
    cells = expand(grid_from_dict(grid))
    assert [(c.method, c.seed) for c in cells] == [("toy-random", 0), ("toy-random", 1), ("toy-diffmean", 0), ("toy-diffmean", 1)]
    monkeypatch.setattr(task_cls, "prepare", counting)
    shared = InProcess().run(cells, str(tmp_path / "shared"))
    assert sorted(calls) == [0, 1]  # each seed's data prepared once for both entries
    calls.clear()
    alone = [run_cell(c, tmp_path / "alone", shared=SharedState()) for c in cells]
    assert sorted(calls) == [0, 0, 1, 1]
    for outcome, result in zip(shared, alone, strict=True):
        assert outcome.status == "done" and outcome.result.metrics == result.metrics


# --------------------------------------------------------------------------- Ray


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(*args: str, log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group (stopped by killing that group, nothing else)."""
    ray_cli = Path(sys.executable).with_name("ray")
    return subprocess.Popen([str(ray_cli), "start", "--block", "--disable-usage-stats", *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def _wait_for(what, timeout_s: float, why: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {why}")


def test_a_sweep_on_a_real_ray_cluster_loses_no_finished_cell_when_a_worker_is_killed(tmp_path, slow, monkeypatch):
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    import signal

    plugin, log = slow
    monkeypatch.setenv("SLOW_S", "2")
    monkeypatch.setenv("SLOW_PID", str(tmp_path / "pid"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_node("--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=0",
                     "--include-dashboard=false", log=tmp_path / "head.log")
    worker = None
    try:
        _wait_for(lambda: "Ray runtime started" in (tmp_path / "head.log").read_text() or head.poll() is not None,
                  120, "the Ray head")
        assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
        worker = _ray_node(f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                           log=tmp_path / "worker.log")
        r = tmp_path / "r"
        args = ["--plugin", HELPERS, "--plugin", str(plugin), "sweep", "--task", "toy", "--method", "toy-slow",
                "--seeds", "0,1", "--results-dir", str(r), "--executor", "ray", "--address", address,
                "--max-retries", "0"]
        sweep = _cli(*args)
        # the first cell finishes; the second starts; its worker process is killed mid-cell
        first = _wait_for(lambda: list(r.rglob("seed*.json")), 180, "the first finished cell")[0]
        killed_seed = 1 - int(first.stem[len("seed"):])
        pid_file = tmp_path / f"pid.{killed_seed}"
        pid = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the second cell to start"))
        os.kill(pid, signal.SIGKILL)
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 1, err[-3000:]
        assert "sweep: 1 done, 0 skipped (finished), 1 failed, of 2 cells" in out
        assert f"failed toy/toy/toy-slow/seed{killed_seed}:" in out
        assert read_result(first).ok and not list(r.rglob("*.lock"))  # the finished cell is kept, no lock left
        kept = first.read_bytes()
        # rerun: the killed cell is computed, the finished one is not
        sweep = _cli(*args)
        out, err = sweep.communicate(timeout=180)
        assert sweep.returncode == 0, err[-3000:]
        assert "sweep: 1 done, 1 skipped (finished), 0 failed, of 2 cells" in out
        assert first.read_bytes() == kept
        assert _counts(log) == {1 - killed_seed: 1, killed_seed: 2}  # once, and the killed try plus its rerun
        assert read_result(r / f"toy/toy/toy-slow/seed{killed_seed}.json").ok
    finally:
        if worker is not None:
            _stop(worker)
        _stop(head)


def test_the_published_grid_file_names_only_known_tasks_methods_and_options(tmp_path, capsys):
    from collections import Counter

    grid = Path(__file__).resolve().parents[2] / "leaderboards" / "grid.toml"
    cells = expand(load_grid(grid))
    # othello and chess: 2 models x 5 + 2 x 1 (sae standard) + 3 + 1 + 1 + 1 = 18 per seed; ioi 9 + 8; persona 8 + 3
    assert Counter(c.task for c in cells) == {"othello": 63, "chess": 63, "ioi": 60, "persona": 42}
    assert all(c.judge == {"base_url": "local", "model": None} and c.seed in (0, 1, 2) for c in cells)
    assert cli.main(["sweep", str(grid), "--tasks", "ioi,nope", "--results-dir", str(tmp_path / "r")]) == 2
    assert "--tasks: nope is not a task of" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- verify


def test_verify_reruns_published_cells_and_exits_1_on_a_changed_metric(tmp_path, capsys):
    pub = tmp_path / "leaderboards" / "results"
    assert cli.main(["--plugin", HELPERS, "-q", "sweep", "--task", "toy", "--method", "toy-random,toy-diffmean",
                     "--seeds", "0,1", "--results-dir", str(pub)]) == 0
    capsys.readouterr()
    # leaderboards/toy means leaderboards/results/toy; --cell and --seeds pick cells
    assert cli.main(["--plugin", HELPERS, "-q", "verify", str(tmp_path / "leaderboards" / "toy"),
                     "--cell", "toy-diffmean", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "verify: 2 of 2 metrics of 1 cells agree (bit-identical)" in out and "toy-diffmean/seed1" in out
    # a published number that the code does not give: exit 1, the table names it
    f = pub / "toy" / "toy" / "toy-random" / "seed0.json"
    data = json.loads(f.read_text())
    true_value = data["metrics"]["recovery"]["value"]
    data["metrics"]["recovery"]["value"] = true_value + 1e-12
    f.write_text(json.dumps(data))
    assert cli.main(["--plugin", HELPERS, "-q", "verify", str(pub / "toy")]) == 1
    out = capsys.readouterr().out
    assert "verify: 7 of 8 metrics of 4 cells agree (bit-identical)" in out
    assert "toy/toy/toy-random/seed0 | recovery" in out and "NO" in out and "toy-diffmean" not in out
    assert cli.main(["--plugin", HELPERS, "-q", "verify", str(pub / "toy"), "--atol", "1e-9"]) == 0
    assert cli.main(["--plugin", HELPERS, "-q", "verify", str(pub / "toy"), "--cell", "nope"]) == 2
    assert "no finished result" in capsys.readouterr().err


def test_sweep_on_ray_without_ray_installed_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when the extra is not installed
    code = cli.main(["--plugin", HELPERS, "sweep", "--task", "toy", "--method", "toy-random", "--executor", "ray",
                     "--results-dir", str(tmp_path / "r")])
    assert code == 2 and 'needs Ray: pip install -e ".[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
