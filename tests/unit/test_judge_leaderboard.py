"""Tables say which judge produced judge_score, and show it as a column only where results have it."""

from helpers import make_result

from deeprobe_bench.leaderboard import write_leaderboards
from deeprobe_bench.results import result_path, write_result


def test_the_table_names_the_judge_of_judge_score(tmp_path):
    judged = make_result("rlaif", seed=0, recovery=0.5, judge_score=0.75)
    judged.details = {"judge": {"model": "deeprobe-local-judge", "endpoint": "deeprobe-local-judge/ground-truth-1",
                                "prompt_version": "autointerp-1"}}  # fmt: skip
    plain = make_result("sae", seed=0, recovery=0.4)
    for r in (judged, plain):
        write_result(r, result_path(tmp_path / "r", r.task, r.model, r.method_label, r.seed))
    md = next(p for p in write_leaderboards(tmp_path / "r", tmp_path / "lb") if p.suffix == ".md").read_text()
    assert "judge_score ↑" in md
    assert "by: deeprobe-local-judge (deeprobe-local-judge/ground-truth-1, prompts autointerp-1)" in md
    (row,) = [line for line in md.splitlines() if line.startswith("| sae")]
    assert row.rstrip(" |").endswith("0.400")  # no judge_score for a cell run without a judge
