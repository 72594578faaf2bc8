"""The result record's JSON Schema (deeprobe_bench/result.schema.json): written results pass it, broken ones
are skipped on load with the schema's complaint."""

from __future__ import annotations

import json
import logging

from deeprobe_bench.results import RESULT_SCHEMA_PATH, load_results, schema_errors, write_result


def test_every_written_result_passes_the_schema_and_broken_ones_are_skipped_on_load(tmp_path, toys, caplog):
    good = toys.make_result("m", 0, recovery=0.5)
    good.details = {"anything": [1, 2]}
    write_result(good, tmp_path / "good.json")
    assert schema_errors(json.loads((tmp_path / "good.json").read_text())) == []
    assert json.loads(RESULT_SCHEMA_PATH.read_text())["$schema"].endswith("2020-12/schema")
    cases = {
        "seed": -1,  # seeds are 0 .. 2**32 - 1
        "status": "maybe",
        "metrics": {"recovery": {"value": "high"}},
        "samples": {"n_train": 1, "n_test": 1, "limit": 0},
    }
    for i, (key, value) in enumerate(cases.items()):
        data = {**good.to_dict(), key: value}
        (tmp_path / f"bad{i}.json").write_text(json.dumps(data))
        assert schema_errors(data), key
    (tmp_path / "newer.json").write_text(json.dumps({**good.to_dict(), "seed": 1, "a_future_field": {"x": 1}}))
    with caplog.at_level(logging.WARNING):
        loaded = load_results(tmp_path)
    assert sorted(r.seed for r in loaded) == [0, 1]  # good.json and newer.json (unknown fields are allowed)
    schema_lines = [r.getMessage() for r in caplog.records if "schema: " in r.getMessage()]
    assert len(schema_lines) == 4 and any("seed: -1 is less than the minimum of 0" in m for m in schema_lines)
