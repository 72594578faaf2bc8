"""Progress bars and logging for the whole package.

Library code never prints: it logs to the ``deeprobe_bench`` logger and wraps long loops in
:func:`progress`. The CLI calls :func:`setup_logging` once; ``--quiet`` turns off the bars and
everything below WARNING, ``--verbose`` shows DEBUG messages.

tqdm is imported only when a bar is made, so importing this module stays cheap (``ls`` must
not import torch or anything heavy).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

LOGGER_NAME = "deeprobe_bench"

_state: dict[str, bool] = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """Turn all progress bars off (``True``) or back to tqdm's default (``False``)."""
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    """Whether progress bars are turned off globally."""
    return _state["quiet"]


def progress(
    iterable: Iterable[Any] | None = None,
    desc: str | None = None,
    total: int | None = None,
    disable: bool | None = None,
    **kwargs: Any,
) -> Any:
    """A tqdm progress bar that honours the global quiet flag.

    Args:
        iterable: what to iterate over; None for a manual bar (``bar.update(n)``).
        desc: the bar's label.
        total: the number of items, when ``len(iterable)`` does not say it.
        disable: True hides the bar, None lets tqdm decide (hidden when stderr is not a
            terminal). Ignored (bar hidden) under ``--quiet``.
        **kwargs: passed on to ``tqdm.tqdm``.

    Returns:
        A ``tqdm.tqdm`` instance, iterable like ``iterable``.
    """
    from tqdm import tqdm

    if is_quiet():
        disable = True
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, total=total, disable=disable, file=sys.stderr, **kwargs)


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (pytest swaps it), through tqdm when bars are live."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            tqdm_mod = sys.modules.get("tqdm")
            if tqdm_mod is not None:
                tqdm_mod.tqdm.write(msg, file=sys.stderr)
            else:
                sys.stderr.write(msg + "\n")
                sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool = False, quiet: bool = False) -> logging.Logger:
    """Attach one stderr handler to the ``deeprobe_bench`` logger and set its level.

    Calling it again (tests call ``cli.main`` many times) replaces the handler, never adds a
    second one.

    Args:
        verbose: show DEBUG messages.
        quiet: show only warnings and errors, and no progress bars.

    Returns:
        The package logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logger.setLevel(level)
    set_quiet(quiet)
    return logger
