"""The LLM judge: an OpenAI-compatible client with cache and retries, its prompts, and a local server.

- :mod:`~deeprobe_bench.judge.client`: :class:`JudgeClient` / :class:`JudgeConfig` (key from an
  environment variable, concurrency limit, backoff with jitter, SQLite cache, token and cost counts).
- :mod:`~deeprobe_bench.judge.prompts`: the explanation and detection prompts of autointerp.
- :mod:`~deeprobe_bench.judge.server`: ``deeprobe-bench judge serve``, the offline judge that answers
  from the tasks' ground truth and can inject faults.

:func:`open_judge` is what the CLI uses: a real endpoint when a base URL is given, else (when a judge is
needed) the local server started in-process on an ephemeral loopback port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from deeprobe_bench.judge.client import (
    DEFAULT_KEY_ENV,
    JudgeClient,
    JudgeConfig,
    JudgeError,
    Reply,
    Usage,
    check_base_url,
)
from deeprobe_bench.judge.prompts import PROMPT_VERSION, ReplyFormatError
from deeprobe_bench.judge.server import LOCAL_MODEL, LOCAL_VERSION, LocalJudgeServer, is_loopback

__all__ = [
    "DEFAULT_KEY_ENV",
    "LOCAL_MODEL",
    "PROMPT_VERSION",
    "JudgeClient",
    "JudgeConfig",
    "JudgeError",
    "LocalJudgeServer",
    "Reply",
    "ReplyFormatError",
    "Usage",
    "local_config",
    "open_judge",
]

log = logging.getLogger(__name__)

#: the cache identity of the local server's replies (its port changes from run to run)
LOCAL_ENDPOINT_ID = f"{LOCAL_MODEL}/{LOCAL_VERSION}"


def local_config(base_url: str, **kwargs: Any) -> JudgeConfig:
    """A :class:`JudgeConfig` for the local judge server at ``base_url`` (fast timeouts, stable cache identity)."""
    kwargs.setdefault("timeout_s", 10.0)
    kwargs.setdefault("backoff_base_s", 0.05)
    kwargs.setdefault("backoff_max_s", 1.0)
    return JudgeConfig(base_url=base_url, model=LOCAL_MODEL, endpoint_id=LOCAL_ENDPOINT_ID, local=True, **kwargs)


def probe_local_server(base_url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``base_url`` (on a loopback host) is a deeprobe-bench local judge server."""
    parts = urllib.parse.urlsplit(base_url)
    if not parts.hostname or not is_loopback(parts.hostname):
        return False
    url = base_url.rstrip("/").removesuffix("/v1") + "/deeprobe/info"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # loopback only
            return json.loads(resp.read()).get("server") == LOCAL_MODEL
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def open_judge(
    base_url: str | None = None,
    model: str | None = None,
    needed: bool = False,
    **kwargs: Any,
) -> Iterator[JudgeClient | None]:
    """The judge of a run, closed (and the in-process server stopped) on exit.

    Args:
        base_url: an OpenAI-compatible endpoint; ``"local"`` or None (when ``needed``) starts the local
            judge server in-process on an ephemeral loopback port. A URL on loopback that answers as the
            local server (``deeprobe-bench judge serve``) is used as one (it receives ground truth).
        model: the judge model; required for a real endpoint.
        needed: whether the run needs a judge even without ``base_url`` (a judge-supervised method).
        **kwargs: further :class:`JudgeConfig` fields (``api_key_env``, ``cache_path``, ``max_concurrency`` ...).

    Yields:
        A :class:`JudgeClient`, or None when no judge is configured nor needed.

    Raises:
        UserError: a base URL that is not an http(s) URL, a real endpoint without ``model``, an endpoint
            where nothing answers or that refuses the key (one cheap request, :meth:`JudgeClient.check`,
            before any work), a bad option.
    """
    from deeprobe_bench.api import UserError

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if base_url is None and not needed:
        yield None
        return
    if base_url in (None, "local"):
        with LocalJudgeServer() as server:
            client = JudgeClient(local_config(server.base_url, server_token=server.token, **kwargs))
            try:
                yield client
            finally:
                client.close()
        return
    check_base_url(base_url)
    if probe_local_server(base_url):
        client = JudgeClient(local_config(base_url, **kwargs))
    else:
        if not model:
            raise UserError("--judge-base-url needs --judge-model (the model name the endpoint serves)")
        client = JudgeClient(JudgeConfig(base_url=base_url, model=model, **kwargs), check=True)
    try:
        yield client
    finally:
        client.close()
