"""The published leaderboards: rebuilt byte for byte from the committed results, each from one clean commit."""

from __future__ import annotations

import json
from pathlib import Path

from deeprobe_bench import cli

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "leaderboards"


def _tasks() -> list[str]:
    return sorted(p.name for p in (PUBLISHED / "results").iterdir() if p.is_dir())


def test_every_committed_table_rebuilds_byte_for_byte_from_the_committed_results(tmp_path, monkeypatch):
    assert _tasks(), "no published results"
    out = tmp_path / "out"
    monkeypatch.chdir(ROOT)  # the tables name their results folder as the published command does
    assert cli.main(["-q", "leaderboard", "build", "--results-dir", "leaderboards/results", "--out", str(out), "--html"]) == 0
    built = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for task in _tasks():
        for name in (f"{task}.md", f"{task}.csv"):
            assert (PUBLISHED / name).is_file(), f"results of {task} are published without {name}"
    committed = [p for p in PUBLISHED.rglob("*") if p.is_file() and p.relative_to(PUBLISHED).as_posix() in built]
    assert {p.relative_to(PUBLISHED).as_posix() for p in committed} >= {f"{t}.md" for t in _tasks()}
    for path in committed:
        rel = path.relative_to(PUBLISHED).as_posix()
        assert path.read_bytes() == (out / rel).read_bytes(), f"leaderboards/{rel} differs from its rebuild"


def test_every_published_table_comes_from_one_clean_commit():
    for task in _tasks():
        commits = set()
        for f in (PUBLISHED / "results" / task).rglob("*.json"):
            result = json.loads(f.read_text())
            assert result["dirty"] is False, f"{f} comes from a dirty tree"
            commits.add(result["git_commit"])
        assert len(commits) == 1, f"{task}: results of {len(commits)} commits"
        header = (PUBLISHED / f"{task}.md").read_text().split("\n\n", 2)[1]
        assert f"Commit(s): {next(iter(commits))[:12]}" in header and "dirty" not in header
