"""Calibration: the floor and ceiling of every metric of a task, measured by the reference methods.

A metric is valid only when a perfect feature set scores near its best value and an uninformative one
at chance (DESIGN.md, "Calibration"; REFERENCE.md section 9). ``deeprobe-bench calibrate --task T`` runs
the reference methods ``oracle`` (the task's own ground truth) and ``null`` (a constant and a noise
feature, :mod:`deeprobe_bench.references`) as ordinary cells (their results land next to every other
method's, so leaderboards show them as reference rows) and prints, per metric, the floor (null), the
ceiling (oracle), their gap and whether the metric separates them: ``oracle - null >= MIN_GAP`` in the
metric's better direction.

Not every number is a score bounded by 1: a task lists in :attr:`Task.calibration_notes` the metrics that
are counts, flags, or scores whose attainable ceiling is not 1 (with the reason), and those are shown
with their note instead of a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deeprobe_bench.results import Result

#: the least gap between the oracle and the null for a metric whose ceiling is 1 (issue 12)
MIN_GAP = 0.9
#: metrics whose chance level is not 0, added by the core to every task (autointerp detection accuracy)
CHANCE: dict[str, float] = {"judge_score": 0.5}
#: metrics the core adds that are counts, not scores
CORE_NOTES: dict[str, str] = {"judge_n_scored": "a count of the features the judge could score"}


@dataclass
class Row:
    """One metric's calibration: floor (null), ceiling (oracle), gap and verdict."""

    metric: str
    higher_is_better: bool
    floor: float | None
    ceiling: float | None
    verdict: str  # "separates", "FAILS", or "n/a: <why>"

    @property
    def gap(self) -> float | None:
        if self.floor is None or self.ceiling is None:
            return None
        return (self.ceiling - self.floor) if self.higher_is_better else (self.floor - self.ceiling)

    @property
    def ok(self) -> bool:
        return not self.verdict.startswith("FAILS")


def _mean(results: list[Result], metric: str) -> float | None:
    vals = [v for r in results if r.ok and isinstance(v := r.metric(metric), int | float)]
    return sum(vals) / len(vals) if vals else None


def calibrate(
    oracle: list[Result], null: list[Result], notes: dict[str, str] | None = None, chance: dict[str, float] | None = None
) -> list[Row]:
    """Rows of the calibration table from the reference cells (means over their seeds).

    Args:
        oracle / null: the finished cells of the reference methods (one per seed).
        notes: ``{metric: why it has no verdict}`` (:attr:`Task.calibration_notes`).
        chance: ``{metric: chance level}`` beyond :data:`CHANCE` (:attr:`Task.calibration_chance`).

    Returns:
        One :class:`Row` per metric, in the order the task reports them, then one per metric of ``notes``
        that no reference cell reports (with no floor or ceiling: the note says where it is checked).
    """
    task_notes = dict(notes or {})
    notes = {**CORE_NOTES, **task_notes}
    chance = {**CHANCE, **(chance or {})}
    names: list[str] = []
    higher: dict[str, bool] = {}
    for r in [*oracle, *null]:
        for name, m in (r.metrics or {}).items():
            if name not in higher:
                names.append(name)
                higher[name] = bool(m.get("higher_is_better", True))
    rows = []
    for name in names:
        floor, ceiling = _mean(null, name), _mean(oracle, name)
        if name in notes:
            verdict = f"n/a: {notes[name]}"
        elif floor is None or ceiling is None:
            verdict = "FAILS"
        elif name in chance:
            verdict = _chance_verdict(name, chance[name], floor, ceiling, null)
        else:
            gap = (ceiling - floor) if higher[name] else (floor - ceiling)
            verdict = "separates" if gap >= MIN_GAP else "FAILS"
        rows.append(Row(name, higher[name], floor, ceiling, verdict))
    for name, why in task_notes.items():  # metrics the reference sets never get (a ranking's agreement ...)
        if name not in higher:
            rows.append(Row(name, True, None, None, f"n/a: {why} (the reference rows do not report it)"))
    return rows


def _chance_verdict(name: str, c: float, floor: float, ceiling: float, null: list[Result]) -> str:
    """Verdict for a metric with a chance level ``c`` (``judge_score``: 0.5): the ceiling reaches
    ``c + MIN_GAP (1 - c)`` and the floor lies within two standard errors (at least 0.05) of ``c``.

    The standard error is the metric's own where the result gives one, else for ``judge_score`` the
    binomial one of the detection accuracy, ``sqrt(c (1 - c) / (n_detect x n_scored))`` with the
    autointerp defaults, else 0 (the tolerance is then 0.05).
    """
    from deeprobe_bench.metrics.autointerp import AutointerpConfig

    ses = [se for r in null if r.ok and isinstance(se := (r.metrics.get(name) or {}).get("stderr"), int | float)]
    if ses:
        se = sum(ses) / len(ses) / max(1, len(ses)) ** 0.5
    elif name == "judge_score":
        cfg = AutointerpConfig()
        n_scored = sum(int(r.metric("judge_n_scored") or 0) for r in null if r.ok) or 1
        se = (c * (1 - c) / ((cfg.n_detect_pos + cfg.n_detect_neg) * n_scored)) ** 0.5
    else:
        se = 0.0
    tol = max(0.05, 2 * se)
    if ceiling >= c + MIN_GAP * (1 - c) and abs(floor - c) <= tol:
        return f"separates (chance {c}, floor within {tol:.3f})"
    return f"FAILS (chance {c}, floor must lie within {tol:.3f})"


def table(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as dicts for tabulate: metric, direction, floor, ceiling, gap, verdict."""
    from deeprobe_bench.leaderboard import arrow, fmt

    return [
        {"metric": r.metric, "": arrow(r.higher_is_better), "floor (null)": fmt(r.floor),
         "ceiling (oracle)": fmt(r.ceiling), "gap": fmt(r.gap), "verdict": r.verdict}
        for r in rows
    ]  # fmt: skip
