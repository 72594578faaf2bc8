"""Cells as data: a grid expands to :class:`Cell` values, each run by :func:`run_cell` on any executor.

A cell is one (task, model, method, seed) with the options of its task and method and its ``--limit``;
it is plain JSON-able data (:meth:`Cell.to_dict`), so it can be sent to a process pool or a Ray worker,
and :func:`run_cell` has no hidden state: it loads the plugins the cell names, opens the judge it names,
runs the cell through :func:`runner.run_grid` (same checks, same result file, the cell's lock file held
while it is computed) and returns the :class:`results.Result`.

A grid (:class:`Grid`) is a list of entries, each ``tasks x models x methods`` with one set of options,
and its seeds; it is read from a TOML or YAML file (:func:`load_grid`)::

    seeds = [0, 1, 2]
    judge = "local"                        # optional: --judge-base-url of every cell

    [[run]]
    task = "othello"
    models = ["othello-mini", "othello-mini-random"]
    methods = ["oracle", "null", "probe"]

    [[run]]
    task = "othello"
    model = "othello-mini"
    methods = ["sae"]
    method_options = { arch = "standard" }
    resources = { cpus = 2, memory_gb = 4, gpus = 0 }   # what a Ray executor asks for per cell

:func:`plan` expands a grid to its cells in order and leaves out those whose result file already holds
a finished result of the same versions, options and limit (the runner checks once more, with the model's
weights, before it computes anything).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeprobe_bench import api, registry
from deeprobe_bench.results import Result, config_label, read_result, result_path, to_jsonable

#: keys of one ``[[run]]`` entry of a grid file
ENTRY_KEYS = {"task", "tasks", "model", "models", "method", "methods", "task_options", "method_options", "seeds",
              "limit", "resources"}
#: top-level keys of a grid file
GRID_KEYS = {"run", "seeds", "limit", "judge", "judge_model", "resources"}
#: keys of a ``resources`` table
RESOURCE_KEYS = {"cpus", "memory_gb", "gpus"}


@dataclass
class Cell:
    """One cell of a grid, as data.

    Attributes:
        task: registry name of the task.
        model: the subject's name; None is the task's ``default_model``.
        method: registry name of the method.
        seed: the seed, 0 .. 2**32 - 1.
        task_options: ``-T`` options ``{key: value-string}``.
        method_options: ``-M`` options ``{key: value-string}``.
        limit: examples per split at most (``--limit``), or None.
        plugins: plugin files / modules to load before the cell runs (``--plugin``).
        allow_override: ``--allow-override`` for those plugins.
        judge: ``{"base_url", "model"}`` of the judge, or None for no judge.
        resources: what one run of the cell needs: ``cpus``, ``memory_gb``, ``gpus`` (Ray's request).
    """

    task: str
    model: str | None
    method: str
    seed: int
    task_options: dict[str, str] = field(default_factory=dict)
    method_options: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    plugins: list[str] = field(default_factory=list)
    allow_override: bool = False
    judge: dict[str, Any] | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The cell as JSON-able data."""
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """The inverse of :meth:`to_dict`."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def name(self) -> str:
        """``task/model/method[options]/seedN`` for logs and summaries."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.method_options.items()))
        limit = f" (limit {self.limit})" if self.limit is not None else ""
        return f"{self.task}/{self.model or '-'}/{self.method}{f'[{opts}]' if opts else ''}/seed{self.seed}{limit}"

    def path(self, results_dir: str | os.PathLike[str]) -> Path:
        """Where this cell's result file is (the plugins must be loaded).

        Raises:
            api.UserError: an unknown name or a bad option.
        """
        task_cls = registry.get_task(self.task)
        method_cls = registry.get_method(self.method)
        task_cfg = api.parse_config(task_cls.Config, self.task_options, what=f"-T option of task {self.task}")
        method_cfg = api.parse_config(method_cls.Config, self.method_options, what=f"-M option of method {self.method}")
        from deeprobe_bench.runner import _override_mark

        task_label = config_label(self.task, task_cfg) + _override_mark(registry.provenance("tasks", self.task))
        label = config_label(self.method, method_cfg) + _override_mark(registry.provenance("methods", self.method))
        model = self.model or task_cls.default_model
        return result_path(results_dir, task_label, model, label, self.seed, self.limit)

    def is_finished(self, results_dir: str | os.PathLike[str]) -> bool:
        """Whether the cell's file holds a finished result of this cell's versions, options and limit."""
        path = self.path(results_dir)
        try:
            stored = read_result(path)
        except (OSError, ValueError, TypeError):
            return False
        if not stored.ok or (self.judge is not None and "judge" not in (stored.details or {})):
            return False
        task_cls = registry.get_task(self.task)
        method_cls = registry.get_method(self.method)
        want = {
            "task_version": str(task_cls.version),
            "task_config": api.config_to_dict(api.parse_config(task_cls.Config, self.task_options)),
            "method_version": str(method_cls.version),
            "method_config": api.config_to_dict(api.parse_config(method_cls.Config, self.method_options)),
            "limit": self.limit,
        }
        return to_jsonable(want) == to_jsonable(stored.identity())


@dataclass
class Grid:
    """A grid: entries (each a dict with the keys of :data:`ENTRY_KEYS`), seeds, and what every cell shares."""

    entries: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = None
    judge: dict[str, Any] | None = None
    resources: dict[str, float] = field(default_factory=dict)


def _names(entry: dict[str, Any], one: str, many: str, where: str, required: bool = True) -> list[Any]:
    if one in entry and many in entry:
        raise api.UserError(f"{where}: give {one!r} or {many!r}, not both")
    value = entry.get(many, entry.get(one))
    if value is None:
        if required:
            raise api.UserError(f"{where}: {many!r} is missing")
        return [None]
    values = value if isinstance(value, list) else [value]
    flat = [n.strip() for v in values for n in (v.split(",") if isinstance(v, str) else [v])]
    if not flat or not all(isinstance(v, str) and v for v in flat):
        raise api.UserError(f"{where}: {many!r} must be a name or a list of names, got {value!r}")
    return list(dict.fromkeys(flat))


def _options(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise api.UserError(f"{where}: must be a table of KEY = VALUE, got {value!r}")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        out[str(k)] = str(v)
    return out


def _resources(value: Any, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - RESOURCE_KEYS:
        raise api.UserError(f"{where}: resources take {sorted(RESOURCE_KEYS)}, got {value!r}")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise api.UserError(f"{where}: resources.{k} must be a number >= 0, got {v!r}")
        out[k] = float(v)
    return out


def _seeds(value: Any, where: str) -> list[int]:
    from deeprobe_bench.runner import MAX_SEED

    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in values):
        raise api.UserError(f"{where}: seeds must be integers from 0 to {MAX_SEED}, got {value!r}")
    return list(dict.fromkeys(values))


def grid_from_dict(data: dict[str, Any], where: str = "grid") -> Grid:
    """A :class:`Grid` from the parsed TOML / YAML of a grid file.

    Raises:
        api.UserError: an unknown key, a missing task or method, bad seeds / options / resources.
    """
    if not isinstance(data, dict):
        raise api.UserError(f"{where}: expected a table at the top level")
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise api.UserError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(GRID_KEYS))})")
    entries = data.get("run")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise api.UserError(f"{where}: needs at least one [[run]] entry (task, methods, ...)")
    for i, e in enumerate(entries):
        bad = set(e) - ENTRY_KEYS
        if bad:
            raise api.UserError(f"{where}: run #{i + 1}: unknown key {sorted(bad)[0]!r} (known: {', '.join(sorted(ENTRY_KEYS))})")
    judge = None
    if data.get("judge") is not None:
        if not isinstance(data["judge"], str) or not data["judge"]:
            raise api.UserError(f"{where}: judge must be a URL or 'local', got {data['judge']!r}")
        judge = {"base_url": data["judge"], "model": data.get("judge_model")}
    limit = data.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise api.UserError(f"{where}: limit must be a positive integer, got {limit!r}")
    return Grid(entries=entries, seeds=_seeds(data.get("seeds", [0]), where), limit=limit, judge=judge,
                resources=_resources(data.get("resources"), where))


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a grid file: ``.toml`` (Python's ``tomllib``; ``tomli`` on 3.10) or ``.yaml`` / ``.yml`` (PyYAML).

    Raises:
        api.UserError: the file is missing, does not parse, or is not a grid (see :func:`grid_from_dict`).
    """
    p = Path(path)
    if not p.is_file():
        raise api.UserError(f"grid file {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError:
                raise api.UserError(f"grid file {p}: reading YAML needs PyYAML (pip install pyyaml)") from None
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        else:
            raise api.UserError(f"grid file {p}: expected a .toml, .yaml or .yml file")
    except api.UserError:
        raise
    except Exception as e:
        raise api.UserError(f"grid file {p} does not parse: {type(e).__name__}: {' '.join(str(e).split())}") from None
    return grid_from_dict(data, where=f"grid file {p}")


def expand(grid: Grid, plugins: Iterable[str] = (), allow_override: bool = False) -> list[Cell]:
    """Every cell of ``grid``, in order (entries, then seeds, then models, then methods); duplicates once.

    Every name and option is checked (each a one-line :class:`api.UserError`) before any cell is returned.
    """
    cells: list[Cell] = []
    seen: set[str] = set()
    for i, entry in enumerate(grid.entries):
        where = f"run #{i + 1}"
        tasks = _names(entry, "task", "tasks", where)
        models = _names(entry, "model", "models", where, required=False)
        methods = _names(entry, "method", "methods", where)
        seeds = _seeds(entry["seeds"], where) if "seeds" in entry else grid.seeds
        limit = entry.get("limit", grid.limit)
        task_options = _options(entry.get("task_options"), f"{where}: task_options")
        method_options = _options(entry.get("method_options"), f"{where}: method_options")
        resources = {**grid.resources, **_resources(entry.get("resources"), where)}
        for task in tasks:
            task_cls = registry.get_task(task)
            api.parse_config(task_cls.Config, task_options, what=f"-T option of task {task}")
            for method in methods:
                m_cls = registry.get_method(method)
                api.parse_config(m_cls.Config, method_options, what=f"-M option of method {method}")
                if m_cls.supervision == "judge" and grid.judge is None:
                    raise api.UserError(f"{where}: method {method} needs a judge; set judge = \"local\" or a URL")
            for seed in seeds:
                for model in models:
                    for method in methods:
                        cell = Cell(task=task, model=model or task_cls.default_model, method=method, seed=seed,
                                    task_options=dict(task_options), method_options=dict(method_options),
                                    limit=limit, plugins=list(plugins), allow_override=allow_override,
                                    judge=grid.judge, resources=dict(resources))
                        key = json.dumps(cell.to_dict(), sort_keys=True)
                        if key not in seen:
                            seen.add(key)
                            cells.append(cell)
    return cells


def plan(grid: Grid | list[Cell], results_dir: str | os.PathLike[str], force: bool = False,
         plugins: Iterable[str] = (), allow_override: bool = False) -> tuple[list[Cell], list[Cell]]:
    """The cells of ``grid`` still to run, and those already finished (skipped), each in grid order.

    Args:
        grid: a :class:`Grid` or its cells.
        results_dir: the results root.
        force: run every cell, finished or not.

    Raises:
        api.UserError: see :func:`expand`.
    """
    cells = grid if isinstance(grid, list) else expand(grid, plugins, allow_override)
    if force:
        return list(cells), []
    todo, done = [], []
    for c in cells:
        (done if c.is_finished(results_dir) else todo).append(c)
    return todo, done


def _load_plugins(cell: Cell) -> None:
    """Load the cell's plugins unless its task and method are known already (a fresh worker process knows
    only the built-ins; the process that loaded them must not load them twice)."""
    if not cell.plugins:
        return
    try:
        registry.get_task(cell.task)
        registry.get_method(cell.method)
        return
    except api.UserError:
        pass
    registry.load_plugins(cell.plugins, allow_override=cell.allow_override)


def run_cell(cell: Cell | dict[str, Any], results_dir: str | os.PathLike[str], force: bool = False,
             write: bool = True, progress: bool = False, shared: Any = None) -> Result:
    """Run one cell (or reuse its finished result) and return its Result; no state outside its arguments.

    Args:
        cell: the cell (or its :meth:`Cell.to_dict`).
        results_dir: the results root.
        force: compute it even when finished.
        write: write the result (under the cell's lock file); False computes and returns only (Ray workers:
            the driver writes).
        progress: show the method's progress bars.
        shared: a :class:`deeprobe_bench.runner.SharedState` kept across the cells one process runs (the
            loaded model and the prepared data; no number changes), or None.

    Raises:
        api.UserError: bad names / options, or a judge that cannot be reached.
    """
    from deeprobe_bench.runner import run_grid

    if isinstance(cell, dict):
        cell = Cell.from_dict(cell)
    _load_plugins(cell)
    judge_cm: Any
    if cell.judge is not None:
        from deeprobe_bench.judge import open_judge

        judge_cm = open_judge(cell.judge.get("base_url"), cell.judge.get("model"), needed=False)
    else:
        import contextlib

        judge_cm = contextlib.nullcontext(None)
    with judge_cm as judge:
        return run_grid(cell.task, cell.model, [cell.method], [cell.seed], task_options=cell.task_options,
                        method_options=cell.method_options, results_dir=str(results_dir), force=force,
                        limit=cell.limit, progress=progress, judge=judge, write=write, shared=shared)[0]


@functools.lru_cache(maxsize=1)
def _worker_shared() -> Any:
    """This pool worker's :class:`deeprobe_bench.runner.SharedState`, made on its first shared cell."""
    from deeprobe_bench.runner import SharedState

    return SharedState()


