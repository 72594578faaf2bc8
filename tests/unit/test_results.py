"""results: the record, stable paths, atomic writes, tolerant loading."""

from __future__ import annotations

import json
import logging
import os

import pytest
from helpers import ToyRandomConfig, make_result

from deeprobe_bench import results
from deeprobe_bench.results import Result


def test_round_trip_and_unknown_fields():
    r = make_result("toy-random", seed=2, recovery=0.5)
    d = r.to_dict()
    assert d["schema_version"] == 1 and d["status"] == "ok"
    assert Result.from_dict(json.loads(json.dumps(d))) == r
    newer = {**d, "a_field_from_the_future": 1}
    assert Result.from_dict(newer) == r


def test_from_dict_fills_missing_fields_and_rejects_non_objects():
    r = Result.from_dict({"task": "toy", "method": "m"})
    assert r.status == "ok" and r.metrics == {} and r.samples["limit"] is None
    with pytest.raises(ValueError, match="JSON object"):
        Result.from_dict([1, 2])


def test_to_dict_handles_tensors_and_nan():
    torch = pytest.importorskip("torch")
    r = make_result(x=float("nan"))
    r.details = {"t": torch.arange(3), "s": torch.tensor(1.5), "nan": float("inf"), "tup": (1, 2)}
    d = r.to_dict()
    assert d["details"] == {"t": [0, 1, 2], "s": 1.5, "nan": None, "tup": [1, 2]}
    assert d["metrics"]["x"]["value"] is None
    json.dumps(d, allow_nan=False)


def test_limited_flag():
    r = make_result()
    assert not r.limited
    r.samples["limit"] = 5
    assert r.limited


def test_config_label_shows_only_non_defaults():
    assert results.config_label("toy-random", ToyRandomConfig()) == "toy-random"
    cfg = ToyRandomConfig(arch="b", dims=(1, 2), normalize=False)
    assert results.config_label("toy-random", cfg) == "toy-random[arch=b,normalize=false,dims=(1,2)]"
    assert results.config_label("x", None) == "x"


def test_result_path_is_stable_and_safe(tmp_path):
    p = results.result_path(tmp_path, "ioi", "ioi-mini", "sae[arch=topk]", 3)
    assert p == tmp_path / "ioi" / "ioi-mini" / "sae_arch=topk" / "seed3.json"
    assert p == results.result_path(tmp_path, "ioi", "ioi-mini", "sae[arch=topk]", 3)
    limited = results.result_path(tmp_path, "ioi", "ioi-mini", "sae", 3, limit=10)
    assert limited.name == "seed3-limit10.json"
    weird = results.result_path(tmp_path, "../t", "a/b", "m x", 0)
    assert weird.relative_to(tmp_path).parts == ("t", "a_b", "m_x", "seed0.json")
    assert results.sanitize("..") == "_"
    long = results.sanitize("m[" + "k=v," * 100 + "]")
    assert len(long) <= 96 and long != results.sanitize("m[" + "k=w," * 100 + "]")


def test_write_result_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "b" / "seed0.json"
    results.write_result(make_result(recovery=0.1), path)
    results.write_result(make_result(recovery=0.2), path)
    assert results.read_result(path).metric("recovery") == 0.2
    assert sorted(os.listdir(path.parent)) == ["seed0.json"]


def test_interrupted_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "seed0.json"
    results.write_result(make_result(recovery=0.1), path)

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        results.write_result(make_result(recovery=0.9), path)
    assert os.listdir(tmp_path) == ["seed0.json"]
    assert results.read_result(path).metric("recovery") == 0.1


def test_load_results_skips_truncated_file_with_warning(tmp_path, caplog):
    good = results.write_result(make_result(recovery=0.3), tmp_path / "t" / "m" / "seed0.json")
    text = good.read_text()
    bad = tmp_path / "t" / "m" / "seed1.json"
    bad.write_text(text[: len(text) // 2])
    other = tmp_path / "t" / "m" / "seed2.json"
    other.write_text(json.dumps({"hello": 1}))
    wrong = tmp_path / "t" / "m" / "seed3.json"
    wrong.write_text(json.dumps({**make_result().to_dict(), "metrics": {"x": "high"}}))
    with caplog.at_level(logging.WARNING, logger="deeprobe_bench"):
        loaded = results.load_results(tmp_path)
    assert [r.metric("recovery") for r in loaded] == [0.3]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert str(bad) in messages and str(other) in messages
    assert f"{wrong}: not a valid deeprobe-bench result (metric 'x'" in messages
    assert bad.exists() and other.exists() and wrong.exists()  # never deleted


def test_load_results_of_missing_dir_is_empty(tmp_path):
    assert results.load_results(tmp_path / "nope") == []


def test_is_finished(tmp_path):
    path = tmp_path / "seed0.json"
    assert not results.is_finished(path)
    results.write_result(make_result(), path)
    assert results.is_finished(path)
    err = make_result()
    err.status, err.error = "error", "boom"
    results.write_result(err, path)
    assert not results.is_finished(path)
    path.write_text("{")
    assert not results.is_finished(path)


def test_provenance():
    v = results.library_versions()
    assert set(v) == {"python", "torch", "transformer_lens", "sae_lens", "deeprobe_bench"}
    assert v["deeprobe_bench"]
    commit, dirty = results.git_info()
    assert (commit is None and dirty is None) or (len(commit) == 40 and isinstance(dirty, bool))
    assert results.now_iso().endswith("+00:00")
