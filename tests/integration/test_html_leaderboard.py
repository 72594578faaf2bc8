"""The HTML leaderboard: bootstrap intervals, ties, the overall table, escaping, plots, and headless Chromium.

Results are hand-made (tests/helpers.make_result) so every rank, tie and interval is known by construction.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deeprobe_bench import cli, leaderboard
from deeprobe_bench.results import result_path, write_result

EVIL = "<img src=x onerror=alert(1)>|**x**"


def _write(results_dir: Path, results) -> None:
    for r in results:
        write_result(r, result_path(results_dir, r.task, r.model, r.method_label, r.seed))


def _grid(toys):
    mk = toys.make_result
    rs = []
    for seed, (a, b, c) in enumerate([(0.90, 0.50, 0.49), (0.91, 0.52, 0.53), (0.92, 0.51, 0.50)]):
        rs += [mk("best", seed, recovery=a), mk("mid", seed, recovery=b), mk(EVIL, seed, recovery=c)]
        ref = mk("oracle", seed, recovery=1.0)
        rs.append(dataclasses.replace(ref, supervision="oracle"))
    for r in rs:
        r.forward_passes, r.objective_calls = 10 * (r.seed + 1), r.seed
        r.details = {"faithfulness_curve": {"fractions": [0.01, 0.1, 1.0], "f": [0.1, 0.5, r.metric("recovery")]}}
    return rs


def test_bootstrap_interval_ties_and_ranks_are_those_of_the_seeds(toys):
    lo, hi = leaderboard.bootstrap_ci([0.90, 0.91, 0.92])
    assert 0.90 - 1e-12 <= lo <= 0.91 <= hi <= 0.92 + 1e-12 and leaderboard.bootstrap_ci([0.5]) == (0.5, 0.5)
    assert leaderboard.bootstrap_ci([0.2, 0.4]) == leaderboard.bootstrap_ci([0.2, 0.4])  # seeded
    rows, names, higher, primary = leaderboard.html_table_rows(_grid(toys), "toy")
    assert primary == "recovery" and names == ["recovery"]
    ranked = [(r["method"], r["rank"], r["tie"]) for r in rows if not r["reference"]]
    # best is far above; mid (0.50..0.52) and EVIL (0.49..0.53) overlap: tied, same rank
    assert ranked == [("best", 1, False), ("mid", 2, False), (EVIL, 2, True)]
    assert [r["method"] for r in rows if r["reference"]] == ["oracle"] and "rank" not in rows[-1]


def test_overall_mean_rank_over_tasks(toys):
    mk = toys.make_result
    rs = []
    for seed in (0, 1):
        rs += [mk("a", seed, task="t1", recovery=0.9 + seed / 100), mk("b", seed, task="t1", recovery=0.1 + seed / 100)]
        rs += [mk("a", seed, task="t2", recovery=0.2 + seed / 100), mk("b", seed, task="t2", recovery=0.8 + seed / 100)]
        rs += [mk("c", seed, task="t2", recovery=0.5 + seed / 100)]
    overall = leaderboard.overall_ranks(rs)
    got = {o["method"]: (o["groups"], o["mean_rank"], o["ci"]) for o in overall}
    # a: 1st of 2 on t1, 3rd of 3 on t2 -> 2.0; b: 2nd, 1st -> 1.5; c: 2nd on t2 only -> 2.0. Seeds never swap them.
    assert got == {"a": (2, 2.0, (2.0, 2.0)), "b": (2, 1.5, (1.5, 1.5)), "c": (1, 2.0, (2.0, 2.0))}
    assert [o["method"] for o in overall] == ["b", "a", "c"]


def test_leaderboard_build_defaults_to_the_published_results_and_refuses_to_overwrite_them(tmp_path, toys,
                                                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "results"
    _write(mine, _grid(toys))
    (tmp_path / "leaderboards").mkdir()
    assert cli.main(["leaderboard", "build", "--results-dir", "results"]) == 2
    assert "would overwrite the published tables" in capsys.readouterr().err
    assert not list((tmp_path / "leaderboards").iterdir())
    _write(tmp_path / "leaderboards" / "results", _grid(toys))
    assert cli.main(["leaderboard", "build"]) == 0
    md = (tmp_path / "leaderboards" / "toy.md").read_text()
    assert "from 12 result files in `leaderboards/results`" in md
    first = md
    assert cli.main(["leaderboard", "build"]) == 0 and (tmp_path / "leaderboards" / "toy.md").read_text() == first
    # results without a recorded commit (a dirty / unknown tree) are flagged in the header
    assert "**Built from results of a dirty (or unknown) source tree" in md


def test_html_page_escapes_names_sets_reference_rows_apart_and_loads_in_chromium(tmp_path, toys, capsys):
    res, out = tmp_path / "results", tmp_path / "site"
    _write(res, _grid(toys))
    assert cli.main(["leaderboard", "build", "--results-dir", str(res), "--out", str(out), "--html"]) == 0
    page = (out / "index.html").read_text()
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;|**x**" in page
    assert {p.name for p in (out / "plots").iterdir()} == {"toy-faithfulness.png", "toy-compute.png"}
    assert (out / "plots" / "toy-compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "toy.html").is_file() and (out / "toy.md").is_file()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "<h1>deeprobe-bench leaderboard</h1>" in dom
    ranked = re.search(r'<table class="ranked">(.*?)</table>', dom, re.S).group(1)
    reference = re.search(r'<table class="reference">(.*?)</table>', dom, re.S).group(1)
    methods = re.findall(r"<tr[^>]*><td[^>]*>[^<]*</td><td>([^<]*)</td>", ranked)
    assert methods == ["best", "mid", "&lt;img src=x onerror=alert(1)&gt;|**x**"]  # text, not an element
    assert "oracle" in reference and "oracle" not in ranked
    assert '<img src="x"' not in dom and "onerror=alert(1)>" not in dom
    assert re.findall(r'<tr class="tie"><td class="rank"[^>]*>2 =</td>', ranked)
    overall = re.search(r'<table class="overall">(.*?)</table>', dom, re.S).group(1)
    assert [m for m in re.findall(r"<tr><td>\d+</td><td>([^<]*)</td>", overall)] == [
        "best", "mid", "&lt;img src=x onerror=alert(1)&gt;|**x**"]
    shot = tmp_path / "screenshot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep = Path("/tmp/deeprobe-html-screenshot.png")  # for a human to look at after a local run
    try:
        shutil.copy(shot, keep)
    except OSError:
        pass