def run_cell_dict(cell: dict[str, Any], results_dir: str, force: bool = False, write: bool = True,
                  share: bool = False) -> dict[str, Any]:
    """:func:`run_cell` on plain data, returning ``Result.to_dict()`` (what crosses a process boundary).

    ``share``: keep the loaded model and prepared data for this process's next cells (a local pool's
    workers, which live for one sweep; not Ray's, whose workers outlive it). A :class:`api.UserError` comes
    back as ``{"user_error": message}``.
    """
    try:
        return run_cell(cell, results_dir, force=force, write=write, shared=_worker_shared() if share else None).to_dict()
    except api.UserError as e:
        return {"user_error": str(e)}


# --------------------------------------------------------------------------- verify


def cell_of(result: Result) -> Cell:
    """The cell that produced ``result``, from its recorded task / method configs, seed, limit and judge."""
    judge = None
    jd = (result.details or {}).get("judge")
    if isinstance(jd, dict) and jd.get("local_server"):
        judge = {"base_url": "local", "model": None}
    method = result.method_label.removesuffix("(plugin)").split("[")[0] if result.method_label else result.method
    return Cell(task=result.task, model=result.model, method=method or result.method, seed=int(result.seed),
                task_options=dict(result.task_config or {}), method_options=dict(result.method_config or {}),
                limit=(result.samples or {}).get("limit"), judge=judge)


