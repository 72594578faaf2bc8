"""Run cells: one cell = (task, model, method, seed): prepare, discover, evaluate, record.

The flow (DESIGN.md, "The flow of one cell"), for a grid of methods x seeds on one task and model:

1. Resolve the task and every method through the registry and parse every ``-T`` / ``-M`` option
   before any work starts, so a typo fails in a second, not after an hour (:class:`api.UserError`).
2. Skip each cell whose result file already holds a finished result of the same task / method
   versions, options and ``--limit`` (unless ``force``); the stored Result is returned.
3. Load the subject once per grid, and ``task.prepare(subject, seed, limit)`` once per seed, shared
   by every method of that seed.
4. Build the :class:`api.DiscoveryContext` with only what the method's supervision allows, seed
   ``random`` / numpy / torch, ``method.discover(ctx)``, then ``task.evaluate(data, features)``.
5. Write the Result atomically. A bug inside prepare / discover / evaluate (any exception that is
   not a UserError) is recorded as a Result with ``status="error"`` and the traceback in
   ``details["traceback"]``; the other cells go on. A UserError stops the grid (exit 2).

Checked before any work, each a one-line :class:`api.UserError` (exit 2) with nothing written: names
and options, seeds (``0 <= seed <= 2**32 - 1``, what numpy accepts), a method's objective ``budget``
(at most its class's ``max_budget``, default :data:`MAX_BUDGET`), a method whose feature sets' kind the task
does not score (``Method.kind`` / ``Task.accepts``), a context field a method needs that the task does not
provide (``Method.needs`` / ``Task.provides``, :data:`api.CONTEXT_FIELDS`), the results folder (writable, not a
file), a zoo model made for another task, and, once the model is loaded, a ``hook`` task option the
model does not have.

Every FeatureSet a method returns is validated before the task evaluates it (:func:`check_features`): a bad one
makes that cell an error naming the method (stage ``validate``), and the other cells go on. A UserError raised by ``task.prepare`` is prefixed with the task and the model.

Every result records where its task and method came from (``Result.provenance``: distribution and
version, or plugin file and its SHA-256; see :func:`registry.provenance`). A plugin that replaces a
built-in of the same name (``--allow-override``) runs under the label ``<name>(plugin)``, so its results
never overwrite the built-in's nor share its leaderboard rows. Error messages and tracebacks pass
through :func:`results.redact`, so an API key an endpoint echoed never reaches a file.

While a cell runs with stderr not a terminal (a log file), a line ``still running`` is logged every
:data:`HEARTBEAT_S` seconds, so a long cell is never silent.

``task.evaluate`` returns ``{name: api.Metric}`` in the order tables show them, and may add a
``"_details"`` dict that is copied into ``Result.details``.

With a judge (``judge=``, a ``deeprobe_bench.judge.JudgeClient``): every cell also gets the autointerp
metric ``judge_score`` on the task's ``TaskData.examples["eval"]`` (when the task gives examples) and
records ``details["judge"]`` (which judge, prompt version, calls / cache hits / retries / tokens / cost
spent by that cell) and ``judge_tokens``. A judge that fails for good while scoring keeps the cell's
other metrics: the cell stays ``ok`` with ``judge_score`` recorded as missing (value None, its
``error`` beside it, ``details["judge_error"]``), and a later run with a judge scores it again; a judge
that fails inside a judge-supervised method's ``discover`` makes that cell an error, never the grid.
Supervision ``judge`` gives a method ``ctx.judge`` (an ``autointerp.JudgeScorer`` on
``examples["train"]``) *and* ``ctx.objective`` (counted), for the causal term of a judge-based reward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import random
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

from deeprobe_bench import api, registry
from deeprobe_bench import progress as progress_mod
from deeprobe_bench.results import (
    CellLock,
    Result,
    check_writable_dir,
    config_label,
    git_info,
    library_versions,
    now_iso,
    read_result,
    redact,
    result_path,
    to_jsonable,
    write_result,
)

log = logging.getLogger(__name__)

SubjectLoader = Callable[[str], Any]

#: how many feature labels a result keeps
MAX_LABELS = 50
#: the largest seed (numpy's generators take seeds below 2**32)
MAX_SEED = 2**32 - 1
#: the largest objective ``budget`` a method takes unless its class sets ``max_budget``: each objective call
#: is a pass over the task's train split, so this is hours of work on the zoo models
MAX_BUDGET = 50_000
#: seconds between the ``still running`` log lines of a cell when stderr is not a terminal
HEARTBEAT_S = 30.0


def default_subject_loader(name: str) -> Any:
    """``deeprobe_bench.subject.load_subject(name)``, imported only when a cell runs.

    Falls back to the registry's model specs (``registry.get_model_spec(name).load()``) while the
    subject module does not exist.
    """
    try:
        from deeprobe_bench.subject import load_subject
    except ModuleNotFoundError as e:
        if e.name != "deeprobe_bench.subject":
            raise
        return registry.get_model_spec(name).load()
    return load_subject(name)


class SharedState:
    """What the cells run by one process may share: loaded subjects and each (task, model)'s task object
    with its prepared data, least recently used dropped first.

    A sweep runs many cells of one model in one process (:mod:`deeprobe_bench.executors`); without this each
    cell would load the model and prepare the task's data again (a ``run`` with several methods shares them
    the same way inside :func:`run_grid`). Sharing changes no number: every method starts from
    ``seed_everything(seed)``, and data is prepared once per (task, options, model, seed, limit) after the
    same seeding a fresh process would do. Keys hold names and options, not file contents: use one
    ``SharedState`` per sweep, not across changes to the models on disk.

    Args:
        max_subjects: models kept loaded (a grid entry alternates between its models).
        max_data: prepared (task, model, seed) datasets kept (one per seed of the published grid).
    """

    def __init__(self, max_subjects: int = 2, max_data: int = 3) -> None:
        from collections import OrderedDict

        self.max = {"subjects": max_subjects, "tasks": max_data, "data": max_data}
        self.stores: dict[str, OrderedDict[Any, Any]] = {k: OrderedDict() for k in self.max}

    def get(self, store: str, key: Any, make: Callable[[], Any]) -> Any:
        """``store[key]``, made by ``make()`` when absent (and the least recently used entry dropped)."""
        entries = self.stores[store]
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = make()
        entries[key] = value
        while len(entries) > self.max[store]:
            entries.popitem(last=False)
        return value


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (those that are installed) with ``seed``."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def run_cell(
    task_name: str,
    model_name: str | None,
    method_name: str,
    seed: int,
    task_options: dict[str, str] | None = None,
    method_options: dict[str, str] | None = None,
    results_dir: str = "results",
    force: bool = False,
    limit: int | None = None,
    progress: bool = True,
    subject_loader: SubjectLoader | None = None,
) -> Result:
    """Run (or skip, if finished) one cell and return its Result. See :func:`run_grid`."""
    return run_grid(
        task_name,
        model_name,
        [method_name],
        [seed],
        task_options=task_options,
        method_options=method_options,
        results_dir=results_dir,
        force=force,
        limit=limit,
        progress=progress,
        subject_loader=subject_loader,
    )[0]


def run_grid(
    task_name: str,
    model_name: str | None,
    methods: list[str],
    seeds: list[int],
    task_options: dict[str, str] | None = None,
    method_options: dict[str, str] | None = None,
    results_dir: str = "results",
    force: bool = False,
    limit: int | None = None,
    progress: bool = True,
    subject_loader: SubjectLoader | None = None,
    judge: Any = None,
    write: bool = True,
    shared: SharedState | None = None,
) -> list[Result]:
    """Run every (method, seed) cell of one task on one model.

    Args:
        task_name: registry name of the task.
        model_name: the subject; None means the task's ``default_model``.
        methods: registry names of the methods (duplicates are run once).
        seeds: the seeds (duplicates are run once).
        task_options: ``-T`` options, ``{key: value-string}``.
        method_options: ``-M`` options, applied to every method.
        results_dir: root of the result files.
        force: re-run cells that are already finished.
        limit: cap on examples per split, passed to ``task.prepare``; recorded in the result and
            in its file name.
        progress: show progress bars (they also honour ``--quiet``).
        subject_loader: ``name -> Subject``; default :func:`default_subject_loader`.
        judge: the judge (a ``deeprobe_bench.judge.JudgeClient``) or None. When given, every cell also
            gets the autointerp metric ``judge_score`` (on the task's ``examples["eval"]``, if it has
            them) and records the judge's identity and the tokens / cost it spent; ``judge``-supervised
            methods need it. A stored result without a judge record is re-run when a judge is given.
        write: write each computed Result to its file, holding the cell's lock file while it is computed
            (:class:`results.CellLock`: a second run on the same folder waits for the cell, then reuses its
            result, so a cell is never computed twice). False (the Ray executor's workers): compute and
            return only; the caller writes.
        shared: subjects, task objects and prepared data kept across calls (:class:`SharedState`; the
            sweep's local executors pass one), or None: this call's own.

    Returns:
        The Results in run order (seeds outer, methods inner), finished ones loaded from disk.

    Raises:
        api.UserError: unknown names, bad options, a method needing what the task / subject
            cannot give. Raised before any work where it can be known before.
    """
    methods = list(dict.fromkeys(methods))
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not methods:
        raise api.UserError("no method given (use --method NAME)")
    if not seeds:
        raise api.UserError("no seed given")
    if limit is not None and limit < 1:
        raise api.UserError(f"--limit must be a positive integer, got {limit}")
    bad_seeds = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad_seeds:
        raise api.UserError(f"seed {bad_seeds[0]} is out of range: seeds are integers from 0 to {MAX_SEED} (2**32 - 1)")

    # 1. resolve and validate everything first
    task_cls = registry.get_task(task_name)
    method_classes = {m: registry.get_method(m) for m in methods}
    task_config = api.parse_config(task_cls.Config, task_options, what=f"-T option of task {task_name}")
    method_configs = {
        m: api.parse_config(cls.Config, method_options, what=f"-M option of method {m}")
        for m, cls in method_classes.items()
    }
    for m, cls in method_classes.items():
        if cls.supervision == "judge" and judge is None:
            raise api.UserError(
                f"method {m} needs a judge (supervision 'judge'), and no judge is configured (--judge-base-url)"
            )
    for m, cls in method_classes.items():
        _check_budget(m, cls, method_configs[m])
        _check_kind(task_name, task_cls, m, cls)
        _check_needs(task_name, task_cls, m, cls, method_configs[m])
    model = model_name or task_cls.default_model
    if not model:
        raise api.UserError(f"task {task_name} has no default model; pass --model NAME (see `deeprobe-bench ls models`)")
    _check_model_fits_task(task_name, task_cls, model)
    check_writable_dir(results_dir, "--results-dir")
    provenance = {"task": registry.provenance("tasks", task_name)}

    task_cfg_dict = api.config_to_dict(task_config)
    loader = subject_loader or default_subject_loader
    # a task object holds what its prepare() learnt of the model (board size ...): one per (task, model)
    task_key = (task_name, id(task_cls), json.dumps(task_cfg_dict, sort_keys=True, default=str), model, id(loader))
    shared = shared or SharedState(max_subjects=1, max_data=1)  # this call's own: one seed's data at a time
    task = shared.get("tasks", task_key, lambda: task_cls(task_config))
    task_label = config_label(task_name, task_config) + _override_mark(provenance["task"])
    hooks_checked = False  # the task's hook option against this call's subject (shared ones were loaded elsewhere)

    def get_subject() -> Any:
        nonlocal hooks_checked

        def load() -> Any:
            log.debug("loading model %s", model)
            return loader(model)

        subject = shared.get("subjects", (model, id(loader)), load)
        if not hooks_checked:
            _check_hooks(task_name, task_config, subject, model)
            hooks_checked = True
        return subject

    def get_data(seed: int) -> tuple[api.TaskData | None, str | None, str | None, float]:
        return shared.get("data", (task_key, seed, limit), lambda: prepare(seed))

    def prepare(seed: int) -> tuple[api.TaskData | None, str | None, str | None, float]:
        subject = get_subject()
        seed_everything(seed)
        t0 = time.perf_counter()
        try:
            return (task.prepare(subject, seed, limit), None, None, time.perf_counter() - t0)
        except api.UserError as e:
            raise api.UserError(f"task {task_name} on model {model}: {e}") from e
        except Exception as e:
            msg = redact(f"prepare failed: {type(e).__name__}: {e}")
            log.error("%s: %s (seed %d)", task_name, msg, seed)
            return (None, msg, redact(traceback.format_exc()), 0.0)

    results: list[Result] = []
    for seed in seeds:
        for m in methods:
            cls, cfg = method_classes[m], method_configs[m]
            provenance["method"] = registry.provenance("methods", m)
            label = config_label(m, cfg) + _override_mark(provenance["method"])
            path = result_path(results_dir, task_label, model, label, seed, limit)
            cell = f"{task_label}/{model}/{label}/seed{seed}" + (f" (limit {limit})" if limit is not None else "")
            expected = {
                "task_version": str(task_cls.version),
                "task_config": task_cfg_dict,
                "method_version": str(cls.version),
                "method_config": api.config_to_dict(cfg),
                "limit": limit,
            }
            def stored_result(path: Any = path, expected: dict[str, Any] = expected, cell: str = cell) -> Result | None:
                """The finished result at ``path`` that this cell may reuse, or None (logged why)."""
                expected["weights_sha256"] = _weights_sha256(get_subject())
                stored, why = _reusable(path, expected)
                if stored is not None and judge is not None and "judge" not in (stored.details or {}):
                    stored, why = None, "a judge is configured and the stored result has no judge score"
                elif stored is not None and judge is not None and "judge_error" in (stored.details or {}):
                    stored, why = None, "the stored result's judge_score is missing (the judge failed)"
                if stored is None:
                    log.info("%s: re-running: %s", cell, why)
                return stored

            seen_mtime = _mtime(path)
            if not force and seen_mtime is not None:
                stored = stored_result()
                if stored is not None:
                    log.info("%s: skipped (finished)", cell)
                    results.append(stored)
                    continue
            get_subject()  # an unknown / unavailable model fails here, before "running"
            lock = CellLock(path) if write else None
            if lock is not None:
                if not lock.acquire(wait=False):
                    log.info("%s: another run is computing this cell; waiting for it", cell)
                    lock.acquire(wait=True)
            try:
                # another run may have finished the cell meanwhile (we waited, or it wrote before our lock)
                if lock is not None and not force and _mtime(path) not in (None, seen_mtime):
                    stored = stored_result()
                    if stored is not None:
                        log.info("%s: skipped (finished by another run)", cell)
                        results.append(stored)
                        continue
                log.info("%s: running", cell)
                with _Heartbeat(cell):
                    result = _run_one(
                        task=task,
                        task_name=task_name,
                        task_cfg_dict=task_cfg_dict,
                        model=model,
                        method_name=m,
                        method_cls=cls,
                        method_cfg=cfg,
                        label=label,
                        seed=seed,
                        limit=limit,
                        get_subject=get_subject,
                        get_data=get_data,
                        progress=progress,
                        judge=judge,
                    )
                result.provenance = to_jsonable(provenance)
                if write:
                    write_result(result, path)
                    log.debug("%s: wrote %s", cell, path)
            finally:
                if lock is not None:
                    lock.release()
            if result.ok:
                summary = ", ".join(f"{k}={v['value']:.4g}" for k, v in list(result.metrics.items())[:3]
                                    if isinstance(v.get("value"), int | float))
                log.info("%s: done in %.1f s%s", cell, result.wall_time_s or 0.0, f": {summary}" if summary else "")
            else:
                log.error("%s: error: %s", cell, result.error)
            results.append(result)
    return results


def _mtime(path: Any) -> float | None:
    """``path``'s modification time (ns), or None when it does not exist."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _override_mark(prov: dict[str, Any]) -> str:
    """``"(plugin)"`` for a task or method that replaces a built-in of its name (``--allow-override``), else ''.

    Part of the label, so its results get their own files and leaderboard rows, never the built-in's.
    """
    return "(plugin)" if prov.get("overrides") else ""


def _check_budget(name: str, cls: type[api.Method], cfg: Any) -> None:
    """Refuse an objective ``budget`` above the method's ``max_budget`` (default :data:`MAX_BUDGET`).

    Raises:
        api.UserError: the budget is too large (the message gives the limit).
    """
    budget = cls.objective_budget(cfg) if hasattr(cls, "objective_budget") else None
    limit = getattr(cls, "max_budget", MAX_BUDGET)
    if isinstance(budget, int) and not isinstance(budget, bool) and limit is not None and budget > limit:
        raise api.UserError(
            f"-M budget={budget} of method {name} is above its limit of {limit} objective calls (each call is a pass "
            f"over the task's train split); use a budget of at most {limit}"
        )


def _check_kind(task_name: str, task_cls: type[api.Task], name: str, cls: type[api.Method]) -> None:
    """Refuse a method whose feature sets' kind (``Method.kind``: ``directions`` or ``prompts``) the task does not
    score (``Task.accepts``), before any work.

    Raises:
        api.UserError: the task cannot score that kind (the message names both and what the task accepts).
    """
    kind = getattr(cls, "kind", "directions")
    accepts = tuple(getattr(task_cls, "accepts", ("directions",)))
    if kind not in accepts:
        raise api.UserError(
            f"method {name} returns feature sets of kind {kind!r}, and task {task_name} scores only "
            f"{' and '.join(repr(k) for k in accepts)}; use a method that returns {accepts[0]}"
        )


def _check_needs(task_name: str, task_cls: type[api.Task], name: str, cls: type[api.Method], cfg: Any) -> None:
    """Refuse a method that needs a context field (``Method.needs``, :data:`api.CONTEXT_FIELDS`) the task does not
    provide (``Task.provides``), before any work.

    Raises:
        api.UserError: the first missing field, named with what it holds and what the task provides.
    """
    needs = cls.needs_for(cfg) if hasattr(cls, "needs_for") else tuple(getattr(cls, "needs", ()))
    provides = tuple(getattr(task_cls, "provides", ()))
    for need in needs:
        if need not in provides:
            have = ", ".join(provides) or "none of them"
            raise api.UserError(f"method {name} needs {api.describe_field(need)}, which task {task_name} does not "
                                f"provide (it provides: {have})")  # fmt: skip


def _check_model_fits_task(task_name: str, task_cls: type[api.Task], model: str) -> None:
    """Refuse a zoo model that ships with another built-in task (``--task ioi --model othello-mini``), before
    loading it: its vocabulary cannot spell the task's data. A task class may list other tasks' zoo models
    it can read in a ``compatible_models`` attribute.

    Raises:
        api.UserError: the model's zoo package is another task's (the message names the task's own model).
    """
    if model in (getattr(task_cls, "compatible_models", None) or ()):  # a task may name other tasks' models it reads
        return
    spec = registry.find_model_spec(model)
    package = getattr(spec, "package", None)
    prefix = "deeprobe_bench.tasks."
    task_module = getattr(task_cls, "__module__", "") or ""
    if not isinstance(package, str) or not package.startswith(prefix) or not task_module.startswith(prefix):
        return
    model_task = package[len(prefix):].split(".")[0]
    if task_module[len(prefix):].split(".")[0] == model_task:
        return
    own = f" (its own zoo model is {task_cls.default_model})" if task_cls.default_model else ""
    raise api.UserError(
        f"model {model} is the {model_task} task's zoo model and cannot run task {task_name}{own}; "
        f"pass --model {task_cls.default_model or 'NAME'} or a pretrained model (see `deeprobe-bench ls models`)"
    )


def _check_hooks(task_name: str, task_config: Any, subject: Any, model: str) -> None:
    """Refuse a ``hook`` / ``hook_name`` task option the loaded model does not have (before any work).

    Raises:
        api.UserError: the hook is not one of the model's hook points (the message gives the closest).
    """
    import difflib

    hooks = getattr(getattr(subject, "model", None), "hook_dict", None)
    if not isinstance(hooks, dict) or not hooks:
        return
    for key in ("hook", "hook_name"):
        value = getattr(task_config, key, None)
        if isinstance(value, str) and value and value not in hooks:
            close = difflib.get_close_matches(value, list(hooks), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise api.UserError(
                f"-T {key}={value!r} of task {task_name}: model {model} has no such hook point{hint} "
                f"(hook points look like blocks.0.hook_resid_post)"
            )


class _Heartbeat:
    """Logs ``<cell>: still running (N s)`` every :data:`HEARTBEAT_S` seconds while a cell runs, when stderr is
    not a terminal (on a terminal the progress bars show that work goes on)."""

    def __init__(self, cell: str, interval_s: float | None = None) -> None:
        self.cell = cell
        self.interval_s = HEARTBEAT_S if interval_s is None else interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.wait(self.interval_s):
            log.info("%s: still running (%.0f s)", self.cell, time.perf_counter() - t0)

    def __enter__(self) -> _Heartbeat:
        try:
            tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not tty and self.interval_s > 0:
            self._thread = threading.Thread(target=self._beat, name="deeprobe-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)


def _reusable(path: Any, expected: dict[str, Any]) -> tuple[Result | None, str]:
    """The stored Result at ``path`` if it is a finished run of the same cell, else (None, why not)."""
    try:
        stored = read_result(path)
    except (OSError, ValueError, TypeError) as e:
        return None, f"stored result {path} is unreadable ({e})"
    if not stored.ok:
        return None, f"stored result has status {stored.status!r}"
    have = {**stored.identity(), "weights_sha256": (stored.model_info or {}).get("weights_sha256")}
    diff = [k for k in expected if to_jsonable(expected[k]) != to_jsonable(have[k])]
    if diff:
        return None, "stored result differs in " + ", ".join(diff)
    return stored, ""


def _weights_sha256(subject: Any) -> str | None:
    """The SHA-256 of the subject's weights (a retrained model never reuses another's results), or None
    for a subject without a torch model."""
    from deeprobe_bench.activations import fingerprint

    model = getattr(subject, "model", None)
    return fingerprint(model) if hasattr(model, "state_dict") else None


def _model_info(subject: Any) -> dict[str, Any]:
    """JSON facts about the subject: its ``info`` / ``card`` dict (called if a method), else {}, with the
    SHA-256 of its weights (``weights_sha256``, checked before a stored result is reused)."""
    for attr in ("info", "card", "model_card"):
        value = getattr(subject, attr, None)
        if callable(value):
            try:
                value = value()
            except Exception:  # a broken card must not fail the cell
                continue
        if isinstance(value, dict):
            info = to_jsonable(value)
            break
    else:
        info = {}
    sha = _weights_sha256(subject)
    return info if sha is None else {**info, "weights_sha256": sha}


def _forward_passes(subject: Any) -> int | None:
    value = getattr(subject, "forward_passes", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _run_one(
    *,
    task: api.Task,
    task_name: str,
    task_cfg_dict: dict[str, Any],
    model: str,
    method_name: str,
    method_cls: type[api.Method],
    method_cfg: Any,
    label: str,
    seed: int,
    limit: int | None,
    get_subject: Callable[[], Any],
    get_data: Callable[[int], tuple[api.TaskData | None, str | None, str | None, float]],
    progress: bool,
    judge: Any,
) -> Result:
    """Run one cell; a non-user exception becomes a Result with status ``error``."""
    commit, dirty = git_info()
    result = Result(
        task=task_name,
        task_version=str(task.version),
        task_config=task_cfg_dict,
        model=model,
        method=method_name,
        method_version=str(method_cls.version),
        method_config=api.config_to_dict(method_cfg),
        method_label=label,
        supervision=method_cls.supervision,
        seed=seed,
        samples={"n_train": None, "n_test": None, "limit": limit},
        versions=library_versions(),
        git_commit=commit,
        dirty=dirty,
        started_at=now_iso(),
    )
    subject = get_subject()
    result.model_info = _model_info(subject)
    data, prep_error, prep_tb, prep_s = get_data(seed)
    if data is None:
        return _prepare_failed(result, prep_error, {"traceback": prep_tb, "stage": "prepare"})
    result.samples = {"n_train": data.n_train, "n_test": data.n_test, "limit": limit}
    unset = [f for f in getattr(task, "provides", ()) if getattr(data, f, None) is None]
    if unset:  # the task declares a field its prepare() did not set: a bug in the task, this cell fails
        error = f"task {task_name} declares it provides {', '.join(unset)} (Task.provides), and prepare() set none"
        return _prepare_failed(result, error, {"stage": "prepare"})

    sup = method_cls.supervision
    budget = api.Budget(method_cls.objective_budget(method_cfg))
    prog = progress_mod.progress if progress else functools.partial(progress_mod.progress, disable=True)
    sae_for = getattr(subject, "sae_for", None)
    sae_variants = getattr(subject, "sae_variants", None)
    ctx = api.DiscoveryContext(
        subject=subject,
        hook_name=data.hook_name,
        train_acts=data.train_acts,
        sae=sae_for(data.hook_name) if callable(sae_for) else None,
        seed=seed,
        supervision=sup,
        budget=budget,
        progress=prog,
        extra=dict(data.context_extra),
        saes=sae_variants(data.hook_name) if callable(sae_variants) else {},
    ).take_from(data)  # the task's typed, supervision-free fields (api.CONTEXT_FIELDS)
    if sup == "labels":
        if data.train_labels is None:
            raise api.UserError(f"method {method_name} needs concept labels, and task {task_name} provides none")
        ctx.labels, ctx.concepts = data.train_labels, data.concepts
    elif sup == "objective":
        ctx.objective = _counted_objective(task, data, budget)
        ctx.behaviour = data.behaviour  # the metric the objective is built on (api.Behaviour), if any
    elif sup == "judge":
        # A judge method gets the judge bound to the train examples and, for the causal term of its
        # reward, the task objective (counted against the budget, as for supervision "objective").
        if judge is None:
            raise api.UserError(f"method {method_name} needs a judge (supervision 'judge'), and no judge is configured")
        from deeprobe_bench.metrics.autointerp import JudgeScorer

        if data.examples.get("train") is None:
            raise api.UserError(f"method {method_name} needs judge examples, and task {task_name} provides none "
                                "(TaskData.examples['train'])")  # fmt: skip
        ctx.judge = JudgeScorer(judge, data.examples["train"], seed=seed)
        ctx.objective = _counted_objective(task, data, budget)
    elif sup == "oracle":  # the reference ceiling: the task's own ground truth (deeprobe_bench.references)
        ctx.oracle = functools.partial(task.oracle_features, data, seed)

    method = method_cls(method_cfg)
    passes0 = _forward_passes(subject)
    judge_usage0 = judge.usage() if judge is not None else None
    stage = "discover"
    timing: dict[str, float] = {"prepare_s": round(prep_s, 4)}
    t0 = time.perf_counter()
    try:
        seed_everything(seed)
        features = method.discover(ctx)
        if not isinstance(features, api.FeatureSet):
            raise TypeError(f"{method_cls.__name__}.discover returned {type(features).__name__}, not a FeatureSet")
        timing["discover_s"] = round(time.perf_counter() - t0, 4)
        stage = "validate"
        check_features(features, task_name, task, data, subject)
        stage = "evaluate"
        t1 = time.perf_counter()
        raw = task.evaluate(data, features)
        timing["evaluate_s"] = round(time.perf_counter() - t1, 4)
        metrics, extra_details = _split_metrics(raw, type(task).__name__)
        if judge is not None and data.examples.get("eval") is not None:
            stage = "judge"
            t2 = time.perf_counter()
            try:
                metrics["judge_score"], extra_details["autointerp"] = _judge_score(judge, data, features, seed)
                # how many features the mean is over (unscorable ones are left out, not averaged in at 0.5)
                metrics["judge_n_scored"] = api.Metric(float(extra_details["autointerp"]["judged"])).to_dict()
            except api.UserError:
                raise
            except Exception as e:  # the judge failed for good: keep the other metrics, judge_score missing
                msg = redact(f"judge failed: {type(e).__name__}: {e}")
                log.warning("%s", msg)
                metrics["judge_score"] = {"value": None, "higher_is_better": True, "stderr": None, "error": msg}
                extra_details["judge_error"] = {"error": msg, "traceback": redact(traceback.format_exc())}
            timing["judge_s"] = round(time.perf_counter() - t2, 4)
    except api.UserError:
        raise
    except Exception as e:
        if isinstance(e, api.InvalidFeatureSet):  # one line naming the method; the other cells go on
            result.status, result.error = "error", redact(f"method {method_name} returned an invalid feature set: {e}")
        else:
            result.status, result.error = "error", redact(f"{stage} failed: {type(e).__name__}: {e}")
        result.details = {"traceback": redact(traceback.format_exc()), "stage": stage,
                          "task_info": to_jsonable(data.info)}  # fmt: skip
        if judge is not None:
            result.details["judge"] = _judge_record(judge, judge_usage0)
            result.judge_tokens = result.details["judge"]["usage"]["tokens"]
        result.objective_calls = budget.objective_calls
        result.wall_time_s = round(time.perf_counter() - t0, 4)
        result.finished_at = now_iso()
        return result

    result.metrics = metrics
    result.details = {
        "features": {
            "n": len(features),
            "hook_name": features.hook_name,
            "labels": list(features.labels[:MAX_LABELS]) if features.labels is not None else None,
            "meta": to_jsonable(features.meta),
        },
        "task_info": to_jsonable(data.info),
        "timing": timing,
        **to_jsonable(extra_details),
    }
    result.objective_calls = budget.objective_calls
    passes1 = _forward_passes(subject)
    result.forward_passes = passes1 - passes0 if passes0 is not None and passes1 is not None else None
    if judge is not None:
        result.details["judge"] = _judge_record(judge, judge_usage0)
        result.judge_tokens = result.details["judge"]["usage"]["tokens"]
    result.wall_time_s = round(time.perf_counter() - t0, 4)
    result.finished_at = now_iso()
    return result


def _prepare_failed(result: Result, error: str | None, details: dict[str, Any]) -> Result:
    """``result`` as the error of a cell whose data could not be prepared (nothing was discovered)."""
    result.status, result.error, result.details = "error", error, details
    result.finished_at = now_iso()
    result.wall_time_s = 0.0
    return result


def check_features(features: api.FeatureSet, task_name: str, task: api.Task, data: api.TaskData, subject: Any) -> None:
    """Validate a FeatureSet a method returned against the task and the subject, before the task evaluates it.

    Checks, in order: the task scores its kind (``Task.accepts``); the set is at the task's hook unless the task
    scores other hooks (``Task.other_hooks``); the hook exists on the subject's model;
    the directions are finite and ``d_model`` or the hook's width wide; the encoder maps a probe batch of
    :data:`PROBE_ROWS` rows of activations at the set's hook to a finite ``"rows n"`` tensor
    (:meth:`api.FeatureSet.validate`). The probe rows are the task's train activations when the set is at the
    task's hook, else the activations at the set's hook of the first :data:`PROBE_SEQUENCES` train sequences the
    task gives (``TaskData.train_tokens``, else the behaviour's clean prompts, else one BOS token). Those probe
    passes are not charged to the method (``Subject.forward_passes`` is restored) and draw no random numbers.
    A subject without a TransformerLens model (a stand-in) is checked against the task's activations only.

    Raises:
        api.InvalidFeatureSet: the first check that fails (the runner records it as the cell's error).
    """
    accepts = tuple(getattr(task, "accepts", ("directions",)))
    if features.kind not in accepts:
        raise api.InvalidFeatureSet(f"task {task_name} does not score feature sets of kind {features.kind!r} "
                                    f"(it scores {', '.join(accepts)})")  # fmt: skip
    if features.hook_name != data.hook_name and not getattr(task, "other_hooks", False):
        raise api.InvalidFeatureSet(f"task {task_name} scores features at its hook {data.hook_name}, not at "
                                    f"{features.hook_name}")  # fmt: skip
    from deeprobe_bench import hooks

    model = getattr(subject, "model", None)
    hook_names = hooks.hook_names_of(model)
    train_acts = data.train_acts
    d_model = getattr(getattr(model, "cfg", None), "d_model", None) or getattr(subject, "d_model", None)
    widths: set[int] = {int(d_model)} if isinstance(d_model, int) else set()
    probe = None
    if features.hook_name == data.hook_name and train_acts is not None:
        probe = train_acts.reshape(-1, train_acts.shape[-1])[:PROBE_ROWS]
        widths.add(int(train_acts.shape[-1]))
    elif hook_names is not None and features.hook_name in hook_names:
        probe = _probe_acts(model, subject, data, features.hook_name)
        widths.update({int(probe.shape[-1]), int(probe[0].numel())})
    elif hook_names is None and train_acts is not None:
        widths.add(int(train_acts.shape[-1]))
    with _rng_preserved(features.encoder):  # the probe must not move an encoder's own random stream (a plugin's noise)
        features.validate(hook_names, widths, probe)


@contextlib.contextmanager
def _rng_preserved(*roots: Any) -> Any:
    """Restore, on exit, every random state the block may draw from: the global ones of ``random``, numpy and
    torch, and the generators (``torch.Generator``, ``numpy.random.Generator`` / ``RandomState``,
    ``random.Random``) held by ``roots`` (functions' closures and defaults, ``functools.partial`` arguments,
    bound methods' objects, a few levels deep), so that probing an encoder changes no number the task computes
    with it afterwards."""
    import numpy as np
    import torch

    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Generator | np.random.Generator | np.random.RandomState | random.Random):
            found.append(obj)
            return
        children: list[Any] = []
        if isinstance(obj, functools.partial):
            children += [obj.func, *obj.args, *obj.keywords.values()]
        elif inspect.ismethod(obj):
            children += [obj.__func__, *vars(obj.__self__).values()] if hasattr(obj.__self__, "__dict__") else [obj.__func__]
        elif inspect.isfunction(obj):
            children += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
            children += list(obj.__defaults__ or ())
        elif hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module | torch.Tensor | type | types.ModuleType):
            children += list(vars(obj).values())  # callable objects, and the FeatureSet a subset's encoder slices
        for child in children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    saved = []
    for g in found:
        if isinstance(g, torch.Generator):
            saved.append((g, g.get_state(), g.set_state))
        elif isinstance(g, np.random.Generator):
            saved.append((g, g.bit_generator.state, lambda s, g=g: setattr(g.bit_generator, "state", s)))
        elif isinstance(g, np.random.RandomState):
            saved.append((g, g.get_state(), g.set_state))
        else:
            saved.append((g, g.getstate(), g.setstate))
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            for _, state, restore in saved:
                restore(state)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


#: activation rows an encoder is probed on (:func:`check_features`)
PROBE_ROWS = 32
#: sequences run to get probe rows at a hook other than the task's (:func:`check_features`)
PROBE_SEQUENCES = 2


def _probe_acts(model: Any, subject: Any, data: api.TaskData, hook_name: str) -> Any:
    """``Float[Tensor, "rows ..."]``: activations at ``hook_name`` of the first sequences the task gives (one row per
    token), for :func:`check_features`; the pass is not counted in ``subject.forward_passes``."""
    import torch

    from deeprobe_bench import hooks

    tokens = data.train_tokens
    if tokens is None and data.behaviour is not None:
        tokens = data.behaviour.clean
    if tokens is None:
        bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
        tokens = torch.full((1, 1), int(bos) if isinstance(bos, int) else 0, dtype=torch.long)
    passes = getattr(subject, "forward_passes", None)
    try:
        act = hooks.capture(model, tokens[:PROBE_SEQUENCES], [hook_name])[hook_name]
    finally:
        if isinstance(passes, int):
            subject.forward_passes = passes
    return act.flatten(0, 1)[:PROBE_ROWS].float()


def _counted_objective(task: api.Task, data: api.TaskData, budget: api.Budget) -> Callable[[api.FeatureSet], float]:
    """``task.objective`` on ``data``, each call charged to ``budget``."""

    def objective(features: api.FeatureSet) -> float:
        budget.charge()
        return float(task.objective(data, features))

    return objective


def _judge_score(judge: Any, data: api.TaskData, features: api.FeatureSet, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The autointerp ``judge_score`` metric of ``features`` on the task's eval examples, and its details."""
    from deeprobe_bench.metrics.autointerp import AutointerpConfig, score_features

    cfg = AutointerpConfig()
    res = score_features(features, data.examples["eval"], judge, seed=seed, config=cfg)
    details = {**res.details(), "examples": data.examples["eval"].name, "config": api.config_to_dict(cfg)}
    return to_jsonable(api.Metric(res.value, stderr=res.stderr).to_dict()), details


def _judge_record(judge: Any, usage0: Any) -> dict[str, Any]:
    """Which judge served the cell and what the cell spent on it (calls, cache hits, retries, tokens, cost)."""
    return to_jsonable({**judge.describe(), "usage": judge.usage().minus(usage0).to_dict()})


def _split_metrics(raw: Any, task_cls_name: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``task.evaluate``'s dict -> (metrics as dicts in the task's order, the ``_details`` dict)."""
    if not isinstance(raw, dict):
        raise TypeError(f"{task_cls_name}.evaluate returned {type(raw).__name__}, not a dict of api.Metric")
    metrics: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "_details":
            if not isinstance(value, dict):
                raise TypeError(f"{task_cls_name}.evaluate: '_details' must be a dict, got {type(value).__name__}")
            details.update(value)
        elif isinstance(value, api.Metric):
            metrics[str(key)] = to_jsonable(value.to_dict())
        else:
            raise TypeError(f"{task_cls_name}.evaluate: metric {key!r} is a {type(value).__name__}, not an api.Metric")
    return metrics, details
