"""Result files -> leaderboard tables (markdown via tabulate, CSV), and the table ``run`` prints.

Tables are built from the result JSONs and nothing else. Per task:

- only results with status ``ok``; ``--limit`` runs are left out unless asked for, and only the
  newest task version present is shown (numbers of different versions are not comparable);
- per model, the results of one set of weights (``model_info.weights_sha256``): results are grouped by
  weights and the group with the most results is published (ties: the most recently finished), so one
  odd result (a run on corrupted or since-retrained weights) never evicts the others; the groups left
  out are logged and named in the table's header, with the one published (:func:`weights_groups`;
  results that predate the recorded fingerprint are kept);
- one row per (method label, model, task options): runs with different task options never share a
  row; the options are those that differ from the task's defaults (:func:`task_options_text`), shown
  in a ``task options`` column whenever any row has some, and the header states the default config;
- one column per metric, in the order the task returned them, headed with its direction
  (``faithfulness_auc ↑``), each cell ``mean ± std`` over seeds (sample std, ddof=1; just the mean
  for one seed), plus ``seeds``, ``supervision`` and ``model`` columns;
- rows sorted by the task's ``primary_metric`` (the first metric when the task cannot be
  loaded), best first.

The markdown file carries no timestamp, so rebuilding from the same results gives the same file.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from deeprobe_bench import registry
from deeprobe_bench.api import REFERENCE_SUPERVISIONS
from deeprobe_bench.results import Result, atomic_write_text, load_results, sanitize

log = logging.getLogger(__name__)

GENERATED_BY = "deeprobe-bench leaderboard build"


def arrow(higher_is_better: bool | None) -> str:
    """``↑`` for higher-is-better metrics, ``↓`` otherwise."""
    return "↑" if higher_is_better is not False else "↓"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table ('' for None / NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, int | float):
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def metric_order(results: Iterable[Result]) -> tuple[list[str], dict[str, bool]]:
    """Metric names in first-seen order (the task's order) and each one's direction."""
    names: list[str] = []
    higher: dict[str, bool] = {}
    for r in results:
        for name, m in r.metrics.items():
            if name not in higher:
                names.append(name)
                higher[name] = bool(m.get("higher_is_better", True))
    return names, higher


def primary_metric(task: str, metric_names: list[str]) -> str | None:
    """The task's ``primary_metric`` if its class loads and the metric is present, else the first metric."""
    try:
        primary = getattr(registry.get_task(task), "primary_metric", "")
    except Exception as e:  # unknown or broken task: tables still build from the files
        log.debug("task %s not loadable (%s); sorting by its first metric", task, e)
        primary = ""
    if primary in metric_names:
        return primary
    return metric_names[0] if metric_names else None


def select(results: Iterable[Result], task: str, include_limited: bool = False) -> list[Result]:
    """The results of ``task`` that belong in its table (see the module docstring)."""
    return _newest_weights(_candidates(results, task, include_limited))


def _candidates(results: Iterable[Result], task: str, include_limited: bool, warn: bool = True) -> list[Result]:
    """The finished results of ``task`` of its newest version (``--limit`` runs only if asked), before the weights
    filter."""
    chosen = [r for r in results if r.task == task and r.ok and (include_limited or not r.limited)]
    versions = {str(r.task_version) for r in chosen}
    if len(versions) > 1:
        newest = max(versions, key=_version_key)
        if warn:
            log.warning("task %s: results of versions %s; showing version %s only", task, ", ".join(sorted(versions)),
                        newest)  # fmt: skip
        chosen = [r for r in chosen if str(r.task_version) == newest]
    return chosen


def _weights_sha(r: Result) -> str | None:
    return (r.model_info or {}).get("weights_sha256")


def weights_groups(results: Iterable[Result]) -> dict[str, dict[str, Any]]:
    """Per model, its results grouped by weights and the group published (see the module docstring).

    Returns:
        ``{model: {"published": sha256, "counts": {sha256: n_results}, "newest": {sha256: finished_at}}}``
        for every model with at least one fingerprinted result.
    """
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        sha = _weights_sha(r)
        if not sha:
            continue
        g = out.setdefault(r.model, {"counts": Counter(), "newest": {}})
        g["counts"][sha] += 1
        g["newest"][sha] = max(g["newest"].get(sha, ""), r.finished_at or "")
    for g in out.values():
        g["published"] = max(g["counts"], key=lambda sha: (g["counts"][sha], g["newest"][sha], sha))
        g["counts"] = dict(g["counts"])
    return out


def weights_note(groups: dict[str, dict[str, Any]]) -> list[str]:
    """Header lines naming the weights each model's rows come from, and the groups left out."""
    lines = []
    for model, g in sorted(groups.items()):
        pub = g["published"]
        left = [f"`{sha[:12]}` ({n} results)" for sha, n in sorted(g["counts"].items()) if sha != pub]
        line = f"- Weights of `{model}`: `{pub[:12]}` ({g['counts'][pub]} results)"
        lines.append(line + (f"; left out: {', '.join(left)}" if left else ""))
    return lines


def _newest_weights(results: list[Result]) -> list[Result]:
    """Keep, per model, the results of the published weights group (:func:`weights_groups`)."""
    groups = weights_groups(results)
    keep, left = [], Counter()
    for r in results:
        sha = _weights_sha(r)
        if sha is None or sha == groups[r.model]["published"]:
            keep.append(r)
        else:
            left[r.model] += 1
    for model, n in sorted(left.items()):
        log.warning("model %s: %d results of other weights left out; publishing weights %s (%d results)", model, n,
                    groups[model]["published"][:12], groups[model]["counts"][groups[model]["published"]])  # fmt: skip
    return keep


def _version_key(v: str) -> tuple[Any, ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in v.replace("-", ".").split("."))


def aggregate(results: Iterable[Result], task: str, include_limited: bool = False) -> pd.DataFrame:
    """Numbers behind the table of ``task``: one row per (method label, model, task options).

    Returns:
        Columns ``method, model, task_options, supervision, seeds`` then ``<metric>_mean`` and
        ``<metric>_std`` for each metric (std NaN for one seed), sorted best first by the primary
        metric. ``df.attrs`` holds ``metrics`` (ordered names), ``higher`` (directions) and
        ``primary``. Empty when no result qualifies.
    """
    chosen = select(results, task, include_limited)
    names, higher = metric_order(chosen)
    rows = []
    for r in chosen:
        row: dict[str, Any] = {
            "method": r.method_label or r.method,
            "model": r.model,
            "task_options": task_options_text(r.task, r.task_config),
            "supervision": r.supervision,
            "seed": r.seed,
        }
        for name in names:
            value = r.metric(name)
            row[name] = float(value) if isinstance(value, int | float) else math.nan
        rows.append(row)
    primary = primary_metric(task, names)
    attrs = {"metrics": names, "higher": higher, "primary": primary}
    keys = ["method", "model", "task_options"]
    if not rows:
        df = pd.DataFrame(columns=[*keys, "supervision", "seeds"])
        df.attrs.update(attrs)
        return df
    raw = pd.DataFrame(rows)
    grouped = raw.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(supervision=("supervision", "first"), seeds=("seed", "nunique")).reset_index()
    for name in names:
        stats = grouped[name].agg(["mean", "std", "count"]).reset_index(drop=True)
        out[f"{name}_mean"] = stats["mean"].to_numpy()
        # pandas' std is ddof=1 and NaN for one value: exactly "blank for one seed"
        out[f"{name}_std"] = stats["std"].to_numpy()
    out["reference"] = out["supervision"].isin(REFERENCE_SUPERVISIONS)
    if primary is not None:  # reference rows (oracle, null) after every ranked row, never ranked among them
        out = out.sort_values(
            ["reference", f"{primary}_mean", "method"], ascending=[True, not higher[primary], True],
            na_position="last", kind="mergesort",
        )  # fmt: skip
    else:
        out = out.sort_values("reference", kind="mergesort")
    out = out.reset_index(drop=True)
    out.attrs.update(attrs)
    return out


def _task_defaults(task: str) -> dict[str, Any] | None:
    """The task's default config as stored in results, or None when the task class does not load."""
    try:
        from deeprobe_bench import api
        from deeprobe_bench.results import to_jsonable

        return to_jsonable(api.config_to_dict(registry.get_task(task).Config()))
    except Exception as e:  # unknown or broken task: tables still build from the files
        log.debug("task %s: default config unknown (%s)", task, e)
        return None


def task_options_text(task: str, cfg: dict[str, Any] | None) -> str:
    """The options of ``cfg`` that differ from task ``task``'s defaults, ``k=v,...`` sorted ('' for none).

    When the task class cannot be loaded every option is listed (its defaults are unknown).
    """
    defaults = _task_defaults(task)
    items = sorted((cfg or {}).items())
    if defaults is not None:
        items = [(k, v) for k, v in items if k not in defaults or defaults[k] != v]
    return ",".join(f"{k}={v}" for k, v in items)


def task_config_note(task: str, results: list[Result]) -> list[str]:
    """Header lines stating the task config the table was built from."""
    defaults = _task_defaults(task)
    if defaults is None:
        configs = sorted({task_options_text(task, r.task_config) for r in results})
        return [f"- Task config(s): {'; '.join(f'`{c}`' for c in configs if c) or 'defaults'}"]
    shown = ", ".join(f"{k}={v}" for k, v in sorted(defaults.items()))
    lines = [f"- Task config: defaults (`{shown}`)" if shown else "- Task config: defaults"]
    if any(task_options_text(task, r.task_config) for r in results):
        lines.append("  **Rows with a `task options` entry were run with those non-default options.**")
    return lines


def build_table(results: Iterable[Result], task: str, include_limited: bool = False) -> pd.DataFrame:
    """The display table of ``task``: strings ``mean ± std`` under headers like ``recovery ↑``.

    Columns: ``method, model, supervision, seeds``, ``task options`` (only when some row was run with
    non-default task options), then one column per metric in the task's order.
    Rows best first by the primary metric. Empty DataFrame when no result qualifies.
    """
    agg = aggregate(results, task, include_limited)
    names, higher = agg.attrs.get("metrics", []), agg.attrs.get("higher", {})
    table = pd.DataFrame(
        {
            "method": agg["method"],
            "model": agg["model"],
            "supervision": agg["supervision"],
            "seeds": agg["seeds"].astype(int) if len(agg) else agg["seeds"],
        }
    )
    if len(agg) and (agg["task_options"] != "").any():
        table["task options"] = agg["task_options"]
    for name in names:
        means, stds = agg[f"{name}_mean"], agg[f"{name}_std"]
        table[f"{name} {arrow(higher[name])}"] = [
            fmt(m) if (s is None or math.isnan(s)) else f"{fmt(m)} ± {fmt(s)}" for m, s in zip(means, stds, strict=True)
        ]
    table.attrs.update(agg.attrs)
    return table


def to_markdown(df: pd.DataFrame, title: str, note: str | None = None) -> str:
    """``# title``, the note, then ``df`` as a GitHub markdown table (cells kept as given).

    Rows of a reference supervision (``oracle``, ``null``: :data:`api.REFERENCE_SUPERVISIONS`) are set
    apart in a second table under "Reference rows": they show where chance and perfection lie on every
    column and are never ranked.
    """
    parts = [f"# {title}", ""]
    if note:
        parts += [note.rstrip(), ""]
    ref = df["supervision"].isin(REFERENCE_SUPERVISIONS) if len(df) and "supervision" in df else None
    ranked = df[~ref] if ref is not None else df
    if len(ranked):
        parts.append(tabulate(ranked, headers="keys", tablefmt="github", showindex=False, disable_numparse=True))
    else:
        parts.append("_No results._")
    if ref is not None and ref.any():
        parts += ["", "## Reference rows", "",
                  "The floor and ceiling of every column, on the same data (`deeprobe-bench calibrate`): `oracle` reads "
                  "the task's own ground truth, `null` is a constant and a noise feature. Never ranked.", "",
                  tabulate(df[ref], headers="keys", tablefmt="github", showindex=False, disable_numparse=True)]  # fmt: skip
    return "\n".join(parts) + "\n"


def _header_note(results: list[Result], task: str, df: pd.DataFrame, results_dir: str | os.PathLike[str],
                 weights: dict[str, dict[str, Any]] | None = None) -> str:  # fmt: skip
    versions = sorted({str(r.task_version) for r in results})
    models = sorted({r.model for r in results})
    seeds = sorted({r.seed for r in results})
    commits = sorted({(r.git_commit[:12] + (" (dirty)" if r.dirty else "")) if r.git_commit else "unknown"
                      for r in results})
    primary = df.attrs.get("primary")
    lines = [
        f"- Task: `{task}` (version {', '.join(versions)})",
        f"- Model(s): {', '.join(f'`{m}`' for m in models)}",
        f"- Seeds: {', '.join(map(str, seeds))}",
        *weights_note(weights or {}),
        *task_config_note(task, results),
        f"- Commit(s): {', '.join(commits)}",
        f"- Sorted by: `{primary}`" if primary else "- Sorted by: (no metrics)",
        "",
        "Cells are mean ± std over seeds (sample std; a single value for one seed). "
        "↑ higher is better, ↓ lower is better. `supervision` is what the method was given.",
        "",
        f"Generated by `{GENERATED_BY}` from {len(results)} result files in `{Path(results_dir).as_posix()}`; "
        "do not edit by hand.",
    ]
    if any(r.limited for r in results):
        lines.append("**Includes `--limit` runs: not comparable with full runs.**")
    judges = sorted({f"{j.get('model')} ({j.get('endpoint')}, prompts {j.get('prompt_version')})"
                     for r in results if isinstance(j := (r.details or {}).get("judge"), dict)})  # fmt: skip
    if judges:
        lines += ["", f"`judge_score` (autointerp detection, 0.5 = chance) by: {'; '.join(judges)}."]
    return "\n".join(lines)


def write_leaderboards(
    results_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    include_limited: bool = False,
) -> list[Path]:
    """Write ``<out>/<task>.md`` and ``<out>/<task>.csv`` for every task with results, atomically.

    The CSV holds the numbers (``<metric>_mean``, ``<metric>_std`` ...), the markdown the table.

    Returns:
        The written paths (md, csv per task), in task order. Empty if no results qualify.
    """
    results = load_results(results_dir)
    written: list[Path] = []
    out = Path(out_dir)
    for task in sorted({r.task for r in results}):
        chosen = select(results, task, include_limited)
        if not chosen:
            log.info("task %s: no finished full-size results; no table", task)
            continue
        weights = weights_groups(_candidates(results, task, include_limited, warn=False))
        table = build_table(chosen, task, include_limited=True)
        note = _header_note(chosen, task, table, results_dir, weights)
        md = to_markdown(table, f"Leaderboard: {task}", note)
        csv = aggregate(chosen, task, include_limited=True).to_csv(index=False, lineterminator="\n")
        name = sanitize(task)
        written.append(atomic_write_text(out / f"{name}.md", md))
        written.append(atomic_write_text(out / f"{name}.csv", csv))
    return written


def cells_table(results: list[Result]) -> str:
    """The table ``deeprobe-bench run`` prints: one row per cell, primary metric first.

    Columns: method, seed, the primary metric, the other metrics (task order), status (with the
    error message for failed cells), wall time.
    """
    names, higher = metric_order(results)
    tasks = {r.task for r in results}
    primary = primary_metric(next(iter(tasks)), names) if len(tasks) == 1 else (names[0] if names else None)
    ordered = ([primary] if primary else []) + [n for n in names if n != primary]
    rows = []
    for r in results:
        row: dict[str, Any] = {}
        if len(tasks) > 1:
            row["task"] = r.task
        row["method"] = r.method_label or r.method
        row["seed"] = r.seed
        for name in ordered:
            row[f"{name} {arrow(higher[name])}"] = fmt(r.metric(name)) if r.ok else ""
        status = r.status if r.ok else f"error: {_one_line(r.error)}"
        if r.limited:
            status += f" (limit {r.samples.get('limit')})"
        row["status"] = status
        row["time"] = f"{r.wall_time_s:.2f} s" if r.wall_time_s is not None else ""
        rows.append(row)
    if not rows:
        return "(no cells)"
    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def _one_line(text: str | None, width: int = 80) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"

