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
        return self.verdict != "FAILS"


def _mean(results: list[Result], metric: str) -> float | None:
    vals = [v for r in results if r.ok and isinstance(v := r.metric(metric), int | float)]
    return sum(vals) / len(vals) if vals else None


def calibrate(oracle: list[Result], null: list[Result], notes: dict[str, str] | None = None) -> list[Row]:
    """Rows of the calibration table from the reference cells (means over their seeds).

    Args:
        oracle / null: the finished cells of the reference methods (one per seed).
        notes: ``{metric: why it has no verdict}`` (:attr:`Task.calibration_notes`).

    Returns:
        One :class:`Row` per metric, in the order the task reports them.
    """
    notes = dict(notes or {})
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
        else:
            gap = (ceiling - floor) if higher[name] else (floor - ceiling)
            verdict = "separates" if gap >= MIN_GAP else "FAILS"
        rows.append(Row(name, higher[name], floor, ceiling, verdict))
    return rows


def table(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as dicts for tabulate: metric, direction, floor, ceiling, gap, verdict."""
    from deeprobe_bench.leaderboard import arrow, fmt

    return [
        {"metric": r.metric, "": arrow(r.higher_is_better), "floor (null)": fmt(r.floor),
         "ceiling (oracle)": fmt(r.ceiling), "gap": fmt(r.gap), "verdict": r.verdict}
        for r in rows
    ]  # fmt: skip
