"""Every bad input the CLI knows of: exit status 2, one line on stderr, no traceback, nothing written.

One parametrized case per mistake (issue 16 lists most of them; the others were handled before and are
kept here so they stay handled). Each case builds what it needs under ``tmp_path`` and names the words
its one line must contain. "Nothing written" means: no file under the run's results folder, none in the
cache folder (``$DEEPROBE_CACHE``), and any file the case points at is unchanged.

The commands run in-process with ``-q`` (warnings and errors only), so stderr holds exactly what a user
sees go wrong. The zoo cases copy the shipped ``ioi-mini`` into ``tmp_path``, damage one file, and register
the copy as model ``ioi-mini-copy``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import HELPERS_PATH, REPO_ROOT, ToyTask

from deeprobe_bench import api, cli, registry

PLUGIN = ["--plugin", str(HELPERS_PATH)]
IOI_MINI = REPO_ROOT / "tasks" / "ioi" / "zoo" / "ioi-mini"
SAE_DIR = "saes/blocks.0.hook_resid_post"
FAKE_KEY = "sk-test-ECHOED-0123456789abcdef"


# --------------------------------------------------------------------------- a fake OpenAI-compatible endpoint


class EchoKeyEndpoint:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers 401 "Incorrect API key provided: <the key>"
    (the key it was sent, echoed, as OpenAI does), also naming it after ``Bearer``.

    With ``models_ok`` the cheap ``GET /v1/models`` check passes and only chat requests are refused, so the
    key reaches the cells' error handling too.
    """

    def __init__(self, models_ok: bool = False) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.requests += 1
                if endpoint.models_ok and self.path.rstrip("/").endswith("/models"):
                    self._reply(200, {"object": "list", "data": [{"id": "gpt-test", "object": "model"}]})
                    return
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                message = f"Incorrect API key provided: {key}. You sent 'Authorization: Bearer {key}'."
                self._reply(401, {"error": {"message": message, "type": "invalid_request_error",
                                            "code": "invalid_api_key"}})  # fmt: skip

            do_GET = do_POST = _handle  # noqa: N815

        self.models_ok = models_ok
        self.requests = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> EchoKeyEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- damaged zoo models


@dataclass
class DirModel:
    """A model spec loading a zoo directory from anywhere (here: a damaged copy of ioi-mini)."""

    name: str
    directory: Path
    description: str = "a copy of ioi-mini (test)"

    def load(self) -> Any:
        from deeprobe_bench.subject import load_zoo_dir

        return load_zoo_dir(self.directory, name=self.name)


def damaged_copy(tmp_path: Path, damage: Callable[[Path], None], keep_checksums: bool = True) -> list[str]:
    """Copy ioi-mini, ``damage`` the copy, register it as ``ioi-mini-copy``; the args of a run on it."""
    d = tmp_path / "zoo" / "ioi-mini-copy"
    shutil.copytree(IOI_MINI, d)
    if not keep_checksums:
        card = json.loads((d / "card.json").read_text())
        card.pop("sha256")
        (d / "card.json").write_text(json.dumps(card))
    damage(d)
    registry.register_model(DirModel("ioi-mini-copy", d))
    return ["run", "--task", "ioi", "--model", "ioi-mini-copy", "--method", "sae"]


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


# --------------------------------------------------------------------------- the cases

RUN_TOY = ["run", "--task", "toy", "--method", "toy-random"]


