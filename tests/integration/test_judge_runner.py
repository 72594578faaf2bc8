"""Cells with a judge, end to end through the local judge server over real HTTP.

The runner side runs on a toy task with judge examples (milliseconds per cell); the IOI examples and the
``rlaif`` method on the tiny IOI model are covered at the end.
"""

import helpers
import pytest
import torch
from helpers import HOOK, ToySubject, ToyTask, tiny_ioi_subject

from deeprobe_bench import api, registry
from deeprobe_bench.judge import JudgeClient, LocalJudgeServer, local_config
from deeprobe_bench.runner import run_grid


class ToyJudgeTask(ToyTask):
    """The toy task plus judge examples: one row per example, labelled with its hidden concepts."""

    name = "toy-j"

    def prepare(self, subject, seed, limit=None):
        data = super().prepare(subject, seed, limit)
        x = data.train_acts
        g = torch.Generator().manual_seed(seed)
        x_eval = 2 * torch.randn(64, x.shape[1], generator=g).clamp(min=0) @ torch.eye(x.shape[1])
        concepts = [f"c{i}" for i in range(x.shape[1])]

        def examples(acts, split):
            texts = [api.ExampleSet.mark(f"{split} row {i} reads ", "x") for i in range(len(acts))]
            return api.ExampleSet(texts, acts, acts > 0.5, concepts, name=f"toy {split}")

        data.examples = {"train": examples(x, "train"), "eval": examples(x_eval, "eval")}
        return data


def toy_subject():
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    subject = ToySubject("toy")
    subject.saes[HOOK] = TopKSAE(TopKSAEConfig(d_in=helpers.D_MODEL, d_sae=16, k=4))
    return subject


@pytest.fixture
def toy(toys):
    registry.register_task(ToyJudgeTask)
    return toy_subject()


@pytest.fixture
def server():
    with LocalJudgeServer(slow_s=2.0) as s:
        yield s


def judge(server, cache, **kw):
    kw.setdefault("timeout_s", 0.5)
    return JudgeClient(local_config(server.base_url, cache_path=str(cache), **kw), sleep=lambda s: None)


def run(subject, tmp_path, client, methods=("toy-random", "toy-diffmean"), **kw):
    return run_grid("toy-j", "toy", list(methods), [0], results_dir=str(tmp_path / "results"), progress=False,
                    subject_loader=lambda name: subject, judge=client, **kw)  # fmt: skip


