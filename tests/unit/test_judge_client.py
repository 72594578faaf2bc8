"""The judge client against the local judge server over real HTTP (ephemeral loopback port)."""

import json
import urllib.request

import pytest
import torch

from deeprobe_bench.api import ExampleSet, UserError
from deeprobe_bench.judge import JudgeClient, JudgeConfig, JudgeError, LocalJudgeServer, local_config, prompts
from deeprobe_bench.judge.server import parse_fault_spec

TEXTS = [ExampleSet.mark(f"example number {i} says ", "hello") for i in range(12)]


def toy_examples() -> ExampleSet:
    labels = torch.zeros(12, 2, dtype=torch.bool)
    labels[:6, 0] = True  # "even half": rows 0..5 carry A
    labels[6:, 1] = True
    return ExampleSet(TEXTS, torch.randn(12, 4), labels, ["A", "B"], name="toy")


@pytest.fixture
def server():
    with LocalJudgeServer(slow_s=2.0) as s:
        yield s


def push_faults(server, faults):
    url = server.base_url.removesuffix("/v1") + "/deeprobe/faults"
    headers = {"Content-Type": "application/json", "X-Deeprobe-Token": server.token}  # the write endpoints need it
    req = urllib.request.Request(url, data=json.dumps({"queue": faults}).encode(), headers=headers)
    urllib.request.urlopen(req, timeout=5).read()


def stats(server):
    with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/deeprobe/stats", timeout=5) as r:
        return json.loads(r.read())


class FakeSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, s):
        self.delays.append(s)


def client(server, tmp_path=None, sleep=None, **kw):
    kw.setdefault("timeout_s", 0.5)
    cache = str(tmp_path / "judge.sqlite") if tmp_path is not None else ""
    return JudgeClient(local_config(server.base_url, cache_path=cache, **kw), sleep=sleep or FakeSleep())


def explain(c, ex, texts=TEXTS[:4]):
    return c.complete(prompts.explanation_messages(list(texts)), prompts.parse_explanation, ground_truth=ex)


def test_the_server_answers_from_ground_truth(server):
    ex = toy_examples()
    c = client(server)
    e = explain(c, ex)
    assert 'concept "A"' in e.parsed
    d = c.complete(prompts.detection_messages(e.parsed, TEXTS), lambda t: prompts.parse_detection(t, 12))
    assert d.parsed == [1, 2, 3, 4, 5, 6]
    mixed = explain(c, ex, [TEXTS[0], TEXTS[7], TEXTS[1], TEXTS[8], TEXTS[9]])  # 2 A, 3 B: B covers 60%
    assert 'concept "B"' in mixed.parsed
    assert c.describe()["served_by"] == ["deeprobe-local-judge (ground-truth-1)"]


def test_a_cold_run_calls_and_the_same_run_again_is_free(server, tmp_path):
    ex = toy_examples()
    c1 = client(server, tmp_path)
    first = [explain(c1, ex, TEXTS[i : i + 3]).text for i in range(4)]
    assert c1.usage().calls == 4 and c1.usage().cache_hits == 0 and c1.tokens_used > 0
    c1.close()
    c2 = client(server, tmp_path)  # a new process would open the same file
    again = [explain(c2, ex, TEXTS[i : i + 3]).text for i in range(4)]
    assert again == first
    assert c2.usage().calls == 0 and c2.usage().cache_hits == 4 and c2.tokens_used == 0
    assert c2.describe()["served_by"] == ["deeprobe-local-judge (ground-truth-1)"]  # who produced the cached replies
    assert stats(server)["requests"] == 4
    # Another model, other sampling parameters or another endpoint is another key.
    c3 = JudgeClient(JudgeConfig(base_url=server.base_url, model="other", cache_path=str(tmp_path / "judge.sqlite")))
    c3.complete(prompts.explanation_messages(TEXTS[:3]), prompts.parse_explanation)
    assert c3.usage().calls == 1


