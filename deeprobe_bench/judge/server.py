"""The local judge server: an OpenAI-compatible chat-completions endpoint on loopback, answering from ground truth.

``deeprobe-bench judge serve`` (or :class:`LocalJudgeServer` in-process) lets the default path and the
tests run offline through the real client over real HTTP. It is not a language model: it reads the
project's judge prompts (:mod:`deeprobe_bench.judge.prompts`) and answers them from the tasks' ground
truth, which the client sends it beforehand (``POST /deeprobe/ground_truth``: ``{"examples": {text:
[concept, ...]}}``; only to this server, never to a real judge):

- **explanation**: the concept whose labels best match the examples shown: the largest
  ``share among the shown examples - base rate among all registered examples``, ties to the rarer
  concept; if no concept covers at least half of the examples shown, "no clear pattern".
  The reply names the concept as ``(concept "IO=Mary")``.
- **detection**: the examples that carry the concept the explanation names (none if it names none).

So a feature whose top activations line up with one ground-truth concept, and that fires where the
concept holds, scores 1; a feature that fires at random scores about 0.5 (chance).

It can be told to fail, to test the client's retries: each chat request first takes the next fault from
a queue (``POST /deeprobe/faults`` ``{"queue": ["429", "500", "slow", "garbage"]}``) or, when the queue
is empty, draws one with the configured probabilities (``--fail 429=0.1,500=0.1,slow=0.05,garbage=0.1``).
Faults: ``429`` and ``500`` / ``503`` (HTTP errors with an OpenAI-style error body), ``slow`` (the answer
after ``slow_s`` seconds, so a client with a shorter timeout times out), ``garbage`` (HTTP 200 with text
that is no answer), ``badjson`` (HTTP 200 whose body is not JSON).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /deeprobe/info``, ``GET
/deeprobe/stats``, ``POST /deeprobe/ground_truth``, ``POST /deeprobe/faults``. It binds to loopback only.

The write endpoints (``/deeprobe/ground_truth``, ``/deeprobe/faults``) take a per-server token
(header ``X-Deeprobe-Token``, or ``Authorization: Bearer <token>``), drawn with :mod:`secrets` when the
server starts, so another local process cannot plant labels or faults; a request without it gets 403.
An in-process server hands its token to its client directly; ``deeprobe-bench judge serve`` prints it
and writes it to a private file (:func:`token_path`, mode 0600 in a 0700 folder, removed on exit) where
a client on the same machine and account finds it (:func:`read_token`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deeprobe_bench.api import UserError
from deeprobe_bench.judge.prompts import read_prompt
from deeprobe_bench.results import DIR_MODE, FILE_MODE, register_secret

log = logging.getLogger(__name__)

LOCAL_MODEL = "deeprobe-local-judge"
#: the server's answering rule; part of the cache identity of its replies
LOCAL_VERSION = "ground-truth-1"
NO_PATTERN = "No clear pattern: the examples share no single concept."
FAULTS = ("429", "500", "503", "slow", "garbage", "badjson")
GARBAGE = "lorem ipsum " * 50
_CONCEPT_IN_EXPLANATION = re.compile(r'concept "([^"]+)"')
#: share of the shown examples the best concept must cover to be named
MIN_SHARE = 0.5
#: the request header carrying the server's token on its write endpoints
TOKEN_HEADER = "X-Deeprobe-Token"
#: environment variable a client reads the local server's token from (before the token file)
TOKEN_ENV = "DEEPROBE_JUDGE_SERVER_TOKEN"
#: tokens of the servers running in this process, by (host, port): their clients need no file
_IN_PROCESS: dict[tuple[str, int], str] = {}


def token_path(host: str, port: int) -> Path | None:
    """Where ``judge serve`` on ``host:port`` keeps its token: ``$DEEPROBE_CACHE/judge-server/<host>-<port>.token``
    (default cache ``~/.cache/deeprobe_bench``); None when ``DEEPROBE_CACHE=off``."""
    root = os.environ.get("DEEPROBE_CACHE", str(Path.home() / ".cache" / "deeprobe_bench"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    safe_host = re.sub(r"[^A-Za-z0-9.]", "_", host.strip("[]"))
    return Path(root) / "judge-server" / f"{safe_host}-{int(port)}.token"


def read_token(base_url: str) -> str | None:
    """The local server's token for ``base_url``: that of a server running in this process, else
    ``$DEEPROBE_JUDGE_SERVER_TOKEN``, else the token file of that host and port when it exists and belongs to
    this user; None otherwise."""
    import urllib.parse

    parts = urllib.parse.urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname and port is not None and (parts.hostname, port) in _IN_PROCESS:
        return _IN_PROCESS[(parts.hostname, port)]
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    if not parts.hostname or port is None:
        return None
    path = token_path(parts.hostname, port)
    try:
        if path is None or path.stat().st_uid != os.getuid():
            return None
        return path.read_text().strip() or None
    except OSError:
        return None


def _norm(text: str) -> str:
    return " ".join(text.split())


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GroundTruth:
    """Concept labels of the registered example texts, and how often each concept occurs."""

    def __init__(self) -> None:
        self.labels: dict[str, frozenset[str]] = {}
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, examples: dict[str, list[str]]) -> int:
        """Register ``{text: [concept, ...]}``; returns how many texts were new."""
        new = 0
        with self._lock:
            for text, concepts in examples.items():
                key = _norm(text)
                if key in self.labels:
                    continue
                self.labels[key] = frozenset(concepts)
                self.counts.update(self.labels[key])
                new += 1
        return new

    def concepts(self, text: str) -> frozenset[str] | None:
        return self.labels.get(_norm(text))

    def explain(self, examples: list[str]) -> str:
        """The explanation of a feature whose top-activating examples are ``examples`` (see the module docstring)."""
        known = [k for k in (self.concepts(t) for t in examples) if k is not None]
        if not known:
            return NO_PATTERN
        total = max(len(self.labels), 1)
        share = Counter(c for k in known for c in k)
        best = max(share, key=lambda c: (share[c] / len(known) - self.counts[c] / total, -self.counts[c], c))
        if share[best] / len(known) < MIN_SHARE:
            return NO_PATTERN
        return f'Activates on examples where {best} (concept "{best}").'

    def detect(self, explanation: str | None, examples: list[str]) -> list[int]:
        """The 1-based numbers of ``examples`` that carry the concept ``explanation`` names."""
        concept = None
        if explanation:
            m = _CONCEPT_IN_EXPLANATION.search(explanation)
            if m:
                concept = m.group(1)
            else:  # a free-text explanation: the longest known concept named in it
                names = sorted(self.counts, key=len, reverse=True)
                concept = next((c for c in names if c in explanation), None)
        if concept is None:
            return []
        return [i + 1 for i, t in enumerate(examples) if concept in (self.concepts(t) or ())]


class Faults:
    """Which fault (if any) the next chat request gets: a queue first, then seeded random draws."""

    def __init__(self, probs: dict[str, float] | None = None, seed: int = 0) -> None:
        self.probs = dict(probs or {})
        bad = [k for k in self.probs if k not in FAULTS]
        if bad:
            raise UserError(f"unknown judge fault(s) {bad}; known: {', '.join(FAULTS)}")
        if sum(self.probs.values()) > 1 or any(p < 0 for p in self.probs.values()):
            raise UserError("judge fault probabilities must be >= 0 and sum to at most 1")
        self.queue: list[str] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def push(self, faults: list[str]) -> None:
        bad = [f for f in faults if f not in FAULTS and f != "none"]
        if bad:
            raise ValueError(f"unknown fault(s) {bad}; known: {', '.join(FAULTS)}, none")
        with self._lock:
            self.queue.extend(faults)

    def next(self) -> str | None:
        with self._lock:
            if self.queue:
                f = self.queue.pop(0)
                return None if f == "none" else f
            if not self.probs:
                return None
            r, acc = self._rng.random(), 0.0
            for name, p in self.probs.items():
                acc += p
                if r < acc:
                    return name
            return None


def parse_fault_spec(spec: str | None) -> dict[str, float]:
    """``"429=0.1,slow=0.05"`` -> ``{"429": 0.1, "slow": 0.05}``.

    Raises:
        UserError: an item that is not ``fault=probability``.
    """
    out: dict[str, float] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UserError(f"--fail {item!r}: expected fault=probability, e.g. 429=0.1 (faults: {', '.join(FAULTS)})")
    return out


class _Handler(BaseHTTPRequestHandler):
    server_version = f"{LOCAL_MODEL}/{LOCAL_VERSION}"
    protocol_version = "HTTP/1.1"

    @property
    def judge(self) -> LocalJudgeServer:
        return self.server.judge  # type: ignore[attr-defined]

    def setup(self) -> None:
        # A reply is two writes (headers, then body): with Nagle's algorithm the body waits for the client's
        # delayed ACK of the headers, about 10 ms a request on loopback. Off, a request takes about 2.6 ms
        # (benchmarks/bench_grid.py, "judge").
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("judge server: " + format, *args)

    def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _body_discard(self) -> None:
        try:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except (ValueError, OSError):
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.rstrip("/")
        if path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": LOCAL_MODEL, "object": "model", "owned_by": "deeprobe-bench"}]})
        elif path == "/deeprobe/info":
            self._send(200, {"server": LOCAL_MODEL, "version": LOCAL_VERSION})
        elif path == "/deeprobe/stats":
            self._send(200, self.judge.stats())
        else:
            self._error(404, f"no such endpoint {self.path}", "not_found")

    def _authorised(self) -> bool:
        """Whether the request carries this server's token (constant-time comparison)."""
        given = self.headers.get(TOKEN_HEADER) or ""
        auth = self.headers.get("Authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.judge.token.encode())

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.rstrip("/")
        if path.startswith("/deeprobe/") and not self._authorised():
            self._body_discard()
            self._error(403, f"{path} needs this server's token (header {TOKEN_HEADER})", "permission_denied")
            return
        try:
            body = self._body()
        except (ValueError, UnicodeDecodeError):
            self._error(400, "request body is not JSON", "invalid_request_error")
            return
        if path == "/deeprobe/ground_truth":
            examples = body.get("examples") if isinstance(body, dict) else None
            if not isinstance(examples, dict):
                self._error(400, 'expected {"examples": {text: [concept, ...]}}', "invalid_request_error")
                return
            new = self.judge.ground_truth.add(examples)
            self._send(200, {"registered": new, "total": len(self.judge.ground_truth.labels)})
        elif path == "/deeprobe/faults":
            try:
                self.judge.faults.push(list(body.get("queue", [])))
            except (ValueError, AttributeError, TypeError) as e:
                self._error(400, str(e), "invalid_request_error")
                return
            self._send(200, {"queued": len(self.judge.faults.queue)})
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        else:
            self._error(404, f"no such endpoint {self.path}", "not_found")

    def _chat(self, body: Any) -> None:
        judge = self.judge
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            self._error(400, "messages must be a list", "invalid_request_error")
            return
        judge.enter()
        try:
            self._answer(messages)
        finally:
            judge.leave()

    def _answer(self, messages: list[Any]) -> None:
        judge = self.judge
        fault = judge.faults.next()
        judge.count("requests")
        if fault:
            judge.count(f"fault:{fault}")
        if fault in ("429", "500", "503"):
            status = int(fault)
            self._error(status, f"injected {status}", "rate_limit_error" if status == 429 else "server_error")
            return
        if fault == "badjson":
            self._send(200, None, raw=b"{not json")
            return
        if fault == "slow" and judge.wait(judge.slow_s):
            return  # the server is stopping
        prompt = read_prompt(messages)
        judge.count(f"kind:{prompt.kind}")
        if fault == "garbage":
            text = GARBAGE
        elif prompt.kind == "explain":
            text = judge.ground_truth.explain(prompt.examples)
        elif prompt.kind == "detect":
            text = json.dumps(judge.ground_truth.detect(prompt.explanation, prompt.examples))
        else:
            text = "I only answer deeprobe-bench judge prompts."
        p_tok = sum(len(str(m.get("content", "")).split()) for m in messages)
        c_tok = len(text.split())
        self._send(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": LOCAL_MODEL,
                "system_fingerprint": LOCAL_VERSION,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("judge server: error while serving %s", client_address, exc_info=True)


class LocalJudgeServer:
    """The local judge on ``http://<host>:<port>/v1`` (port 0: an ephemeral one), in a background thread.

    Args:
        host: a loopback address (anything else is refused).
        port: TCP port; 0 picks a free one (see :attr:`base_url` after :meth:`start`).
        fail: fault probabilities (:func:`parse_fault_spec`), drawn with ``seed``.
        slow_s: how long a ``slow`` fault delays the answer.
        seed: seeds the random faults.
        token: the token of the write endpoints; None draws one (``secrets.token_urlsafe(24)``), see
            :attr:`token`.

    Raises:
        UserError: a non-loopback host, unknown faults.

    Use as a context manager: ``with LocalJudgeServer() as server: ... server.base_url``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fail: dict[str, float] | None = None,
                 slow_s: float = 5.0, seed: int = 0, token: str | None = None) -> None:  # fmt: skip
        if not is_loopback(host):
            raise UserError(f"the local judge server binds to loopback only (127.0.0.1, ::1, localhost), not {host!r}")
        self.host, self.port, self.slow_s = host, port, slow_s
        self.token = token or secrets.token_urlsafe(24)
        register_secret(self.token)
        self._token_file: Path | None = None
        self.ground_truth = GroundTruth()
        self.faults = Faults(fail, seed)
        self._counts: Counter[str] = Counter()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._counts["max_in_flight"] = max(self._counts["max_in_flight"], self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def stats(self) -> dict[str, Any]:
        """Chat requests (``requests``), by kind (``kind:explain`` ...), faults injected (``fault:429`` ...), the most
        requests in flight at once (``max_in_flight``) and the registered texts (``ground_truth_texts``)."""
        with self._lock:
            return dict(sorted(self._counts.items())) | {"ground_truth_texts": len(self.ground_truth.labels)}

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the server is stopping."""
        return self._stopping.wait(seconds)

    def start(self) -> LocalJudgeServer:
        """Bind and serve in a daemon thread.

        Raises:
            UserError: the port is taken.
        """
        try:
            self._httpd = _Server((self.host, self.port), _Handler)
        except OSError as e:
            raise UserError(f"cannot start the local judge server on {self.host}:{self.port}: {e}") from None
        self._httpd.judge = self  # type: ignore[attr-defined]
        self.port = int(self._httpd.server_address[1])
        _IN_PROCESS[(self.host, self.port)] = self.token
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="deeprobe-judge", daemon=True
        )
        self._thread.start()
        log.info("local judge server on %s", self.base_url)
        return self

    def write_token_file(self) -> Path | None:
        """Write :attr:`token` to :func:`token_path` (mode 0600, folder 0700) for clients of this account; the
        path, or None when the cache is off. Removed by :meth:`stop`.

        Raises:
            UserError: the token folder exists and belongs to another user, or cannot be written.
        """
        path = token_path(self.host, self.port)
        if path is None:
            return None
        try:
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            st = path.parent.stat()
            if st.st_uid != os.getuid():
                raise UserError(f"{path.parent} belongs to another user; remove it or set DEEPROBE_CACHE")
            os.chmod(path.parent, DIR_MODE)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.token + "\n")
            os.replace(tmp, path)
        except OSError as e:
            raise UserError(f"cannot write the judge server's token file {path}: {e.strerror or e}") from None
        self._token_file = path
        return path

    def wait_until_interrupted(self) -> None:
        """Block until Ctrl-C, then stop (``deeprobe-bench judge serve``); the server must be started."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket (slow replies in progress are abandoned)."""
        self._stopping.set()
        _IN_PROCESS.pop((self.host, self.port), None)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._token_file is not None:
            try:
                self._token_file.unlink()
            except OSError:
                pass
            self._token_file = None

    def __enter__(self) -> LocalJudgeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
