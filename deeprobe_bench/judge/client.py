"""The LLM judge client: any OpenAI-compatible chat-completions endpoint, cached, retried, accounted.

Built on the ``openai`` package (``openai.OpenAI(base_url=...)``), so OpenAI, vLLM, Ollama, OpenRouter
and the project's local judge server (:mod:`deeprobe_bench.judge.server`) all work the same way
(REFERENCE.md section 6, "Client practice"):

- **Key** from an environment variable (``DEEPROBE_JUDGE_API_KEY`` unless configured otherwise); only
  the variable's *name* is ever recorded, never its value. The value is registered with
  :func:`deeprobe_bench.results.register_secret`, so an endpoint that echoes it in an error message
  (``401 Incorrect API key provided: sk-...``) never puts it in an exception, a log line or a file.
- **Checked before work** (:meth:`JudgeClient.check`): the base URL must be an ``http(s)://host`` URL
  and one cheap request (``GET /models``) must get an answer; a refused key or nothing listening is a
  one-line user error at once, not 30 s of retries per cell.
- **Concurrency limit**: at most ``max_concurrency`` requests in flight per client (a semaphore), shared
  by every thread using it; :meth:`JudgeClient.complete_many` runs a batch on that many threads.
- **Retries**: HTTP 429, 5xx, timeouts and connection errors, and replies that do not parse (the
  ``parse`` callback raises :class:`~deeprobe_bench.judge.prompts.ReplyFormatError`), are retried with
  exponential backoff and jitter: ``min(backoff_max_s, backoff_base_s * 2**attempt) * U(0.5, 1)``
  (longer if the server sends ``Retry-After``), at most ``max_retries`` times; then :class:`JudgeError`.
  Other errors (401, 400, 404 ...) raise :class:`JudgeError` at once. The ``openai`` client's own retries
  are switched off so these are the only ones.
- **Cache**: replies that parsed are stored in SQLite (:mod:`deeprobe_bench.judge.cache`) keyed by model,
  endpoint, messages, sampling parameters and prompt version; a rerun makes no call.
- **Accounting**: HTTP calls, cache hits, retries, prompt / completion tokens and their cost (from
  ``price_in_per_mtok`` / ``price_out_per_mtok``, USD per million tokens) are counted
  (:meth:`JudgeClient.usage`); the runner records the per-cell difference in every result.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deeprobe_bench.api import UserError
from deeprobe_bench.judge.cache import JudgeCache, cache_key, default_cache_path
from deeprobe_bench.judge.prompts import PROMPT_VERSION, ReplyFormatError
from deeprobe_bench.results import redact, register_secret

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "DEEPROBE_JUDGE_API_KEY"


class JudgeError(RuntimeError):
    """The judge could not give a usable reply (retries exhausted, or a non-retryable HTTP error).

    The message never holds a registered secret (it is passed through :func:`~deeprobe_bench.results.redact`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def _register_url_secrets(url: str) -> None:
    """Register the password (and user name) of ``https://user:password@host/...`` and any ``key=`` / ``token=``
    query value as secrets, so the URL can be shown and recorded without them."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    register_secret(parts.password)
    register_secret(parts.username)
    for name, value in urllib.parse.parse_qsl(parts.query):
        if any(w in name.lower() for w in ("key", "token", "secret", "password")):
            register_secret(value)


def check_base_url(url: str) -> None:
    """Refuse a judge base URL that is not ``http://host[:port][/path]`` or ``https://...``.

    Raises:
        UserError: the URL has another scheme, no host, or a port that is not a number.
    """
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UserError(
            f"judge base URL {redact(url)!r} is not an http(s) URL; expected e.g. https://api.openai.com/v1, "
            "http://127.0.0.1:8765/v1 or 'local'"
        )


@dataclass
class JudgeConfig:
    """How to reach and use a judge.

    Attributes:
        base_url: the OpenAI-compatible endpoint, e.g. ``https://api.openai.com/v1`` or
            ``http://127.0.0.1:8765/v1``.
        model: the judge model name sent in each request.
        api_key_env: the environment variable holding the API key (may be unset for endpoints that
            need none, such as the local server or a local vLLM).
        cache_path: the SQLite reply cache; None for :func:`~deeprobe_bench.judge.cache.default_cache_path`,
            ``""`` for an in-memory cache.
        endpoint_id: what the cache key records as the endpoint; default ``base_url``. The local server
            sets a stable id, since its port changes from run to run.
        local: the endpoint is the project's local judge server (it accepts ground-truth labels).
        server_token: the local server's token for its write endpoints (``/deeprobe/ground_truth``); None
            reads ``$DEEPROBE_JUDGE_SERVER_TOKEN``, else the token file ``judge serve`` wrote for that port
            (:func:`deeprobe_bench.judge.server.read_token`). Never recorded.
        max_concurrency: requests in flight at most.
        max_retries: retries of one request (so at most ``max_retries + 1`` attempts).
        timeout_s: seconds before a request times out (then it is retried).
        backoff_base_s / backoff_max_s: exponential backoff base and cap, seconds.
        temperature / max_tokens / seed: sampling parameters (part of the cache key).
        price_in_per_mtok / price_out_per_mtok: USD per million prompt / completion tokens, for the cost.
    """

    base_url: str
    model: str
    api_key_env: str = DEFAULT_KEY_ENV
    cache_path: str | None = None
    endpoint_id: str | None = None
    local: bool = False
    server_token: str | None = field(default=None, repr=False)
    max_concurrency: int = 4
    max_retries: int = 5
    timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = 0
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url:
            raise UserError("judge base URL is empty")
        check_base_url(self.base_url)
        if not self.model:
            raise UserError("judge model is empty (--judge-model)")
        if self.max_concurrency < 1:
            raise UserError(f"judge concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0:
            raise UserError(f"judge max retries must be >= 0, got {self.max_retries}")
        if self.timeout_s <= 0:
            raise UserError(f"judge timeout must be > 0 s, got {self.timeout_s}")


@dataclass
class Reply:
    """One judge reply.

    Attributes:
        text: the raw reply text.
        parsed: what ``parse(text)`` returned (the text itself without a parser).
        cached: whether it came from the cache (no call made).
        prompt_tokens / completion_tokens: the tokens the reply cost (or cost when it was first made).
        served_by: the model name (and system fingerprint) the endpoint reported (when first asked, for a
            cached reply).
    """

    text: str
    parsed: Any
    cached: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    served_by: str | None = None


@dataclass
class Usage:
    """Counters of a client; :meth:`minus` gives the part spent between two snapshots."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retry_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def minus(self, other: Usage) -> Usage:
        reasons = {k: v - other.retry_reasons.get(k, 0) for k, v in self.retry_reasons.items()}
        return Usage(
            calls=self.calls - other.calls,
            cache_hits=self.cache_hits - other.cache_hits,
            retries=self.retries - other.retries,
            errors=self.errors - other.errors,
            prompt_tokens=self.prompt_tokens - other.prompt_tokens,
            completion_tokens=self.completion_tokens - other.completion_tokens,
            cost_usd=self.cost_usd - other.cost_usd,
            retry_reasons={k: v for k, v in reasons.items() if v},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 8),
            "retry_reasons": dict(sorted(self.retry_reasons.items())),
        }