def test_a_cold_run_calls_the_judge_and_the_same_run_again_makes_no_call(toy, server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    cold = run(toy, tmp_path, judge(server, cache))
    for r in cold:
        assert r.ok, r.error
        assert 0.0 <= r.metric("judge_score") <= 1.0
        usage = r.details["judge"]["usage"]
        assert usage["calls"] > 0 and r.judge_tokens == usage["tokens"] > 0
        assert r.details["judge"]["model"] == "deeprobe-local-judge" and r.details["judge"]["local_server"]
        assert r.details["autointerp"]["scored"] == 3
    warm = run(toy, tmp_path, judge(server, cache), force=True)
    for c, w in zip(cold, warm, strict=True):
        assert w.details["judge"]["usage"]["calls"] == 0 and w.judge_tokens == 0
        assert w.details["judge"]["usage"]["cache_hits"] == c.details["judge"]["usage"]["calls"]
        assert w.metric("judge_score") == c.metric("judge_score")
    # Without --force a finished cell with a judge record is skipped; one without it is re-run for the judge.
    plain = run(toy, tmp_path / "plain", None, methods=("toy-random",))
    assert "judge_score" not in plain[0].metrics
    again = run(toy, tmp_path / "plain", judge(server, cache), methods=("toy-random",))
    assert "judge_score" in again[0].metrics


def test_injected_faults_end_in_retries(toy, server, tmp_path):
    client = judge(server, tmp_path / "judge.sqlite", max_retries=6, max_concurrency=1)
    server.faults.push(["429", "500", "slow", "garbage", "badjson", "503"])
    (r,) = run(toy, tmp_path, client, methods=("toy-random",))
    assert r.ok, r.error
    reasons = r.details["judge"]["usage"]["retry_reasons"]
    assert reasons == {"429": 1, "500": 1, "503": 1, "timeout": 1, "malformed reply": 1, "malformed response": 1}


def test_a_judge_that_keeps_failing_keeps_the_cells_other_metrics(toy, server, tmp_path):
    client = judge(server, tmp_path / "judge.sqlite", max_retries=1, max_concurrency=1)
    server.faults.push(["500", "500"])  # the first request of the first cell fails twice: retries exhausted
    first, second = run(toy, tmp_path, client)
    plain = run(toy, tmp_path / "plain", None, methods=("toy-random",))[0]
    assert first.ok and first.metric("recovery") == plain.metric("recovery")  # the task's metrics are kept
    assert first.metric("judge_score") is None and "judge failed: JudgeError" in first.metrics["judge_score"]["error"]
    assert "judge failed: JudgeError" in first.details["judge_error"]["error"]
    assert first.details["judge"]["usage"]["errors"] == 1
    assert second.ok and second.metric("judge_score") is not None
    # the judge is asked again on the next run (it answers now); the stored second cell is reused
    again = run(toy, tmp_path, client)
    assert again[0].metric("judge_score") is not None and "judge_error" not in again[0].details
    assert again[1].started_at == second.started_at


def test_rlaif_runs_with_the_objective_and_reports_before_and_after(toy, server, tmp_path):
    client = judge(server, tmp_path / "judge.sqlite")
    opts = {"n": "4", "steps": "2", "population": "2", "rank": "4"}
    (r,) = run(toy, tmp_path, client, methods=("rlaif",), method_options=opts)
    assert r.ok, r.error
    assert r.supervision == "judge" and r.objective_calls > 0 and "judge_score" in r.metrics
    meta = r.details["features"]["meta"]
    assert [h["step"] for h in meta["history"]] == [0, 1, 2]
    assert meta["train_before"]["step"] == 0 and meta["train_after"]["step"] == 2
    assert len(meta["latents"]) == 4 and r.metric("n_features") == 4
    (before,) = run(toy, tmp_path, client, methods=("rlaif",), method_options={**opts, "steps": "0"})
    assert before.ok and before.details["features"]["meta"]["train_after"]["step"] == 0
    assert before.details["features"]["meta"]["latents"] == meta["latents"]  # the same latents, not fine-tuned
    shipped = toy.saes[HOOK].W_dec.detach().clone()
    run(toy, tmp_path, client, methods=("rlaif",), method_options=opts, force=True)
    assert torch.equal(toy.saes[HOOK].W_dec, shipped)  # a copy is fine-tuned, never the subject's SAE


def test_ioi_gives_marked_judge_examples_with_their_concepts(tmp_path):
    import os

    from deeprobe_bench.api import parse_config
    from deeprobe_bench.tasks.ioi import IOITask

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path / "cache"))
    subject = tiny_ioi_subject(tmp_path / "tok")
    task = IOITask(parse_config(IOITask.Config, {"n_train": "16", "n_val": "16", "n_test": "8", "objective_batch": "8"}))
    data = task.prepare(subject, seed=0)
    for split, ds in (("train", data.extra["splits"]["train"].dataset), ("eval", data.extra["splits"]["val"].dataset)):
        ex = data.examples[split]
        assert len(ex) == len(ds) and ex.acts.shape == (len(ds), subject.model.cfg.d_model)
        for i in range(3):
            row = ds[i]
            assert ex.texts[i].endswith("<<to>>") and ex.texts[i].replace("<<to>>", "to") == row["prompt"]
            order = "ABB" if row["order"] == "ABBA" else "BAB"
            assert set(ex.concepts_of(i)) == {f"IO={row['io']}", f"S={row['s']}", f"Pos={order}"}
    assert torch.equal(data.examples["train"].acts, data.train_acts)  # END activations, as methods see them
