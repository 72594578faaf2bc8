"""Issue 16's reliability items that are not bad inputs: result provenance and ``--allow-override``, the
``still running`` log line of a long cell, ``cache ls|prune`` and the activation cache's size limit,
``--quiet`` silencing third-party bars.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time

import pytest
from helpers import HELPERS_PATH, ToyRandom

from deeprobe_bench import activations, cli, registry, runner

PLUGIN = ["--plugin", str(HELPERS_PATH)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    for var in ("DEEPROBE_CACHE_MAX_SIZE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(var, "")  # recorded, so the test's changes are undone
        monkeypatch.delenv(var)


def test_results_record_where_their_task_and_method_came_from(tmp_path, capsys):
    code = cli.main([*PLUGIN, "run", "--task", "toy", "--method", "toy-random", "--results-dir", str(tmp_path / "r")])
    capsys.readouterr()
    assert code == 0
    [path] = (tmp_path / "r").rglob("*.json")
    prov = json.loads(path.read_text())["provenance"]
    digest = hashlib.sha256(HELPERS_PATH.read_bytes()).hexdigest()
    for what in ("task", "method"):
        assert prov[what]["kind"] == "plugin file" and prov[what]["sha256"] == digest
        assert prov[what]["path"] == str(HELPERS_PATH) and "overrides" not in prov[what]
    builtin = registry.provenance("methods", "sae")
    assert builtin == {"kind": "distribution", "distribution": "deeprobe-bench",
                       "version": importlib.metadata.version("deeprobe-bench"),
                       "entry_point": "sae = deeprobe_bench.baselines.sae:SAELatents"}  # fmt: skip


def test_a_plugin_replaces_a_built_in_only_with_allow_override_and_the_result_says_so(tmp_path, capsys):
    plugin = tmp_path / "fake_sae.py"
    plugin.write_text("from helpers import ToyRandom\n\n\nclass FakeSAE(ToyRandom):\n    name = 'sae'\n")
    args = ["--plugin", str(plugin), *PLUGIN, "run", "--task", "toy", "--method", "sae", "--results-dir",
            str(tmp_path / "r")]  # fmt: skip
    assert cli.main(args) == 2
    assert "--allow-override" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    real = tmp_path / "r" / "toy" / "toy" / "sae" / "seed0.json"
    real.parent.mkdir(parents=True)
    real.write_text("the built-in sae's result\n")
    registry.reset()
    assert cli.main(["--allow-override", *args]) == 0
    assert "sae(plugin)" in capsys.readouterr().out
    assert real.read_text() == "the built-in sae's result\n"  # never overwritten
    path = tmp_path / "r" / "toy" / "toy" / "sae(plugin)" / "seed0.json"
    result = json.loads(path.read_text())
    assert result["method"] == "sae" and result["method_label"] == "sae(plugin)"  # its own leaderboard row
    prov = result["provenance"]["method"]
    assert prov["kind"] == "plugin file" and prov["sha256"] == hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert "sae = deeprobe_bench.baselines.sae:SAELatents" in prov["overrides"]


class SlowRandom(ToyRandom):
    name = "toy-slow"

    def discover(self, ctx):
        time.sleep(0.5)
        return super().discover(ctx)


def test_a_long_cell_logs_that_it_is_still_running_when_not_on_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.1)
    registry.register_method(SlowRandom)
    code = cli.main([*PLUGIN, "run", "--task", "toy", "--method", "toy-slow", "--results-dir", str(tmp_path / "r")])
    _, err = capsys.readouterr()  # captured: stderr is not a terminal
    assert code == 0
    beats = [line for line in err.splitlines() if "toy/toy/toy-slow/seed0: still running" in line]
    assert 2 <= len(beats) <= 6  # every 0.1 s over 0.5 s
    lines = err.splitlines()
    assert lines.index(beats[-1]) < next(i for i, line in enumerate(lines) if "done in" in line)  # stops when done


def _entries(tmp_path, sizes):
    """Activation cache entries of ``sizes`` bytes, oldest first (mtimes 100 s apart)."""
    d = tmp_path / "cache" / "activations"
    d.mkdir(parents=True)
    paths = []
    for i, size in enumerate(sizes):
        p = d / f"entry{i}.pt"
        p.write_bytes(b"x" * size)
        os.utime(p, (1_000_000 + 100 * i, 1_000_000 + 100 * i))
        paths.append(p)
    return paths


def test_cache_ls_and_prune_remove_the_least_recently_used_first(tmp_path, capsys):
    paths = _entries(tmp_path, [1000, 1000, 1000, 1000])
    assert cli.main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| entry") and ".pt" in line] == [
        "entry0.pt", "entry1.pt", "entry2.pt", "entry3.pt"]  # fmt: skip
    assert "activations: 4 entries, 0.0 MB" in out and "limit 2147.5 MB" in out
    os.utime(paths[0])  # entry0 was just used: it is now the most recent
    assert cli.main(["cache", "prune", "--max-size", "2500"]) == 0
    assert "removed 2 activation cache entries" in capsys.readouterr().out
    assert sorted(p.name for p in paths if p.exists()) == ["entry0.pt", "entry3.pt"]
    assert cli.main(["cache", "prune"]) == 0  # default: empty it
    capsys.readouterr()
    assert not any(p.exists() for p in paths)


def test_the_activation_cache_keeps_to_its_size_limit(tmp_path, monkeypatch):
    paths = _entries(tmp_path, [400, 400, 400])
    monkeypatch.setenv("DEEPROBE_CACHE_MAX_SIZE", "1000")
    activations._after_write()  # what activations.get does after writing an entry
    assert [p.exists() for p in paths] == [False, True, True]
    monkeypatch.setenv("DEEPROBE_CACHE_MAX_SIZE", "off")
    assert activations.max_cache_bytes() is None
    monkeypatch.setenv("DEEPROBE_CACHE_MAX_SIZE", "1.5K")
    assert activations.max_cache_bytes() == 1536


def test_quiet_silences_third_party_progress_bars(capsys):
    datasets_utils = pytest.importorskip("datasets.utils")
    try:
        assert cli.main(["-q", *PLUGIN, "ls", "tasks"]) == 0
        capsys.readouterr()
        assert datasets_utils.are_progress_bars_disabled()
        assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    finally:
        datasets_utils.enable_progress_bars()


def test_redact_removes_registered_secrets_and_bearer_tokens(tmp_path):
    from deeprobe_bench.results import atomic_write_text, redact, register_secret

    register_secret("sk-live-abcdef123456")
    register_secret("abc")  # too short to be a key: never redacted (it would mangle ordinary words)
    text = "401: Incorrect API key provided: sk-live-abcdef123456 (header Authorization: Bearer tok.en-1_2)"
    assert redact(text) == "401: Incorrect API key provided: *** (header Authorization: Bearer ***)"
    assert redact("abc is fine") == "abc is fine" and redact(None) is None
    path = atomic_write_text(tmp_path / "x.json", '{"error": "key sk-live-abcdef123456"}')
    assert path.read_text() == '{"error": "key ***"}' and path.stat().st_mode & 0o777 == 0o600


def test_credentials_in_a_judge_url_are_never_recorded(tmp_path, monkeypatch):
    from deeprobe_bench.judge import JudgeClient, JudgeConfig

    monkeypatch.delenv("DEEPROBE_JUDGE_API_KEY", raising=False)
    url = "https://alice:pa55word-xyz@judge.example/v1?api_key=qk-0123456789"
    client = JudgeClient(JudgeConfig(base_url=url, model="m", cache_path=""))
    try:
        described = json.dumps(client.describe())
        assert "pa55word-xyz" not in described and "qk-0123456789" not in described
        assert "judge.example/v1" in described and "***" in client.endpoint_id
    finally:
        client.close()