def _classify(exc: BaseException) -> tuple[bool, str]:
    """``(retryable, reason)`` of an exception raised by a chat-completions request."""
    import openai

    if isinstance(exc, ReplyFormatError):
        return True, "malformed reply"
    if isinstance(exc, openai.APITimeoutError):
        return True, "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return True, "connection"
    if isinstance(exc, openai.RateLimitError):
        return True, "429"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return (status >= 500 or status in (408, 409)), str(status)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | KeyError | IndexError | TypeError):
        return True, "malformed response"
    return False, type(exc).__name__


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class JudgeClient:
    """An OpenAI-compatible judge with a cache, retries, a concurrency limit and usage counters.

    Args:
        config: see :class:`JudgeConfig`.
        sleep: the sleep function used between retries (tests pass a fake).
        rng: the jitter's random generator (default seeded from ``config.seed``).
        check: send one cheap request first (:meth:`check`), so a bad endpoint fails before any work. The
            reply cache's path is checked here and its file created on first use (:attr:`cache`).

    Raises:
        UserError: a bad config (empty model, non-positive limits, a base URL that is not http(s)), an
            unusable cache file (a folder, not a SQLite database), or with ``check`` an endpoint that
            does not answer or refuses the key.
    """

    def __init__(self, config: JudgeConfig, sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 check: bool = False):  # fmt: skip
        import openai

        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random(config.seed or 0)
        key = os.environ.get(config.api_key_env) or ""
        register_secret(key)  # only a real key: the placeholder below is no secret
        key = key or "not-needed"
        _register_url_secrets(config.base_url)
        self._openai = openai.OpenAI(
            base_url=config.base_url, api_key=key, max_retries=0, timeout=config.timeout_s
        )
        del key
        if check:
            try:
                self.check()
            except BaseException:
                self._openai.close()
                raise
        path = config.cache_path
        if path is None:
            path = default_cache_path()
        self._cache_path = path or None
        JudgeCache.validate(self._cache_path)  # a bad cache path fails now; the file is made on first use
        self._cache: JudgeCache | None = None
        self._cache_lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(config.max_concurrency)
        self._lock = threading.Lock()
        self._usage = Usage()
        self._served_by: set[str] = set()
        self._registered: dict[int, Any] = {}  # id -> the example set (kept alive, so ids stay unique)
        self._gt_lock = threading.Lock()

    @property
    def cache(self) -> JudgeCache:
        """The reply cache, opened (and its file created) on first use, so a run refused before any judge
        request writes nothing."""
        with self._cache_lock:
            if self._cache is None:
                self._cache = JudgeCache(self._cache_path)
            return self._cache

    # ------------------------------------------------------------------ checked before work

    def check(self, timeout_s: float = 10.0) -> None:
        """One cheap request (``GET <base_url>/models``) before any work, so a bad endpoint fails at once.

        A 404 (an endpoint without a models list) or another non-auth HTTP error still shows that
        something answers, and is accepted.

        Raises:
            UserError: nothing answers at the URL (connection refused, DNS failure, timeout), or the
                endpoint refuses the key (401 / 403). The message names the URL and the fix, and never the key.
        """
        import openai

        url = self.config.base_url
        try:
            self._openai.with_options(timeout=min(timeout_s, self.config.timeout_s), max_retries=0).models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise UserError(
                f"the judge at {redact(url)} refused the API key ({e.status_code}: {_short(e)}); set "
                f"${self.config.api_key_env} (or pass --judge-api-key-env VAR) to a valid key"
            ) from None
        except openai.APITimeoutError:
            raise UserError(f"the judge at {redact(url)} did not answer within {min(timeout_s, self.config.timeout_s):g} s; "
                            "check --judge-base-url (and that the server is running)") from None  # fmt: skip
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            raise UserError(f"nothing answers at judge URL {redact(url)} ({_short(cause)}); check --judge-base-url "
                            "(and that the server is running)") from None  # fmt: skip
        except openai.APIStatusError as e:
            log.debug("judge check: GET %s/models answered %s; going on", redact(url), e.status_code)
        except Exception as e:  # noqa: BLE001 - an answer that is not a models list still is an answer
            log.debug("judge check: GET %s/models: %s; going on", redact(url), _short(e))

    # ------------------------------------------------------------------ identity and usage

    @property
    def endpoint_id(self) -> str:
        """The endpoint as recorded in results and the cache key (registered URL secrets redacted)."""
        return redact(self.config.endpoint_id or self.config.base_url.rstrip("/"))

    @property
    def params(self) -> dict[str, Any]:
        """Sampling parameters sent with every request (part of the cache key)."""
        out: dict[str, Any] = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        if self.config.seed is not None:
            out["seed"] = self.config.seed
        return out

    @property
    def tokens_used(self) -> int:
        """Prompt + completion tokens of the calls made so far (cache hits cost nothing)."""
        with self._lock:
            return self._usage.tokens

    def usage(self) -> Usage:
        """A snapshot of the counters."""
        with self._lock:
            u = self._usage
            return Usage(u.calls, u.cache_hits, u.retries, u.errors, u.prompt_tokens, u.completion_tokens,
                         u.cost_usd, dict(u.retry_reasons))  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Which judge this is, JSON-ready, for results: never the key, only its variable's name."""
        return {
            "model": self.config.model,
            "endpoint": self.endpoint_id,
            "base_url": redact(self.config.base_url) if not self.config.local else "local server (loopback)",
            "local_server": self.config.local,
            "served_by": sorted(self._served_by),
            "prompt_version": PROMPT_VERSION,
            "params": self.params,
            "api_key_env": self.config.api_key_env,
            "price_usd_per_mtok": {"in": self.config.price_in_per_mtok, "out": self.config.price_out_per_mtok},
        }

    # ------------------------------------------------------------------ ground truth (local server only)

    def register_ground_truth(self, examples: Any) -> None:
        """Send the concept labels of an :class:`~deeprobe_bench.api.ExampleSet` to the local judge server.

        A no-op for any other endpoint (a real judge must never see labels) and for example sets
        without labels; sent once per example set and client.
        """
        if not self.config.local or examples is None or examples.labels is None or id(examples) in self._registered:
            return
        payload = {"examples": {t: examples.concepts_of(i) for i, t in enumerate(examples.texts)}}
        from deeprobe_bench.judge.server import TOKEN_HEADER, read_token

        url = self.config.base_url.rstrip("/").removesuffix("/v1") + "/deeprobe/ground_truth"
        token = self.config.server_token or read_token(self.config.base_url)
        headers = {"Content-Type": "application/json"}
        if token:
            register_secret(token)
            headers[TOKEN_HEADER] = token
        req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers)
        with self._gt_lock:  # held until the server has the labels: no request may overtake them
            if id(examples) in self._registered:
                return
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:  # loopback URL of our own server
                    resp.read()
            except urllib.error.HTTPError as e:
                if e.code == 403:
                    raise UserError(
                        f"the local judge server at {url} refused the ground truth (403: wrong or missing token); "
                        "set $DEEPROBE_JUDGE_SERVER_TOKEN to the token `deeprobe-bench judge serve` printed"
                    ) from None
                raise JudgeError(f"could not send ground truth to the local judge server at {url}: {e}") from None
            except OSError as e:
                raise JudgeError(f"could not send ground truth to the local judge server at {url}: {e}") from None
            self._registered[id(examples)] = examples

    # ------------------------------------------------------------------ requests

    def complete(
        self,
        messages: list[dict[str, Any]],
        parse: Callable[[str], Any] | None = None,
        prompt_version: str = PROMPT_VERSION,
        ground_truth: Any = None,
    ) -> Reply:
        """One chat completion: from the cache if there, else asked (with retries) and cached.

        Args:
            messages: OpenAI chat messages.
            parse: ``text -> value``; raising ReplyFormatError marks the reply malformed (retried, not cached).
            prompt_version: part of the cache key.
            ground_truth: an ExampleSet whose labels the local server needs (sent before the first call).

        Raises:
            JudgeError: retries exhausted, or an error that retrying cannot fix.
        """
        key = cache_key(self.config.model, self.endpoint_id, messages, self.params, prompt_version)
        hit = self.cache.get(key)
        if hit is not None:
            try:
                parsed = parse(hit["reply"]) if parse else hit["reply"]
            except ReplyFormatError:
                hit = None  # a parser changed since: ask again
            else:
                with self._lock:
                    self._usage.cache_hits += 1
                    if hit["served_by"]:
                        self._served_by.add(hit["served_by"])
                return Reply(hit["reply"], parsed, True, hit["prompt_tokens"], hit["completion_tokens"], hit["served_by"])
        if ground_truth is not None:
            self.register_ground_truth(ground_truth)
        last: BaseException | None = None
        for attempt in range(self.config.max_retries + 1):
            try:
                text, p_tok, c_tok, served = self._request(messages)
                parsed = parse(text) if parse else text
            except Exception as e:  # noqa: BLE001 - classified below
                retryable, reason = _classify(e)
                last = e
                if not retryable:
                    with self._lock:
                        self._usage.errors += 1
                    raise JudgeError(f"judge request failed ({reason}): {_short(e)}") from None
                if attempt == self.config.max_retries:
                    break
                delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
                delay *= 0.5 + 0.5 * self._rng.random()
                after = _retry_after(e)
                if after is not None:
                    delay = max(delay, min(after, self.config.backoff_max_s))
                with self._lock:
                    self._usage.retries += 1
                    self._usage.retry_reasons[reason] = self._usage.retry_reasons.get(reason, 0) + 1
                log.debug("judge: %s, retry %d in %.2f s", reason, attempt + 1, delay)
                self._sleep(delay)
                continue
            self.cache.put(key, model=self.config.model, endpoint=self.endpoint_id, prompt_version=prompt_version,
                           reply=text, prompt_tokens=p_tok, completion_tokens=c_tok, served_by=served)  # fmt: skip
            return Reply(text, parsed, False, p_tok, c_tok, served)
        with self._lock:
            self._usage.errors += 1
        reason = _classify(last)[1] if last is not None else "unknown"
        raise JudgeError(
            f"judge gave no usable reply after {self.config.max_retries + 1} attempts (last: {reason}: {_short(last)})"
        )

    def _request(self, messages: list[dict[str, Any]]) -> tuple[str, int, int, str | None]:
        """One HTTP request; counts the call and its tokens. Returns (text, prompt_tokens, completion_tokens, served_by)."""
        with self._sem:
            with self._lock:
                self._usage.calls += 1
            resp = self._openai.chat.completions.create(model=self.config.model, messages=messages, **self.params)
        text = resp.choices[0].message.content
        usage = resp.usage
        p_tok = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
        c_tok = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
        served = resp.model + (f" ({resp.system_fingerprint})" if getattr(resp, "system_fingerprint", None) else "")
        with self._lock:
            self._usage.prompt_tokens += p_tok
            self._usage.completion_tokens += c_tok
            self._usage.cost_usd += (p_tok * self.config.price_in_per_mtok + c_tok * self.config.price_out_per_mtok) / 1e6
            self._served_by.add(served)
        if text is None:
            raise ReplyFormatError("empty reply")
        return text, p_tok, c_tok, served

    def complete_many(
        self,
        requests: Sequence[tuple[list[dict[str, Any]], Callable[[str], Any] | None]],
        ground_truth: Any = None,
    ) -> list[Reply]:
        """:meth:`complete` for each ``(messages, parse)``, ``max_concurrency`` at a time, in order.

        Raises:
            JudgeError: the first request that failed for good (the others are still finished or cancelled).
        """
        if not requests:
            return []
        if self.config.max_concurrency == 1 or len(requests) == 1:
            return [self.complete(m, p, ground_truth=ground_truth) for m, p in requests]
        with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(requests))) as pool:
            futures = [pool.submit(self.complete, m, p, ground_truth=ground_truth) for m, p in requests]
            return [f.result() for f in futures]

    def close(self) -> None:
        self._openai.close()
        with self._cache_lock:
            if self._cache is not None:
                self._cache.close()


def _short(exc: BaseException | None, width: int = 160) -> str:
    """One line of ``exc``'s message, secrets redacted, at most ``width`` characters."""
    text = redact(" ".join(str(exc).split())) if exc is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"
