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
                  "the task's own ground truth, `null` is a constant and noise features. Never ranked.", "",
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
        *([f"- **{warning}**"] if (warning := provenance_warning(results)) else []),
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



# --------------------------------------------------------------------------- HTML page and plots

#: bootstrap resamples behind every 95% interval (a fixed seed: the page is the same for the same results)
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr.tie td.rank{color:#a60} td.num{font-variant-numeric:tabular-nums}
table.reference{background:#fafafa;color:#555} .ci{color:#777;font-size:0.85em} img{max-width:48%;margin:0.5em}
"""


def bootstrap_ci(values: list[float], seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (over seeds), via ``scipy.stats.bootstrap``.

    One value gives ``(v, v)``; no value ``(nan, nan)``. Source: Efron & Tibshirani 1993, ch. 13.
    """
    import numpy as np

    vals = np.asarray([v for v in values if isinstance(v, int | float) and not math.isnan(v)], dtype=float)
    if len(vals) == 0:
        return math.nan, math.nan
    if len(vals) == 1 or np.all(vals == vals[0]):
        return float(vals[0]), float(vals[0])
    from scipy.stats import bootstrap

    res = bootstrap((vals,), np.mean, n_resamples=N_BOOTSTRAP, confidence_level=0.95, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _row_key(r: Result) -> tuple[str, str, str]:
    return (r.method_label or r.method, r.model, task_options_text(r.task, r.task_config))


def html_table_rows(results: list[Result], task: str) -> tuple[list[dict[str, Any]], list[str], dict[str, bool], str | None]:
    """Rows of the HTML table of ``task`` (already selected results): per row the per-seed values, mean, std
    and 95% bootstrap interval of every metric, its rank (ranked rows only) and whether it is tied, inside
    the noise, with the row above (their intervals of the primary metric overlap).

    Returns:
        (rows in :func:`aggregate`'s order, metric names, directions, primary metric).
    """
    agg = aggregate(results, task, include_limited=True)
    names, higher, primary = agg.attrs.get("metrics", []), agg.attrs.get("higher", {}), agg.attrs.get("primary")
    by_key: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        by_key.setdefault(_row_key(r), []).append(r)
    rows: list[dict[str, Any]] = []
    prev_ci: tuple[float, float] | None = None
    rank = 0
    for i, a in enumerate(agg.itertuples(index=False)):
        key = (a.method, a.model, a.task_options)
        rs = sorted(by_key.get(key, []), key=lambda r: r.seed)
        row: dict[str, Any] = {"method": a.method, "model": a.model, "task_options": a.task_options,
                               "supervision": a.supervision, "seeds": int(a.seeds), "reference": bool(a.reference),
                               "metrics": {}}
        for name in names:
            vals = [float(v) for r in rs if isinstance(v := r.metric(name), int | float)]
            row["metrics"][name] = {"values": vals, "mean": float(agg.iloc[i][f"{name}_mean"]),
                                    "std": float(agg.iloc[i][f"{name}_std"]), "ci": bootstrap_ci(vals)}
        if not row["reference"]:
            ci = row["metrics"][primary]["ci"] if primary else None
            tie = bool(ci and prev_ci and not any(map(math.isnan, (*ci, *prev_ci)))
                       and ci[0] <= prev_ci[1] and prev_ci[0] <= ci[1])
            rank = rank if tie else len([x for x in rows if not x["reference"]]) + 1
            row["rank"], row["tie"] = rank, tie
            prev_ci = ci
        rows.append(row)
    return rows, names, higher, primary


def overall_ranks(results: list[Result], include_limited: bool = False) -> list[dict[str, Any]]:
    """Mean rank of each method label across (task, model) groups, with a 95% bootstrap interval.

    In each group the ranked rows (not oracle / null) are ranked by the task's primary metric (1 = best);
    a method's mean rank is over the groups it appears in. The interval resamples the seeds of every row
    (:data:`N_BOOTSTRAP` times, seed :data:`BOOTSTRAP_SEED`) and re-ranks. Rows sorted by mean rank.
    """
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    groups: list[tuple[list[str], list[list[float]], bool]] = []
    for task in sorted({r.task for r in results}):
        chosen = [r for r in select(results, task, include_limited) if r.supervision not in REFERENCE_SUPERVISIONS]
        names, higher = metric_order(chosen)
        primary = primary_metric(task, names)
        if primary is None:
            continue
        for model in sorted({r.model for r in chosen}):
            rows: dict[str, list[float]] = {}
            for r in chosen:
                if r.model == model and isinstance(v := r.metric(primary), int | float) and not math.isnan(v):
                    rows.setdefault(r.method_label or r.method, []).append(float(v))
            if rows:
                groups.append((list(rows), list(rows.values()), higher[primary]))

    def ranks(means: list[float], hib: bool) -> list[float]:
        order = np.argsort(-np.asarray(means) if hib else np.asarray(means), kind="mergesort")
        out = np.empty(len(means))
        out[order] = np.arange(1, len(means) + 1)
        return list(out)

    methods = sorted({m for names, _, _ in groups for m in names})
    point: dict[str, list[float]] = {m: [] for m in methods}
    boots = {m: np.zeros(N_BOOTSTRAP) for m in methods}
    counts = {m: 0 for m in methods}
    for names, values, hib in groups:
        for m, rk in zip(names, ranks([float(np.mean(v)) for v in values], hib), strict=True):
            point[m].append(rk)
            counts[m] += 1
        sample_means = np.stack([np.asarray(v)[rng.integers(0, len(v), size=(N_BOOTSTRAP, len(v)))].mean(1)
                                 for v in values])  # (methods, B)
        order = np.argsort(-sample_means if hib else sample_means, axis=0, kind="mergesort")
        rk = np.empty_like(order, dtype=float)
        np.put_along_axis(rk, order, np.arange(1, len(names) + 1, dtype=float)[:, None].repeat(N_BOOTSTRAP, 1), axis=0)
        for i, m in enumerate(names):
            boots[m] += rk[i]
    out = []
    for m in methods:
        b = boots[m] / counts[m]
        out.append({"method": m, "groups": counts[m], "mean_rank": float(np.mean(point[m])),
                    "ci": (float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5)))})
    return sorted(out, key=lambda x: (x["mean_rank"], x["method"]))


def _e(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def _cell_html(m: dict[str, Any]) -> str:
    mean, std, (lo, hi) = m["mean"], m["std"], m["ci"]
    text = fmt(mean) if std is None or (isinstance(std, float) and math.isnan(std)) else f"{fmt(mean)} ± {fmt(std)}"
    ci = "" if math.isnan(lo) else f'<br><span class="ci">[{fmt(lo)}, {fmt(hi)}]</span>'
    return f'<td class="num">{_e(text)}{ci}</td>'


def _table_html(rows: list[dict[str, Any]], names: list[str], higher: dict[str, bool], reference: bool) -> str:
    show_opts = any(r["task_options"] for r in rows)
    head = ([] if reference else ["rank"]) + ["method", "model", "supervision", "seeds"] + (["task options"] if show_opts else [])
    head += [f"{n} {arrow(higher[n])}" for n in names]
    lines = [f'<table class="{"reference" if reference else "ranked"}">',
             "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cls = ' class="tie"' if r.get("tie") else ""
        cells = [] if reference else [f'<td class="rank" title="{"tied with the row above: 95% intervals overlap" if r["tie"] else ""}">'
                                      f'{r["rank"]}{" =" if r["tie"] else ""}</td>']
        cells += [f"<td>{_e(r[k])}</td>" for k in ("method", "model", "supervision", "seeds")]
        if show_opts:
            cells.append(f"<td>{_e(r['task_options'])}</td>")
        cells += [_cell_html(r["metrics"][n]) for n in names]
        lines.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def task_section_html(results: list[Result], task: str, plots: list[str]) -> str:
    """The HTML of one task: header facts, ranked table, reference rows apart, plots."""
    rows, names, higher, primary = html_table_rows(results, task)
    ranked = [r for r in rows if not r["reference"]]
    ref = [r for r in rows if r["reference"]]
    commits = sorted({(r.git_commit[:12] + (" (dirty)" if r.dirty else "")) if r.git_commit else "unknown" for r in results})
    parts = [f'<section id="{_e(sanitize(task))}"><h2>{_e(task)}</h2>',
             f"<p>Models: {_e(', '.join(sorted({r.model for r in results})))}; seeds: "
             f"{_e(', '.join(map(str, sorted({r.seed for r in results}))))}; sorted by {_e(primary or '(no metric)')}; "
             f"commit(s): {_e(', '.join(commits))}.</p>"]
    warn = provenance_warning(results)
    if warn:
        parts.append(f"<p><strong>{_e(warn)}</strong></p>")
    parts.append("<p>Cells: mean ± std over seeds, and below it the 95% bootstrap interval of the mean. "
                 "A rank marked <code>=</code> is tied with the row above (their intervals of the primary metric "
                 "overlap).</p>")
    parts.append(_table_html(ranked, names, higher, reference=False) if ranked else "<p><em>No results.</em></p>")
    if ref:
        parts += ["<h3>Reference rows</h3><p>The floor (<code>null</code>) and ceiling (<code>oracle</code>) of every "
                  "column on the same data. Never ranked.</p>", _table_html(ref, names, higher, reference=True)]
    parts += [f'<img src="{_e(p)}" alt="{_e(p)}">' for p in plots]
    parts.append("</section>")
    return "\n".join(parts)


def provenance_warning(results: list[Result]) -> str | None:
    """A sentence when ``results`` come from a dirty tree or from more than one commit, else None."""
    commits = {r.git_commit for r in results}
    dirty = any(r.dirty for r in results) or None in commits
    bits = []
    if dirty:
        bits.append("results of a dirty (or unknown) source tree")
    if len(commits - {None}) > 1:
        bits.append(f"results of {len(commits - {None})} different commits")
    return ("Built from " + " and ".join(bits) + ": not a clean rebuild of one commit.") if bits else None


def write_plots(results: list[Result], task: str, out_dir: Path) -> list[Path]:
    """PNG plots of ``task`` (matplotlib, Agg): faithfulness curves per method (when results record
    ``details.faithfulness_curve``), the primary metric vs compute spent (forward passes, objective calls),
    and reconstruction / coverage vs L0 for SAE rows that record ``l0``. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    name = sanitize(task)
    names, higher = metric_order(results)
    primary = primary_metric(task, names)
    ranked = [r for r in results if r.supervision not in REFERENCE_SUPERVISIONS]

    def lab(text: str) -> str:  # a name shown as text, never as matplotlib mathtext
        return text.replace("$", r"\$")

    def save(fig: Any, suffix: str) -> None:
        path = out_dir / f"{name}-{suffix}.png"
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        os.replace(tmp, path)
        os.chmod(path, 0o644)
        written.append(path)

    curves: dict[str, list[tuple[list[float], list[float]]]] = {}
    for r in ranked:
        c = (r.details or {}).get("faithfulness_curve")
        if isinstance(c, dict) and c.get("fractions") and c.get("f"):
            curves.setdefault(f"{r.method_label} ({r.model})", []).append((c["fractions"], c["f"]))
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, cs in sorted(curves.items()):
            xs = cs[0][0]
            ys = np.mean([c[1] for c in cs if len(c[1]) == len(xs)], axis=0)
            ax.plot(xs, ys, marker=".", label=lab(label))
        ax.set_xscale("log")
        ax.set(xlabel="fraction of the stream kept", ylabel="faithfulness", title=lab(f"{task}: faithfulness curves"))
        ax.legend(fontsize=6)
        save(fig, "faithfulness")
    if primary is not None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        plotted = False
        for ax, attr, xlabel in ((axes[0], "forward_passes", "forward passes"), (axes[1], "objective_calls", "objective calls")):
            pts: dict[str, list[tuple[float, float]]] = {}
            for r in ranked:
                x, y = getattr(r, attr, None), r.metric(primary)
                if isinstance(x, int | float) and isinstance(y, int | float):
                    pts.setdefault(r.method_label or r.method, []).append((float(x), float(y)))
            for label, ps in sorted(pts.items()):
                ax.scatter([p[0] for p in ps], [p[1] for p in ps], label=lab(label), s=14)
                plotted = True
            ax.set_xscale("symlog")
            ax.set(xlabel=xlabel, ylabel=primary, title=f"{task}: {primary} vs {xlabel}")
        axes[1].legend(fontsize=6)
        if plotted:
            save(fig, "compute")
        else:
            plt.close(fig)
    l0_pts: dict[str, list[tuple[float, float]]] = {}
    for r in ranked:
        l0 = r.metric("l0")
        y_name = next((n for n in ("reconstruction", "coverage", "attribute_coverage") if r.metric(n) is not None), None)
        if isinstance(l0, int | float) and y_name:
            l0_pts.setdefault(f"{r.method_label} ({y_name})", []).append((float(l0), float(r.metric(y_name))))
    if l0_pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, ps in sorted(l0_pts.items()):
            ax.scatter([p[0] for p in ps], [p[1] for p in ps], label=lab(label))
        ax.set(xlabel="L0", ylabel="reconstruction / coverage", title=f"{task}: SAEs")
        ax.legend(fontsize=6)
        save(fig, "l0")
    return written


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n{body}\n"
            f"<p>Generated by <code>{_e(GENERATED_BY)} --html</code>; do not edit by hand.</p></body></html>\n")


def write_html(results_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
               include_limited: bool = False) -> list[Path]:
    """Write ``<out>/index.html`` (every task and the overall table), ``<out>/<task>.html`` and the plots
    ``<out>/plots/<task>-*.png``, from the result files of ``results_dir``. Every name is HTML-escaped.

    Returns:
        The written paths. Empty when no result qualifies.
    """
    results = load_results(results_dir)
    out = Path(out_dir)
    sections, written = [], []
    for task in sorted({r.task for r in results}):
        chosen = select(results, task, include_limited)
        if not chosen:
            continue
        pngs = write_plots(chosen, task, out / "plots")
        written += pngs
        section = task_section_html(chosen, task, [f"plots/{p.name}" for p in pngs])
        sections.append((task, section))
        written.append(atomic_write_text(out / f"{sanitize(task)}.html", _page(f"Leaderboard: {task}", section)))
    if not sections:
        return []
    overall = overall_ranks(results, include_limited)
    rows = "".join(f"<tr><td>{i + 1}</td><td>{_e(o['method'])}</td><td>{o['groups']}</td><td class=\"num\">"
                   f"{o['mean_rank']:.2f} <span class=\"ci\">[{o['ci'][0]:.2f}, {o['ci'][1]:.2f}]</span></td></tr>"
                   for i, o in enumerate(overall))
    overall_html = ('<section id="overall"><h2>Overall</h2><p>Mean rank by each task\'s primary metric over the '
                    "(task, model) groups a method was run in (1 = best; oracle / null not ranked), with its 95% "
                    "bootstrap interval over seeds.</p><table class=\"overall\"><thead><tr><th>#</th><th>method</th>"
                    f"<th>groups</th><th>mean rank</th></tr></thead><tbody>{rows}</tbody></table></section>")
    toc = "<p>" + " · ".join(f'<a href="{_e(sanitize(t))}.html">{_e(t)}</a>' for t, _ in sections) + "</p>"
    body = toc + "\n" + overall_html + "\n" + "\n".join(s for _, s in sections)
    written.append(atomic_write_text(out / "index.html", _page("deeprobe-bench leaderboard", body)))
    return written
