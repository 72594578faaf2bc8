"""Executors: run a list of :class:`cells.Cell` in this process, in a process pool, or on a Ray cluster.

Every executor has one method, ``run(cells, results_dir, force, on_done) -> list[Outcome]``, and the same
guarantees: each cell's result file is written atomically (by whoever computes it locally, by the driver
on Ray), a cell is computed under its lock file (:class:`results.CellLock`) so two sweeps or runs on one
results folder never compute it twice, and a cell that fails (an exception in the method, a dead
worker) costs only that cell: it is reported as failed with a one-line error and the others go on.

- :class:`InProcess`: one cell after another in this process.
- :class:`ProcessPool`: ``workers`` processes (``spawn``), each running :func:`cells.run_cell_dict`.
- :class:`RayExecutor`: each cell a Ray task (``ray.remote`` with the cell's ``resources``: ``cpus``,
  ``memory_gb``, ``gpus``), retried ``max_retries`` times when its worker dies; the driver holds the
  locks and writes the results, so the workers need no shared file system. Needs the ``ray`` extra.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deeprobe_bench import api
from deeprobe_bench.cells import Cell, run_cell, run_cell_dict
from deeprobe_bench.results import CellLock, Result, redact, write_result

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What became of one cell: ``status`` is ``"done"`` (computed, ok), ``"skipped"`` (finished already),
    or ``"failed"`` (``error`` says why, one line; ``result`` is the error Result when one was recorded)."""

    cell: Cell
    status: str
    result: Result | None = None
    error: str | None = None


OnDone = Callable[[Outcome], None]


class Executor(Protocol):
    """Runs cells; see the module docstring for the guarantees."""

    def run(self, cells: list[Cell], results_dir: str, force: bool = False,
            on_done: OnDone | None = None) -> list[Outcome]: ...


def _outcome(cell: Cell, result: Result) -> Outcome:
    if result.ok:
        return Outcome(cell, "done", result)
    return Outcome(cell, "failed", result, " ".join(str(result.error or "error").split()))


def _notify(on_done: OnDone | None, outcome: Outcome) -> Outcome:
    if on_done is not None:
        on_done(outcome)
    return outcome


def _data_order(cell: Cell) -> tuple[Any, ...]:
    """Sort key that runs the cells of one (task, options, model, limit, seed) dataset one after another."""
    return (cell.task, sorted(cell.task_options.items()), cell.model, cell.limit or 0, cell.seed)


class InProcess:
    """Each cell in this process, in order, sharing loaded models and prepared data between cells
    (:class:`deeprobe_bench.runner.SharedState`). A :class:`api.UserError` stops the sweep (bad input)."""

    def run(self, cells: list[Cell], results_dir: str, force: bool = False,
            on_done: OnDone | None = None) -> list[Outcome]:
        from deeprobe_bench.runner import SharedState

        shared = SharedState()
        out: dict[int, Outcome] = {}
        for i in sorted(range(len(cells)), key=lambda i: _data_order(cells[i])):  # cells of one dataset together
            out[i] = _notify(on_done, _outcome(cells[i], run_cell(cells[i], results_dir, force=force, shared=shared)))
        return [out[i] for i in range(len(cells))]


def _init_worker(threads: int) -> None:
    """A pool worker's torch threads: the machine's cores shared out between the workers (numbers do not
    depend on it; two workers with two threads each on two cores ran the grid slower than one)."""
    import torch

    torch.set_num_threads(threads)


def _run_group(cells: list[dict[str, Any]], results_dir: str, force: bool) -> list[dict[str, Any]]:
    """The cells of one dataset, one after another in this worker (one model load and one prepare for all)."""
    return [run_cell_dict(c, results_dir, force, True, True) for c in cells]


