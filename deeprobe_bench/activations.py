"""Activations computed once per (model, data, hook) and reused from a disk cache.

The cache key is a SHA-256 of the model's weights (its fingerprint), the token ids and the hook name,
so any change of model or data misses, and workers on a shared filesystem reuse each other's files.
Files are written to a temporary name and renamed, so a killed run never leaves a half-written entry.

The cache directory is ``$DEEPROBE_CACHE/activations`` (default ``~/.cache/deeprobe_bench``); set
``DEEPROBE_CACHE=off`` to disable it.

Size: the cache holds at most ``$DEEPROBE_CACHE_MAX_SIZE`` (default ``2G``; ``K`` / ``M`` / ``G`` / ``T``
suffixes, powers of 1024; ``0`` or ``off`` = no limit). After each new entry the least recently used
entries (by file mtime; a hit refreshes it) are removed until the cache fits (:func:`prune`).
``deeprobe-bench cache ls`` lists the entries, ``deeprobe-bench cache prune --max-size SIZE`` prunes.

Precision and memory: entries are read memory-mapped (``torch.load(mmap=True)``, copy-on-write, so a
caller's in-place edit never reaches the file). ``DEEPROBE_CACHE_DTYPE=float16`` (or ``bfloat16``) stores
new entries in half precision (half the disk and page cache; entries named ``<key>.float16.pt``, apart
from the float32 ones) and returns them converted to float32; the default ``float32`` stores them as
computed, so results are unchanged. Half precision rounds activations to about 3 significant digits
(relative error <= 2^-11), which changes results slightly: use it for large models, not for published
numbers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deeprobe_bench import hooks
from deeprobe_bench.api import UserError

logger = logging.getLogger(__name__)

STATS = {"hits": 0, "misses": 0}


def cache_dir() -> Path | None:
    """The activation cache directory, or None when caching is off."""
    root = os.environ.get("DEEPROBE_CACHE", str(Path.home() / ".cache" / "deeprobe_bench"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    return Path(root) / "activations"


DEFAULT_MAX_SIZE = "2G"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"500M"`` -> bytes (powers of 1024: K, M, G, T, optional trailing ``B``/``iB``; a bare number is bytes).

    Raises:
        UserError: not a size.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text), flags=re.IGNORECASE)
    if m is None:
        raise UserError(f"size {text!r}: expected a number of bytes with an optional K, M, G or T suffix, e.g. 500M")
    value, unit = float(m.group(1)), m.group(2).upper()
    return int(value * _UNITS[unit])


def max_cache_bytes() -> int | None:
    """The cache's size limit in bytes from ``$DEEPROBE_CACHE_MAX_SIZE`` (default 2 GiB); None = no limit.

    Raises:
        UserError: the variable is not a size.
    """
    text = os.environ.get("DEEPROBE_CACHE_MAX_SIZE", DEFAULT_MAX_SIZE).strip()
    if text.lower() in ("off", "none", "0", ""):
        return None
    return parse_size(text)


def cache_entries() -> list[tuple[Path, int, float]]:
    """``(path, size in bytes, mtime)`` of every activation cache entry, least recently used first."""
    directory = cache_dir()
    if directory is None or not directory.is_dir():
        return []
    out = []
    for path in directory.glob("*.pt"):
        try:
            st = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        out.append((path, st.st_size, st.st_mtime))
    return sorted(out, key=lambda e: (e[2], e[0].name))


def prune(max_bytes: int) -> tuple[int, int]:
    """Remove the least recently used entries until the cache holds at most ``max_bytes``.

    Returns:
        ``(entries removed, bytes freed)``.
    """
    entries = cache_entries()
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for path, size, _ in entries:
        if total <= max_bytes:
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        total -= size
        removed += 1
        freed += size
    if removed:
        logger.info("activation cache: removed %d entries (%.1f MB) to stay under %.1f MB", removed, freed / 1e6,
                    max_bytes / 1e6)  # fmt: skip
    return removed, freed


def _touch(path: Path) -> None:
    """Mark ``path`` as just used (the cache prunes the least recently used entries first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _after_write() -> None:
    """Keep the cache within :func:`max_cache_bytes` after a new entry."""
    limit = max_cache_bytes()
    if limit is not None:
        prune(limit)


def fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, bytes); memoised on the model."""
    fp = getattr(model, "_deeprobe_fingerprint", None)
    if fp is None:
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        fp = h.hexdigest()
        model._deeprobe_fingerprint = fp
    return fp


def key(model: torch.nn.Module, tokens: Tensor, hook_name: str) -> str:
    h = hashlib.sha256()
    h.update(fingerprint(model).encode())
    h.update(hook_name.encode())
    h.update(str(tuple(tokens.shape)).encode())
    h.update(tokens.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


@torch.no_grad()
def compute(
    model, tokens: Int[Tensor, "batch pos"], hook_name: str, batch_size: int = 256, progress=None
) -> Float[Tensor, "batch pos d"]:
    """Run ``model`` on ``tokens`` and return the activations at ``hook_name`` (:func:`deeprobe_bench.hooks.capture`:
    each pass stops after the hook's block).

    Raises:
        UserError: the hook is in a block beyond the model's, or the activations contain NaN or inf.
    """
    hooks.stop_layer([hook_name], model.cfg.n_layers)  # a block beyond the model's fails before any pass
    out = []
    batches = range(0, tokens.shape[0], batch_size)
    if progress is not None:
        batches = progress(batches, desc=f"activations {hook_name}", total=len(batches))
    for i in batches:
        out.append(hooks.capture(model, tokens[i : i + batch_size], [hook_name])[hook_name].float())
    acts = torch.cat(out) if out else torch.zeros(0)
    if not torch.isfinite(acts).all():
        raise UserError(f"non-finite (NaN or inf) activations at {hook_name}: the model or its inputs are broken")
    return acts


CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cache_dtype() -> torch.dtype:
    """The storage dtype of new cache entries, from ``$DEEPROBE_CACHE_DTYPE`` (default float32).

    Raises:
        UserError: the variable names no supported dtype.
    """
    name = os.environ.get("DEEPROBE_CACHE_DTYPE", "float32").strip().lower() or "float32"
    if name not in CACHE_DTYPES:
        raise UserError(f"DEEPROBE_CACHE_DTYPE must be one of {', '.join(CACHE_DTYPES)}, got {name!r}")
    return CACHE_DTYPES[name]


def get(
    model, tokens: Int[Tensor, "batch pos"], hook_name: str, batch_size: int = 256, progress=None
) -> Float[Tensor, "batch pos d"]:
    """Activations at ``hook_name`` for ``tokens`` (float32), from the disk cache when present.

    The entry is stored in :func:`cache_dtype` and read memory-mapped (module docstring).

    Raises:
        UserError: the activations contain NaN or inf (from the model, or a corrupted cache entry), or
            ``$DEEPROBE_CACHE_DTYPE`` is not a supported dtype.
    """
    directory = cache_dir()
    dtype = cache_dtype()
    suffix = "" if dtype == torch.float32 else "." + str(dtype).removeprefix("torch.")
    path = directory / f"{key(model, tokens, hook_name)}{suffix}.pt" if directory is not None else None
    if path is not None and path.exists():
        try:
            acts = torch.load(path, weights_only=True, mmap=True)
            if acts.shape[:2] == tokens.shape and acts.dtype == dtype and torch.isfinite(acts).all():
                _touch(path)
                STATS["hits"] += 1
                logger.debug("activation cache hit %s", path.name)
                return acts.float()
            logger.warning("activation cache entry %s is invalid; recomputing", path)
        except Exception as e:  # a truncated or foreign file: recompute, never crash
            logger.warning("activation cache entry %s unreadable (%s); recomputing", path, type(e).__name__)
    STATS["misses"] += 1
    acts = compute(model, tokens, hook_name, batch_size, progress)
    stored = acts.to(dtype)
    if dtype != torch.float32:
        if not torch.isfinite(stored).all():
            raise UserError(
                f"activations at {hook_name} exceed {dtype}'s range; set DEEPROBE_CACHE_DTYPE=bfloat16 or float32"
            )
        acts = stored.float()  # a miss returns what a later hit will: the stored values
    if path is not None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(stored, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _after_write()
    return acts

