"""An on-disk SQLite cache of judge replies, so a rerun costs nothing.

The key is a SHA-256 of the canonical JSON of everything that decides a reply: the judge model, the
endpoint (its base URL, or a stable identity for the local server whose port changes from run to run),
the messages, the sampling parameters and the prompt version (REFERENCE.md section 6, "Client
practice"). Only replies that parsed are stored, so a malformed reply is asked again next time.

One table ``replies``; WAL journal, so several processes (e.g. Ray workers on a shared filesystem, or
parallel runs) can share one file. The API key is never part of the key nor stored.

The file is created with mode 0600 (its folder 0700 when created here), like every file the project writes
(:data:`deeprobe_bench.results.FILE_MODE`); SQLite gives its ``-wal`` / ``-shm`` files the same mode.
A path that is a folder, or a file that is not a SQLite database, is a one-line :class:`UserError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deeprobe_bench.api import UserError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    reply TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    served_by TEXT,
    created_at TEXT NOT NULL
)
"""


def default_cache_path() -> Path | None:
    """``$DEEPROBE_JUDGE_CACHE``, else ``$DEEPROBE_CACHE/judge.sqlite`` (default ``~/.cache/deeprobe_bench``);
    None when ``DEEPROBE_CACHE=off`` (an in-memory cache for the process)."""
    explicit = os.environ.get("DEEPROBE_JUDGE_CACHE")
    if explicit:
        return None if explicit.lower() in ("off", "0", "none") else Path(explicit)
    root = os.environ.get("DEEPROBE_CACHE", str(Path.home() / ".cache" / "deeprobe_bench"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    return Path(root) / "judge.sqlite"


def cache_key(model: str, endpoint: str, messages: list[dict[str, Any]], params: dict[str, Any], prompt_version: str) -> str:
    """SHA-256 hex of the canonical JSON of what decides a reply."""
    blob = json.dumps(
        {"model": model, "endpoint": endpoint, "messages": messages, "params": params, "prompt_version": prompt_version},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Judge replies by :func:`cache_key`, in SQLite at ``path`` (None: in memory). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self._prepare_file(self.path)
        target = str(self.path) if self.path is not None else ":memory:"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            if self.path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
                # a reply committed is never lost by a crash of the process; only a power cut can drop the last
                # few (SQLite's WAL with synchronous NORMAL), and a lost reply is asked again: no fsync per reply
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise UserError(
                f"judge cache {self.path} is not a usable SQLite database ({e}); move it away or pass another "
                "--judge-cache"
            ) from None

    @staticmethod
    def validate(path: str | os.PathLike[str] | None) -> None:
        """Check, writing nothing, that ``path`` can serve as the cache: an SQLite file (or an empty one), or a
        file that can be created (the nearest existing folder is writable).

        Raises:
            UserError: ``path`` is a folder, an existing file that is not an SQLite database, or cannot be created.
        """
        if path is None:
            return
        path = Path(path)
        if path.is_dir():
            raise UserError(f"judge cache {path} is a folder; pass a file path (--judge-cache FILE)")
        if path.exists():
            try:
                with open(path, "rb") as fh:
                    head = fh.read(16)
            except OSError as e:
                raise UserError(f"judge cache {path} cannot be read ({e.strerror or e}); pass another --judge-cache") from None
            if head and head != b"SQLite format 3\x00":
                raise UserError(f"judge cache {path} is not a usable SQLite database (file is not a database); move it "
                                "away or pass another --judge-cache")  # fmt: skip
            return
        parent = next((a for a in path.absolute().parents if a.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"judge cache {path} cannot be created (its folder is not writable); pass another --judge-cache")

    @staticmethod
    def _prepare_file(path: Path) -> None:
        """Refuse a folder; create the file 0600 (and a missing folder 0700), or bring an own file to 0600."""
        from deeprobe_bench.results import DIR_MODE, FILE_MODE

        if path.is_dir():
            raise UserError(f"judge cache {path} is a folder; pass a file path (--judge-cache FILE)")
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                if os.fstat(fd).st_uid == os.getuid():
                    os.fchmod(fd, FILE_MODE)
            finally:
                os.close(fd)
        except OSError as e:
            raise UserError(f"judge cache {path} cannot be opened ({e.strerror or e}); pass another --judge-cache") from None

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply ``{"reply", "prompt_tokens", "completion_tokens", "served_by"}``, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT reply, prompt_tokens, completion_tokens, served_by FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return {"reply": row[0], "prompt_tokens": row[1], "completion_tokens": row[2], "served_by": row[3]}

    def put(
        self,
        key: str,
        *,
        model: str,
        endpoint: str,
        prompt_version: str,
        reply: str,
        prompt_tokens: int,
        completion_tokens: int,
        served_by: str | None,
    ) -> None:
        """Store a reply (replacing any earlier one under the same key)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, endpoint, prompt_version, reply, int(prompt_tokens), int(completion_tokens), served_by, now),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
