"""Plugins: an installed distribution's entry points, a broken one, and `ls` without torch.

The "installed" distribution is a ``*.dist-info`` folder with ``entry_points.txt`` next to its
module in a temporary folder put on sys.path / PYTHONPATH: what pip leaves behind, without pip or
the network.
"""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import HELPERS_PATH, REPO_ROOT, write_plugin_distribution

from deeprobe_bench import cli
from deeprobe_bench.results import read_result, result_path

PLUGIN = ["--plugin", str(HELPERS_PATH)]


def test_installed_distribution_runs_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_plugin_distribution(tmp_path / "site")))
    res = tmp_path / "res"
    code = cli.main([*PLUGIN, "run", "--task", "toy", "--method", "dist-method", "--results-dir", str(res)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| dist-method " in out and "| ok " in out
    r = read_result(result_path(res, "toy", "toy", "dist-method", 0))
    assert r.ok and r.details["features"]["n"] == 2
    assert "dist-broken" not in err  # lazy: the broken entry point was never loaded


def test_broken_distribution_entry_is_listed_as_broken(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_plugin_distribution(tmp_path / "site")))
    code = cli.main([*PLUGIN, "ls", "methods"])
    out, err = capsys.readouterr()
    assert code == 0
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "BROKEN" in rows["dist-broken"] and "toyplug" in rows["dist-broken"]
    assert "BROKEN" not in rows["dist-method"] and "toyplug" in rows["dist-method"]
    assert "BROKEN" not in rows["toy-random"]
    assert "dist-broken" in err and "distribution 'toyplug'" in err and "Traceback" not in err


def test_asking_for_the_broken_name_gives_its_import_error(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_plugin_distribution(tmp_path / "site")))
    args = [*PLUGIN, "run", "--task", "toy", "--method", "dist-broken", "--results-dir", str(tmp_path / "r")]
    code = cli.main(args)
    _, err = capsys.readouterr()
    assert code == 2
    [line] = err.strip().splitlines()
    assert "could not load method 'dist-broken'" in line and "distribution 'toyplug'" in line
    assert "No module named 'toyplug_missing_module'" in line and "unknown method" not in line
    assert cli.main(["-v", *args]) == 2
    _, err = capsys.readouterr()
    assert "Traceback" in err and "ModuleNotFoundError" in err


def test_failing_plugin_file_is_named(tmp_path, capsys):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import no_such_module_for_deeprobe\n")
    code = cli.main(["--plugin", str(bad), "ls", "tasks"])
    _, err = capsys.readouterr()
    assert code == 2 and str(bad) in err and "no_such_module_for_deeprobe" in err


def test_ls_methods_does_not_import_torch(tmp_path):
    site = write_plugin_distribution(tmp_path / "site")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    code = (
        "import sys\n"
        "from deeprobe_bench.cli import main\n"
        f"rc = main(['--plugin', {str(HELPERS_PATH)!r}, 'ls', 'methods'])\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'sae_lens') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout, p.stdout
    assert "| toy-search " in p.stdout and "| dist-method " in p.stdout
    assert "dist-broken" in p.stdout and "BROKEN" in p.stdout