class ProcessPool:
    """Cells on ``workers`` processes (started with ``spawn``: no state is inherited), each with its share of
    the cores' torch threads. The cells of one (task, options, model, limit, seed) dataset go to one worker
    together, largest group first, so each dataset is prepared once; a group's cells are reported when the
    group finishes (each result is written as soon as its cell is done)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise api.UserError(f"--workers must be at least 1, got {workers}")
        self.workers = workers

    def run(self, cells: list[Cell], results_dir: str, force: bool = False,
            on_done: OnDone | None = None) -> list[Outcome]:
        ctx = multiprocessing.get_context("spawn")
        groups: dict[str, list[int]] = {}
        for i in range(len(cells)):
            groups.setdefault(repr(_data_order(cells[i])), []).append(i)
        order = sorted(groups.values(), key=len, reverse=True)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        out: dict[int, Outcome] = {}
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                                    initargs=(threads,)) as pool:  # fmt: skip
            futures = {pool.submit(_run_group, [cells[i].to_dict() for i in g], str(results_dir), force): g for g in order}
            for fut in concurrent.futures.as_completed(futures):
                group = futures[fut]
                try:
                    datas = fut.result()
                except Exception as e:  # the worker process died
                    for i in group:
                        out[i] = _notify(on_done, Outcome(cells[i], "failed",
                                                          error=redact(f"worker died: {type(e).__name__}: {e}")))  # fmt: skip
                    continue
                for i, data in zip(group, datas, strict=True):
                    if "user_error" in data:
                        out[i] = _notify(on_done, Outcome(cells[i], "failed", error=redact(data["user_error"])))
                    else:
                        out[i] = _notify(on_done, _outcome(cells[i], Result.from_dict(data)))
        return [out[i] for i in range(len(cells))]


class RayExecutor:
    """Each cell a Ray task; the driver holds the cells' locks and writes their results.

    Args:
        address: the cluster (``"auto"``: the one ``ray start`` runs on this machine; ``HOST:PORT``; None:
            a local one started for this sweep).
        max_retries: how many times a cell whose worker died is run again before it is reported failed.
    """

    def __init__(self, address: str | None = "auto", max_retries: int = 1) -> None:
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise api.UserError('--executor ray needs Ray: pip install -e ".[ray]"') from None
        self.address = address
        self.max_retries = max_retries

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False,
                         runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                                   if k.startswith("DEEPROBE_") and "KEY" not in k}})
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise api.UserError(f"cannot connect to the Ray cluster at {self.address}: {' '.join(str(e).split())}") from None
        return ray

    def _submit(self, i: int, cell: Cell, lock: CellLock, remote: Any, results_dir: str, force: bool,
                pending: dict[Any, tuple[int, CellLock]], out: dict[int, Outcome], on_done: OnDone | None) -> None:
        """Submit one locked cell as a Ray task (or skip it when another run finished it meanwhile)."""
        if not force and cell.is_finished(results_dir):  # finished by another run meanwhile
            lock.release()
            out[i] = _notify(on_done, Outcome(cell, "skipped"))
            return
        res = cell.resources
        opts: dict[str, Any] = {"num_cpus": res.get("cpus", 1), "max_retries": self.max_retries,
                                "retry_exceptions": False}
        if res.get("gpus"):
            opts["num_gpus"] = res["gpus"]
        if res.get("memory_gb"):
            opts["memory"] = int(res["memory_gb"] * 2**30)
        ref = remote.options(**opts).remote(cell.to_dict(), str(results_dir), True, False)
        pending[ref] = (i, lock)

    def run(self, cells: list[Cell], results_dir: str, force: bool = False,
            on_done: OnDone | None = None) -> list[Outcome]:
        ray = self._connect()
        remote = ray.remote(run_cell_dict)
        out: dict[int, Outcome] = {}
        pending: dict[Any, tuple[int, CellLock]] = {}
        try:
            busy = []  # cells another run is computing: submitted last, once their lock is free
            for i, cell in enumerate(cells):
                lock = CellLock(cell.path(results_dir))
                if not lock.acquire(wait=False):
                    busy.append((i, cell, lock))
                    continue
                self._submit(i, cell, lock, remote, results_dir, force, pending, out, on_done)
            for i, cell, lock in busy:
                lock.acquire(wait=True)
                self._submit(i, cell, lock, remote, results_dir, force, pending, out, on_done)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                i, lock = pending.pop(ref)
                cell = cells[i]
                try:
                    data = ray.get(ref)
                except Exception as e:  # a dead worker (after its retries) or a Ray error: this cell only
                    lock.release()
                    msg = " ".join(redact(f"{type(e).__name__}: {e}").split())[:300]
                    out[i] = _notify(on_done, Outcome(cell, "failed", error=msg))
                    continue
                try:
                    if "user_error" in data:
                        out[i] = _notify(on_done, Outcome(cell, "failed", error=redact(data["user_error"])))
                        continue
                    result = Result.from_dict(data)
                    write_result(result, cell.path(results_dir))
                finally:
                    lock.release()
                out[i] = _notify(on_done, _outcome(cell, result))
        finally:
            for _, lock in pending.values():
                lock.release()
        return [out[i] for i in range(len(cells))]


def make_executor(name: str, workers: int = 1, address: str | None = "auto", max_retries: int = 1) -> Executor:
    """``"local"`` (``workers`` 1: in process, more: a process pool) or ``"ray"``.

    Raises:
        api.UserError: an unknown executor, bad ``workers``, Ray not installed.
    """
    if name == "local":
        return InProcess() if workers == 1 else ProcessPool(workers)
    if name == "ray":
        return RayExecutor(address=address, max_retries=max_retries)
    raise api.UserError(f"unknown executor {name!r} (local or ray)")