def test_429_500_timeouts_and_garbage_are_retried_with_growing_jittered_backoff(server):
    ex = toy_examples()
    sleep = FakeSleep()
    c = client(server, sleep=sleep, max_retries=6, backoff_base_s=1.0, backoff_max_s=3.0)
    push_faults(server, ["429", "500", "slow", "garbage", "badjson", "503"])
    e = explain(c, ex)
    assert 'concept "A"' in e.parsed
    u = c.usage()
    assert u.retries == 6 and u.calls == 7 and u.errors == 0
    assert u.retry_reasons == {"429": 1, "500": 1, "503": 1, "timeout": 1, "malformed reply": 1, "malformed response": 1}
    # base * 2**attempt * U(0.5, 1), capped at 3 s
    for attempt, d in enumerate(sleep.delays):
        cap = min(3.0, 2.0**attempt)
        assert 0.5 * cap <= d <= cap
    assert max(sleep.delays) <= 3.0


def test_retries_are_capped_and_end_in_a_judge_error(server):
    c = client(server, max_retries=2)
    push_faults(server, ["500"] * 3)
    with pytest.raises(JudgeError, match="after 3 attempts"):
        explain(c, toy_examples())
    assert c.usage().calls == 3 and c.usage().errors == 1


def test_a_non_retryable_error_fails_at_once(server):
    c = JudgeClient(JudgeConfig(base_url=server.base_url.replace("/v1", "/nope"), model="m", cache_path=""),
                    sleep=FakeSleep())  # fmt: skip
    with pytest.raises(JudgeError, match="404"):
        c.complete(prompts.explanation_messages(TEXTS[:2]), prompts.parse_explanation)
    assert c.usage().calls == 1 and c.usage().retries == 0


def test_the_concurrency_limit_holds(server):
    c = client(server, max_concurrency=2, timeout_s=10)
    server.slow_s = 0.3
    push_faults(server, ["slow"] * 6)
    reqs = [(prompts.explanation_messages(TEXTS[i : i + 2]), prompts.parse_explanation) for i in range(6)]
    out = c.complete_many(reqs, ground_truth=toy_examples())
    assert len(out) == 6
    assert stats(server)["max_in_flight"] == 2


def test_the_key_is_read_from_the_environment_and_never_recorded(server, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-very-secret-123")
    c = JudgeClient(JudgeConfig(base_url=server.base_url, model="m", api_key_env="MY_JUDGE_KEY", cache_path=""))
    assert c._openai.api_key == "sk-very-secret-123"
    c.complete(prompts.explanation_messages(TEXTS[:2]), prompts.parse_explanation, ground_truth=toy_examples())
    record = json.dumps({**c.describe(), "usage": c.usage().to_dict()})
    assert "sk-very-secret" not in record and "MY_JUDGE_KEY" in record
    assert stats(server)["ground_truth_texts"] == 0  # labels are sent to the local server only, never to a real judge


def test_the_server_binds_loopback_only_and_faults_are_validated():
    with pytest.raises(UserError, match="loopback"):
        LocalJudgeServer(host="0.0.0.0")
    with pytest.raises(UserError):
        parse_fault_spec("429=lots")
    with pytest.raises(UserError):
        LocalJudgeServer(fail={"teapot": 0.5})
    assert parse_fault_spec("429=0.25,slow=0.1") == {"429": 0.25, "slow": 0.1}


def test_detection_replies_are_parsed_strictly():
    assert prompts.parse_detection("Sure: [3, 1, 3]", 5) == [1, 3]
    assert prompts.parse_detection("[]", 5) == []
    with pytest.raises(prompts.ReplyFormatError):
        prompts.parse_detection("examples one and two", 5)
    with pytest.raises(prompts.ReplyFormatError):
        prompts.parse_detection("[7]", 5)
    with pytest.raises(prompts.ReplyFormatError):
        prompts.parse_explanation("x" * 1000)


def test_judge_serve_command_serves_the_real_client_until_stopped(tmp_path):
    import subprocess
    import sys

    from helpers import REPO_ROOT

    from deeprobe_bench import cli
    from deeprobe_bench.judge import open_judge

    assert cli.main(["judge", "serve", "--host", "0.0.0.0"]) == 2  # loopback only: a user error
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeprobe_bench.cli", "-q", "judge", "serve", "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # "local judge server on http://127.0.0.1:<port>/v1 ..."
        url = line.split(" on ")[1].split()[0]
        with open_judge(url, None, cache_path=str(tmp_path / "c.sqlite")) as c:  # recognised as the local server
            assert c.config.local and c.config.model == "deeprobe-local-judge"
            assert 'concept "A"' in explain(c, toy_examples()).parsed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
