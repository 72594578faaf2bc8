"""The main job end to end on the shipped zoo model ioi-mini (loaded, never trained, in tests)."""

import json
import re

import pytest
import torch
from helpers import REPO_ROOT, task_context

from deeprobe_bench import cli
from deeprobe_bench.api import FeatureSet, parse_config
from deeprobe_bench.tasks.ioi import IOITask
from deeprobe_bench.tasks.ioi.zoo import IOI_MINI

SMALL = {"n_train": "256", "n_val": "500", "n_test": "128", "objective_batch": "32", "min_positives": "4"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
    subject = IOI_MINI.load()
    task = IOITask(parse_config(IOITask.Config, SMALL))
    return subject, task, task.prepare(subject, seed=0)


def test_the_hook_matters_and_the_oracle_and_random_directions_score_as_expected(prepared):
    subject, task, data = prepared
    info = data.info
    assert info["logit_diff_clean_test"] > 3.0  # the quality bar, on held-out names and templates
    assert info["logit_diff_clean_test"] - info["logit_diff_empty_test"] > 1.0
    d = subject.model.cfg.d_model
    oracle = FeatureSet(data.hook_name, torch.eye(d), encoder=lambda x: x)
    assert task.evaluate(data, oracle)["faithfulness"].value == pytest.approx(1.0, abs=1e-4)
    gen = torch.Generator().manual_seed(0)
    one_random = torch.randn(1, d, generator=gen)
    f_random = task.evaluate(data, FeatureSet(data.hook_name, one_random, encoder=lambda x: x @ one_random.T))
    assert abs(f_random["faithfulness"].value) < 0.3  # one random direction of d carries about nothing


def test_probe_beats_random_directions_on_attribute_coverage(prepared):
    from deeprobe_bench.baselines.probe import Probe
    from deeprobe_bench.baselines.random import RandomDirections

    subject, task, data = prepared

    probe = task.evaluate(data, Probe().discover(task_context(subject, data, "labels")))["attribute_coverage"].value
    rnd = task.evaluate(data, RandomDirections().discover(task_context(subject, data, "none")))["attribute_coverage"].value
    assert probe > rnd + 0.1


def test_main_command_prints_a_table_and_records_the_cell(tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["-q", "run", "--task", "ioi", "--method", "mcts", "--limit", "32", "-M", "budget=20",
            "-T", "objective_batch=16", "--results-dir", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "faithfulness_cpr" in table and "mcts[budget=20]" in table
    (path,) = out.rglob("*.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["samples"]["limit"] == 32
    assert 0 < result["objective_calls"] <= 20
    assert result["details"]["task_info"]["hook_name"] == IOI_MINI.load().card["task"]["hook_name"]


def test_the_readme_plugin_example_runs(tmp_path, capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_method.py.*?)```", readme, re.S).group(1)
    plugin = tmp_path / "my_method.py"
    plugin.write_text(code)
    assert len(code.strip().splitlines()) < 30
    argv = ["-q", "--plugin", str(plugin), "run", "--task", "ioi", "--method", "top-variance", "-M", "n=20",
            "--limit", "32", "--results-dir", str(tmp_path / "results")]  # fmt: skip
    assert cli.main(argv) == 0
    assert "top-variance[n=20]" in capsys.readouterr().out