@dataclass
class Check:
    """One metric of one verified cell: published and rerun values and whether they agree."""

    cell: str
    metric: str
    published: float | None
    rerun: float | None
    ok: bool


def compare(published: Result, rerun: Result, rtol: float = 0.0, atol: float = 0.0) -> list[Check]:
    """Per metric of ``published``: does ``rerun`` give the same value (``|a - b| <= atol + rtol |a|``)?

    With ``rtol = atol = 0`` the values must be bit-identical (a deterministic run); a metric missing
    from the rerun, or a rerun that failed, is a mismatch.
    """
    name = f"{published.task}/{published.model}/{published.method_label}/seed{published.seed}"
    out = []
    for metric, rec in (published.metrics or {}).items():
        a = rec.get("value") if isinstance(rec, dict) else None
        b_rec = (rerun.metrics or {}).get(metric) if rerun.ok else None
        b = b_rec.get("value") if isinstance(b_rec, dict) else None
        if a is None or b is None:
            ok = a is None and b is None and rerun.ok
        else:
            ok = a == b or abs(float(a) - float(b)) <= atol + rtol * abs(float(a))
        out.append(Check(name, metric, a, b, ok))
    if not rerun.ok:
        out.append(Check(name, "status", None, None, False))
    return out


def verify(results: list[Result], rtol: float = 0.0, atol: float = 0.0, scratch: str | os.PathLike[str] | None = None,
           on_cell: Any = None) -> list[Check]:
    """Rerun each published result's cell (nothing written) and compare every metric (see :func:`compare`).

    Args:
        results: the published results to check.
        rtol, atol: tolerances (0, 0: bit-identical).
        scratch: a writable folder the runner may check (nothing is written there).
        on_cell: called with each (published, rerun) pair.
    """
    import tempfile

    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="deeprobe-verify-") as tmp:
        for pub in results:
            rerun = run_cell(cell_of(pub), scratch or tmp, force=True, write=False)
            if on_cell is not None:
                on_cell(pub, rerun)
            checks.extend(compare(pub, rerun, rtol=rtol, atol=atol))
    return checks