def _file(tmp_path: Path, name: str = "a-file", text: str = "not a folder\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _results_with_one_result(tmp_path: Path) -> Path:
    from helpers import make_result

    from deeprobe_bench.results import write_result

    res = tmp_path / "lb-results"
    write_result(make_result("m", score=0.5), res / "toy" / "toy" / "m" / "seed0.json")
    return res


#: (id, setup: tmp_path -> command args, words the one line must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    # seeds
    ("seed-huge", lambda t: [*RUN_TOY, "--seed", "99999999999999999999999"], ["seed 99999999999999999999999 is out of range"]),
    ("seed-negative-othello", lambda t: ["run", "--task", "othello", "--method", "sae", "--seed", "-1"],
     ["seed -1 is out of range"]),
    ("seeds-negative-list", lambda t: [*RUN_TOY, "--seeds", "-1,2"], ["seed -1 is out of range"]),
    ("seeds-not-integers", lambda t: [*RUN_TOY, "--seeds", "x"], ["argument --seeds"]),
    ("seed-not-integer", lambda t: [*RUN_TOY, "--seed", "one"], ["argument --seed"]),
    ("limit-zero", lambda t: [*RUN_TOY, "--limit", "0"], ["argument --limit"]),
    # names and options
    ("unknown-task", lambda t: ["run", "--task", "toyy", "--method", "toy-random"], ["unknown task 'toyy'", "did you mean"]),
    ("unknown-method", lambda t: ["run", "--task", "toy", "--method", "toy-randm"], ["unknown method 'toy-randm'"]),
    ("unknown-model", lambda t: [*RUN_TOY, "--model", "nope"], ["unknown model 'nope'"]),
    ("option-without-equals", lambda t: [*RUN_TOY, "-M", "foo"], ["-M 'foo': expected key=value"]),
    ("option-empty-key", lambda t: [*RUN_TOY, "-T", "=3"], ["-T '=3': expected key=value"]),
    ("option-bad-type", lambda t: [*RUN_TOY, "-T", "noise=loud"], ["noise='loud'", "expected float"]),
    ("option-unknown-key", lambda t: [*RUN_TOY, "-M", "nope=1"], ["unknown -M option", "valid keys"]),
    ("hook-bogus", lambda t: ["run", "--task", "ioi", "--method", "sae", "-T", "hook=bogus.hook"],
     ["-T hook='bogus.hook'", "no such hook point"]),
    ("model-of-another-task", lambda t: ["run", "--task", "ioi", "--model", "othello-mini", "--method", "sae"],
     ["othello task's zoo model", "--model ioi-mini"]),
    ("budget-too-large", lambda t: ["run", "--task", "toy", "--method", "mcts", "-M", "budget=1000000000"],
     ["budget=1000000000", "above its limit of 50000"]),
    # where results go
    ("results-dir-is-a-file", lambda t: [*RUN_TOY, "--results-dir", str(_file(t))], ["--results-dir", "is not a folder"]),
    ("results-dir-under-a-file", lambda t: [*RUN_TOY, "--results-dir", str(_file(t) / "sub")], ["is a file"]),
    ("results-dir-unwritable", lambda t: [*RUN_TOY, "--results-dir", "/proc/deeprobe-results"],
     ["--results-dir /proc/deeprobe-results cannot be written"]),
    ("cache-max-size-bad", lambda t: (os.environ.__setitem__("DEEPROBE_CACHE_MAX_SIZE", "lots"), RUN_TOY)[1],
     ["size 'lots'"]),
    # the judge
    ("judge-url-not-a-url", lambda t: [*RUN_TOY, "--judge-base-url", "not a url", "--judge-model", "m"],
     ["judge base URL 'not a url' is not an http(s) URL"]),
    ("judge-url-nothing-listens",
     lambda t: [*RUN_TOY, "--judge-base-url", f"http://127.0.0.1:{free_port()}/v1", "--judge-model", "m"],
     ["nothing answers at judge URL"]),
    ("judge-model-missing", lambda t: [*RUN_TOY, "--judge-base-url", f"http://127.0.0.1:{free_port()}/v1"],
     ["needs --judge-model"]),
    ("judge-cache-corrupt",
     lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-cache", str(_file(t, "j.sqlite", "garbage" * 200))],
     ["is not a usable SQLite database"]),
    ("judge-cache-directory", lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-cache", str(t)],
     ["is a folder"]),
    ("judge-price-bad", lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-price", "cheap"],
     ["--judge-price 'cheap'"]),
    ("judge-timeout-negative", lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-timeout", "-1"],
     ["judge timeout must be > 0"]),
    ("judge-max-retries-negative", lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-max-retries", "-1"],
     ["judge max retries must be >= 0"]),
    ("judge-concurrency-zero", lambda t: [*RUN_TOY, "--judge-base-url", "local", "--judge-concurrency", "0"],
     ["argument --judge-concurrency"]),
    ("judge-method-without-examples", lambda t: ["run", "--task", "toy", "--method", "toy-judge"],
     ["method toy-judge needs judge examples"]),
    ("judge-serve-not-loopback", lambda t: ["judge", "serve", "--host", "0.0.0.0"], ["loopback only"]),
    ("judge-serve-bad-fault", lambda t: ["judge", "serve", "--fail", "teapot=0.5"], ["unknown judge fault"]),
    # damaged zoo models: checksums catch a changed file; without them the reader's error is one line too
    ("zoo-weights-bitflip", lambda t: damaged_copy(t, lambda d: flip_byte(d / "model.safetensors")),
     ["model.safetensors does not match its SHA-256", "zoo train ioi-mini-copy"]),
    ("zoo-card-corrupt", lambda t: damaged_copy(t, lambda d: (d / "card.json").write_text('{"config": ')),
     ["card.json cannot be read", "JSONDecodeError", "zoo train ioi-mini-copy"]),
    ("zoo-sae-bitflip", lambda t: damaged_copy(t, lambda d: flip_byte(d / SAE_DIR / "sae_weights.safetensors")),
     ["sae_weights.safetensors does not match its SHA-256"]),
    ("zoo-sae-cfg-corrupt", lambda t: damaged_copy(t, lambda d: (d / SAE_DIR / "cfg.json").write_text("{")),
     ["cfg.json does not match its SHA-256"]),
    ("zoo-tokenizer-missing", lambda t: damaged_copy(t, lambda d: (d / "tokenizer_config.json").unlink()),
     ["tokenizer_config.json is missing"]),
    ("zoo-weights-truncated-no-checksums",
     lambda t: damaged_copy(t, lambda d: truncate(d / "model.safetensors"), keep_checksums=False),
     ["model.safetensors cannot be read", "SafetensorError"]),
    ("zoo-sae-truncated-no-checksums",
     lambda t: damaged_copy(t, lambda d: truncate(d / SAE_DIR / "sae_weights.safetensors"), keep_checksums=False),
     ["blocks.0.hook_resid_post cannot be read"]),
    # plugins
    ("plugin-file-missing", lambda t: ["--plugin", str(t / "nope.py"), *RUN_TOY], ["plugin file", "does not exist"]),
    ("plugin-takes-builtin-name",
     lambda t: ["--plugin", str(_file(t, "fake_sae.py", "from helpers import ToyRandom\n\n\nclass FakeSAE(ToyRandom):\n"
                                      "    name = 'sae'\n")), "run", "--task", "toy", "--method", "sae"],
     ["method 'sae'", "takes the name", "--allow-override"]),
    # other commands
    ("leaderboard-out-is-a-file",
     lambda t: ["leaderboard", "build", "--results-dir", str(_results_with_one_result(t)), "--out", str(_file(t))],
     ["--out", "is not a folder"]),
    ("leaderboard-results-missing", lambda t: ["leaderboard", "build", "--results-dir", str(t / "none")],
     ["does not exist"]),
    ("cache-prune-bad-size", lambda t: ["cache", "prune", "--max-size", "lots"], ["size 'lots'"]),
    ("ls-unknown-kind", lambda t: ["ls", "widgets"], ["argument what: invalid choice: 'widgets'"]),
    ("run-without-task", lambda t: ["run", "--method", "toy-random"], ["the following arguments are required: --task"]),
    ("unknown-command", lambda t: ["fly"], ["invalid choice: 'fly'"]),
    ("abbreviated-option", lambda t: [*RUN_TOY, "--see", "1"], ["unrecognized arguments: --see"]),
    ("zoo-train-unknown", lambda t: ["zoo", "train", "toyy"], ["unknown model 'toyy'", "did you mean 'toy'"]),
]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache folder per case; environment variables a case or ``-q`` sets are restored after."""
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    for var in ("DEEPROBE_CACHE_MAX_SIZE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS",
                "DEEPROBE_JUDGE_CACHE"):  # fmt: skip
        monkeypatch.setenv(var, "")  # recorded, so whatever a case sets is undone after it
        monkeypatch.delenv(var)


@pytest.mark.parametrize(("setup", "needles"), [pytest.param(s, n, id=i) for i, s, n in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, setup, needles):
    args = setup(tmp_path)
    if args[:1] == ["run"] or "run" in args[:4]:
        args = [*args, "--results-dir", str(tmp_path / "results")] if "--results-dir" not in args else args
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    code = cli.main(["-q", *PLUGIN, *args])
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deeprobe-bench: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in err and "Traceback" not in out
    assert snapshot(tmp_path) == before  # no result, no cache entry, nothing changed
    assert elapsed < 30  # refused at once (a judge URL where nothing listens used to cost 30 s of retries)


# --------------------------------------------------------------------------- the key an endpoint echoes


class ToyExamplesTask(ToyTask):
    """The toy task plus judge examples (every train row, labelled with its concepts)."""

    name = "toy-examples"

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> api.TaskData:
        data = super().prepare(subject, seed, limit)
        x = data.train_acts
        texts = [api.ExampleSet.mark(f"row {i} reads ", "x") for i in range(len(x))]
        examples = api.ExampleSet(texts, x, x > 0.5, [f"c{i}" for i in range(x.shape[1])], name="toy")
        data.examples = {"train": examples, "eval": examples}
        return data


def _no_key_anywhere(*texts: str) -> None:
    for text in texts:
        assert FAKE_KEY not in text
        assert FAKE_KEY[8:] not in text  # not even a part of it


def test_an_echoed_key_is_refused_at_once_and_never_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEPROBE_JUDGE_API_KEY", FAKE_KEY)
    with EchoKeyEndpoint() as endpoint:
        for verbose in ([], ["-v"]):
            code = cli.main([*verbose, *PLUGIN, *RUN_TOY, "--judge-base-url", endpoint.base_url, "--judge-model", "gpt-x",
                             "--results-dir", str(tmp_path / "results")])  # fmt: skip
            out, err = capsys.readouterr()
            assert code == 2
            assert "refused the API key (401" in err and "Incorrect API key provided: ***" in err
            _no_key_anywhere(out, err)
        assert endpoint.requests >= 2  # it did see the key: the check asked it once per run
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "cache" / "judge.sqlite").exists()  # refused before the reply cache is opened


def test_an_echoed_key_in_a_cells_judge_error_never_reaches_a_file_or_a_log(tmp_path, capsys, monkeypatch):
    """The endpoint answers the cheap check, then refuses every judge request, echoing the key: the cell keeps
    its task metrics, records judge_score as missing with the (redacted) error, and the key is nowhere."""
    import torch


    monkeypatch.setenv("DEEPROBE_JUDGE_API_KEY", FAKE_KEY)
    torch.manual_seed(0)
    with EchoKeyEndpoint(models_ok=True) as endpoint:
        registry.register_task(ToyExamplesTask)
        code = cli.main(["-v", *PLUGIN, "run", "--task", "toy-examples", "--method", "toy-random", "--judge-base-url",
                         endpoint.base_url, "--judge-model", "gpt-x", "--results-dir", str(tmp_path / "results")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    [path] = (tmp_path / "results").rglob("*.json")
    text = path.read_text()
    result = json.loads(text)
    assert result["status"] == "ok" and result["metrics"]["recovery"]["value"] > 0  # the task's metrics are kept
    judge = result["metrics"]["judge_score"]
    assert judge["value"] is None and "Incorrect API key provided: ***" in judge["error"]
    assert "Bearer ***" in result["details"]["judge_error"]["error"]
    _no_key_anywhere(text, out, err)
    cache = tmp_path / "cache" / "judge.sqlite"
    _no_key_anywhere(cache.read_bytes().decode("latin-1"))


def test_files_the_project_writes_are_private(tmp_path, capsys):
    registry.register_task(ToyExamplesTask)
    code = cli.main([*PLUGIN, "run", "--task", "toy-examples", "--method", "toy-random", "--judge-base-url", "local",
                     "--results-dir", str(tmp_path / "results")])  # fmt: skip
    capsys.readouterr()
    assert code == 0
    [result] = (tmp_path / "results").rglob("*.json")
    judge_db = tmp_path / "cache" / "judge.sqlite"
    for path in (result, judge_db):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700


# --------------------------------------------------------------------------- the local judge server's token


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_local_judge_servers_write_endpoints_need_its_token(tmp_path):
    from deeprobe_bench.judge import LocalJudgeServer
    from deeprobe_bench.judge.server import TOKEN_HEADER, read_token

    with LocalJudgeServer() as server:
        root = server.base_url.removesuffix("/v1")
        planted = {"examples": {"row 1": ["planted"]}}
        assert _post(root + "/deeprobe/ground_truth", planted) == 403
        assert _post(root + "/deeprobe/ground_truth", planted, {TOKEN_HEADER: "guess"}) == 403
        assert _post(root + "/deeprobe/faults", {"queue": ["500"]}) == 403
        assert _post(root + "/deeprobe/faults", {"queue": ["500"]}, {"Authorization": "Bearer guess"}) == 403
        assert server.ground_truth.labels == {} and server.faults.queue == []  # nothing planted
        assert _post(root + "/deeprobe/ground_truth", planted, {TOKEN_HEADER: server.token}) == 200
        assert _post(root + "/deeprobe/faults", {"queue": ["500"]}, {"Authorization": f"Bearer {server.token}"}) == 200
        assert server.ground_truth.concepts("row 1") == {"planted"} and server.faults.queue == ["500"]
        assert read_token(server.base_url) == server.token  # its in-process clients find it
    other = LocalJudgeServer()
    assert other.token != server.token and len(other.token) >= 32  # drawn per server


def test_judge_serve_writes_its_token_privately_and_removes_it(tmp_path, monkeypatch):
    from deeprobe_bench.judge import LocalJudgeServer
    from deeprobe_bench.judge.server import _IN_PROCESS, read_token, token_path

    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path / "cache"))
    server = LocalJudgeServer().start()
    try:
        path = server.write_token_file()
        assert path == token_path(server.host, server.port)
        assert path.read_text().strip() == server.token
        assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
        _IN_PROCESS.pop((server.host, server.port))  # as a client in another process: it reads the file
        assert read_token(server.base_url) == server.token
        monkeypatch.setenv("DEEPROBE_JUDGE_SERVER_TOKEN", "from-env-token")
        assert read_token(server.base_url) == "from-env-token"
    finally:
        server.stop()
    assert not path.exists()
