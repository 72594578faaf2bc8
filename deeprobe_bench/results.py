"""The result record of one cell (task, model, method, seed): JSON on disk, written atomically.

One file per cell at a stable path (:func:`result_path`)::

    <results_dir>/<task>/<model>/<method_label>/seed<N>.json

where ``<task>`` carries the task's non-default options (``ioi[n_prompts=100]``) and a run with
``--limit L`` writes ``seed<N>-limit<L>.json`` instead, so a quick look never overwrites, nor
passes for, a full run. Files are written to a temporary file in the same folder, fsynced and
renamed (:func:`write_result`): an interrupted run leaves the old file or none, never half a
file. Tables are built from these files and nothing else (:mod:`deeprobe_bench.leaderboard`).

Reading is tolerant (:meth:`Result.from_dict`): unknown fields are ignored and missing ones take
their defaults, so old files still load; a file that does not parse is reported and skipped,
never deleted (:func:`load_results`).

Secrets never reach a file: :func:`register_secret` records a value (the judge's API key, the local
judge server's token) and :func:`redact` replaces it, and anything after ``Bearer ``, by ``***``;
:func:`atomic_write_text` redacts everything it writes, so results and tables cannot carry a key that
an endpoint echoed into an error message.

File modes: every file the project writes is created ``0600`` (:data:`FILE_MODE`: private to the
user, as ``tempfile.mkstemp`` makes them) and every folder it creates for its caches ``0700``
(:data:`DIR_MODE`): results, tables, activation and judge caches alike.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

#: mode of every file the project writes (results, tables, caches): read and write by the user only
FILE_MODE = 0o600
#: mode of the cache folders the project creates
DIR_MODE = 0o700

# --------------------------------------------------------------------------- secrets

_SECRETS: set[str] = set()
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/=]+", re.IGNORECASE)  # RFC 6750 token characters
#: shortest value worth redacting (a one-letter "key" would blank out every message)
_MIN_SECRET_LEN = 6


def register_secret(value: str | None) -> None:
    """Remember ``value`` (an API key, a server token) so that :func:`redact` removes it everywhere.

    Values shorter than 6 characters are ignored (redacting them would mangle ordinary text).
    """
    if value and len(value.strip()) >= _MIN_SECRET_LEN:
        _SECRETS.add(value.strip())


def redact(text: Any) -> Any:
    """``text`` with every registered secret, and anything after ``Bearer ``, replaced by ``***``.

    Non-strings are returned unchanged. Used on every error message, log line and file the project
    writes (REFERENCE.md section 6: keys never in files or logs).
    """
    if not isinstance(text, str) or not text:
        return text
    for secret in sorted(_SECRETS, key=len, reverse=True):  # longest first: a key containing another
        if secret in text:
            text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)

#: distributions whose versions every result records
VERSIONED_PACKAGES: tuple[str, ...] = ("torch", "transformer_lens", "sae_lens", "deeprobe_bench")


@dataclass
class Result:
    """One cell's record (DESIGN.md, "Result"). Every field has a default so old files load.

    Attributes:
        schema_version: version of this record's layout.
        status: ``ok`` or ``error``.
        error: the error message when ``status == "error"``.
        task, task_version, task_config: the task's registry name, version and options.
        model, model_info: the subject's name and facts about it (model card).
        method, method_version, method_config: the method's registry name, version and options.
        method_label: the method name plus its non-default options, e.g. ``sae[arch=topk]``;
            a leaderboard row.
        supervision: what the method was given (``none`` | ``labels`` | ``objective`` | ``judge``).
        seed: the cell's seed.
        metrics: ``{name: {"value", "higher_is_better", "stderr"}}`` in the task's order.
        details: free JSON (features found, task info, traceback of an error ...).
        samples: ``{"n_train", "n_test", "limit"}``; ``limit`` is None for a full run.
        wall_time_s: seconds spent on the cell (prepare excluded when shared by several cells).
        objective_calls: calls of the task objective the method made.
        forward_passes: model forward passes counted by the subject, None if not counted.
        judge_tokens: tokens spent on the judge, None without a judge.
        versions: python and library versions.
        git_commit, dirty: commit of the deeprobe_bench checkout and whether it had local changes
            (None when not a git checkout).
        started_at, finished_at: ISO-8601 UTC timestamps.
        provenance: where the task and the method came from, ``{"task": {...}, "method": {...}}``:
            ``{"kind": "distribution", "distribution", "version", "entry_point"}`` for an installed
            package, ``{"kind": "plugin file", "path", "sha256"}`` for ``--plugin FILE``, ``{"kind":
            "plugin module", "module", "distribution", "version"}`` for ``--plugin MODULE``, plus
            ``"overrides"`` (the built-in it replaces, with ``--allow-override``).
    """

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    error: str | None = None
    task: str = ""
    task_version: str = ""
    task_config: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    method_version: str = ""
    method_config: dict[str, Any] = field(default_factory=dict)
    method_label: str = ""
    supervision: str = ""
    seed: int = 0
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=lambda: {"n_train": None, "n_test": None, "limit": None})
    wall_time_s: float | None = None
    objective_calls: int = 0
    forward_passes: int | None = None
    judge_tokens: int | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    dirty: bool | None = None
    started_at: str | None = None
    finished_at: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def identity(self) -> dict[str, Any]:
        """What a stored result must match to stand for a cell: task and method versions and configs, limit."""
        return {
            "task_version": str(self.task_version),
            "task_config": self.task_config,
            "method_version": str(self.method_version),
            "method_config": self.method_config,
            "limit": (self.samples or {}).get("limit"),
        }

    @property
    def limited(self) -> bool:
        """Whether this was a ``--limit`` run (never to be mixed with full runs)."""
        return (self.samples or {}).get("limit") is not None

    def metric(self, name: str) -> float | None:
        """The value of metric ``name``, or None if absent."""
        m = self.metrics.get(name)
        return None if m is None else m.get("value")

    def problems(self) -> list[str]:
        """What is wrong with this record's structure (empty when it is usable), each naming the field."""
        out = []
        if not self.task or not self.method:
            out.append("no task or method")
        if self.status not in ("ok", "error"):
            out.append(f"status {self.status!r} is not 'ok' or 'error'")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            out.append(f"seed {self.seed!r} is not an integer")
        if not isinstance(self.samples, dict):
            out.append("samples is not an object")
        if not isinstance(self.metrics, dict):
            out.append("metrics is not an object")
        else:
            for name, m in self.metrics.items():
                if not isinstance(m, dict) or not isinstance(m.get("value"), int | float | None):
                    out.append(f"metric {name!r} is not {{value, higher_is_better, stderr}}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Build a Result from a dict, ignoring unknown fields (newer files) and defaulting missing ones.

        Raises:
            ValueError: ``data`` is not a dict.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a result must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.debug("ignoring unknown result fields: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in data.items() if k in known})


def to_jsonable(obj: Any) -> Any:
    """Like :func:`api.json_ready`, and also arrays / tensors (``tolist()``); anything else is ``repr``'d.

    Non-finite floats become None, so writing a result never fails on what a method put in ``meta``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch arrays and scalars
        try:
            return to_jsonable(obj.tolist())
        except Exception:  # pragma: no cover - exotic array types
            pass
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


# --------------------------------------------------------------------------- labels and paths


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "(" + ",".join(_format_value(v) for v in value) + ")"
    return str(value)


def config_label(name: str, config: Any) -> str:
    """``name`` plus the options of ``config`` that differ from their defaults: ``sae[arch=topk,k=32]``.

    Args:
        name: the registry name.
        config: a config dataclass instance (or None).

    Returns:
        ``name`` alone when every option has its default value.
    """
    if config is None or not dataclasses.is_dataclass(config):
        return name
    try:
        default = type(config)()
    except Exception:  # a config whose fields lack defaults: show everything
        default = None
    parts = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if default is not None and getattr(default, f.name) == value:
            continue
        parts.append(f"{f.name}={_format_value(value)}")
    return f"{name}[{','.join(parts)}]" if parts else name


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+()\-]+")


def sanitize(component: str, max_len: int = 96) -> str:
    """A file-name-safe, stable version of ``component`` (``sae[arch=topk]`` -> ``sae_arch=topk``)."""
    out = _UNSAFE.sub("_", component).lstrip(".").strip("_") or "_"  # no hidden or ".." folders
    if len(out) > max_len:
        digest = hashlib.sha1(component.encode()).hexdigest()[:10]
        out = f"{out[: max_len - 11]}-{digest}"
    return out


def result_path(
    results_dir: str | os.PathLike[str],
    task: str,
    model: str,
    method_label: str,
    seed: int,
    limit: int | None = None,
) -> Path:
    """Where the result of one cell lives: ``<dir>/<task>/<model>/<method_label>/seed<N>.json``.

    Args:
        results_dir: the results root.
        task: the task name, or its label with non-default options (``ioi[n=10]``).
        model: the model name.
        method_label: see :func:`config_label`.
        seed: the seed.
        limit: the ``--limit`` of the run; a limited run gets ``seed<N>-limit<L>.json``.

    Returns:
        The path (not created).
    """
    fname = f"seed{int(seed)}" + (f"-limit{int(limit)}" if limit is not None else "") + ".json"
    return Path(results_dir) / sanitize(task) / sanitize(model) / sanitize(method_label) / fname


# --------------------------------------------------------------------------- I/O


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    Readers see the old content or the new one, never a part; no temp file is left behind, even
    on KeyboardInterrupt. Registered secrets are redacted (:func:`redact`); the file has mode
    :data:`FILE_MODE`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact(text))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX only)
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Make sure files can be written under ``path`` (a folder, existing or to be created), creating nothing.

    Finds the nearest folder of ``path`` that exists (``path`` itself or an ancestor) and writes then
    removes a probe file there, so a run fails before any work rather than after its first cell.

    Raises:
        UserError: ``path`` or an ancestor is a file, or the folder cannot be written (the message
            names ``what``, e.g. ``--results-dir``, and the path).
    """
    from deeprobe_bench.api import UserError

    p = Path(path)
    existing = next((a for a in (p, *p.absolute().parents) if a.exists()), None)
    if existing is None:  # pragma: no cover - "/" always exists
        raise UserError(f"{what} {p}: no part of the path exists")
    if not existing.is_dir():
        where = "" if existing == p else f" ({existing} is a file)"
        raise UserError(f"{what} {p} is not a folder{where}; pass a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".deeprobe-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} {p} cannot be written ({e.strerror or e}); pass a folder you can write to") from None
    return p


def write_result(result: Result, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_result(path: str | os.PathLike[str]) -> Result:
    """Read one result file.

    Raises:
        OSError, ValueError: the file cannot be read or is not a valid result.
    """
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return Result.from_dict(data)


#: the JSON Schema of a result record, checked in beside this module (draft 2020-12)
RESULT_SCHEMA_PATH = Path(__file__).with_name("result.schema.json")


@functools.lru_cache(maxsize=1)
def _schema_validator() -> Any:
    import jsonschema

    schema = json.loads(RESULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def schema_errors(data: Any) -> list[str]:
    """Where ``data`` (a parsed result file) breaks :data:`RESULT_SCHEMA_PATH`'s schema, each ``path: message``."""
    errors = sorted(_schema_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def load_results(results_dir: str | os.PathLike[str]) -> list[Result]:
    """Every result JSON under ``results_dir`` (recursively), in path order.

    A file that cannot be read or parsed, that breaks the result JSON Schema (``result.schema.json``,
    :func:`schema_errors`), or whose fields are not a result's (see :meth:`Result.problems`), is logged as a warning naming it, and skipped; it is never deleted. A missing folder gives an empty list.
    """
    root = Path(results_dir)
    out: list[Result] = []
    for path in sorted(root.rglob("*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            bad = schema_errors(data)
            result = Result.from_dict(data)
        except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            log.warning("skipping unreadable result %s: %s", path, e)
            continue
        problems = result.problems() + [f"schema: {e}" for e in bad[:3]]
        if problems:
            log.warning("skipping %s: not a valid deeprobe-bench result (%s)", path, "; ".join(problems))
            continue
        if result.schema_version > SCHEMA_VERSION:
            log.warning("%s has schema version %s, newer than this deeprobe-bench reads (%s); reading what it knows",
                        path, result.schema_version, SCHEMA_VERSION)
        out.append(result)
    return out


def is_finished(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a parsable result with status ``ok``."""
    try:
        return read_result(path).ok
    except (OSError, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- provenance


def now_iso() -> str:
    """The current time, ISO-8601 UTC, seconds precision."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Python and library versions, from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        versions[name] = _dist_version(name)
    if versions["deeprobe_bench"] is None:  # running from a source tree that is not installed
        from deeprobe_bench import __version__

        versions["deeprobe_bench"] = __version__
    return versions


@functools.lru_cache(maxsize=1)
def git_info() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the deeprobe_bench source tree, or ``(None, None)``.

    Only when the package folder sits at the top of a git work tree (an editable checkout), so an
    installed copy inside some unrelated repository never reports that repository's commit.
    """
    pkg_dir = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(pkg_dir), *args], capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != pkg_dir.parent:
        return None, None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


# --------------------------------------------------------------------------- per-cell locks

#: seconds between the refreshes of a held lock file (its mtime), so other machines can tell it is alive
LOCK_REFRESH_S = 30.0
#: a lock file not refreshed for this many seconds is stale (its run was killed) and is taken over
LOCK_STALE_S = 300.0


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of the result file ``path``: ``<path>.lock`` (never read as a result)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _lock_is_stale(lock: Path, stale_s: float) -> tuple[bool, str]:
    """(stale?, its text): stale when its process is gone (same host) or it was not refreshed for ``stale_s``."""
    try:
        text = lock.read_text(encoding="utf-8")
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False, ""
    try:
        owner = json.loads(text)
    except ValueError:
        owner = {}
    if owner.get("host") == platform.node() and isinstance(owner.get("pid"), int):
        return not _pid_alive(owner["pid"]), text
    return age > stale_s, text


class CellLock:
    """An exclusive lock on one cell's result file, held while the cell is computed.

    The lock is the file ``<result>.lock``, created with ``O_CREAT | O_EXCL`` (atomic on a local or NFSv3+
    file system) and holding ``{"host", "pid", "since"}``; a thread refreshes its mtime every
    :data:`LOCK_REFRESH_S` seconds. A lock whose process is gone (same host) or that was not refreshed
    for :data:`LOCK_STALE_S` seconds (another host) is stale, the mark of a killed run, and is taken over.

    Use: ``with CellLock(path) as lock: ...``; :meth:`acquire` with ``wait=True`` blocks until the cell
    is free (another run computing it: the caller then re-reads the result it wrote).
    """

    def __init__(self, path: str | os.PathLike[str], stale_s: float | None = None, poll_s: float = 0.2) -> None:
        self.path = lock_path(path)
        self.stale_s = LOCK_STALE_S if stale_s is None else stale_s
        self.poll_s = poll_s
        self.held = False
        self.waited = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created: list[Path] = []

    def _try_create(self) -> bool:
        missing = []
        d = self.path.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = self._created or missing  # removed on release when left empty (nothing written)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"host": platform.node(), "pid": os.getpid(), "since": now_iso()}, fh)
        return True

    def _take_over(self, seen: str) -> None:
        """Move a stale lock aside (only the one we judged stale), so a fresh one can be created."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = aside.read_text(encoding="utf-8")
        except OSError:
            moved = seen
        if moved != seen:  # someone took it over between our look and the rename: give theirs back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            log.warning("taking over the stale lock %s (%s)", self.path, seen.strip())
        aside.unlink(missing_ok=True)

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait`` block until it is free (or stale), else return False at once."""
        while True:
            if self._try_create():
                self.held = True
                self._thread = threading.Thread(target=self._refresh, name="deeprobe-lock", daemon=True)
                self._thread.start()
                return True
            stale, seen = _lock_is_stale(self.path, self.stale_s)
            if stale:
                self._take_over(seen)
                continue
            if not wait:
                return False
            self.waited = True
            time.sleep(self.poll_s)

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Remove the lock file (if held)."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self.path.unlink(missing_ok=True)
        self.held = False
        for d in self._created:  # deepest first: the folders this lock made, when the cell wrote nothing
            try:
                d.rmdir()
            except OSError:
                break

    def __enter__(self) -> CellLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
