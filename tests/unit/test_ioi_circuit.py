"""The IOI task scores heads against a known circuit when the model's card names one (no model names in the task)."""

from __future__ import annotations

from types import SimpleNamespace

from deeprobe_bench.subject import GPT2_SMALL
from deeprobe_bench.tasks.ioi import metrics as ioi_metrics


def test_the_circuit_comes_from_the_model_card():
    assert GPT2_SMALL.card == {"circuits": {"ioi": "wang2022"}}
    assert ioi_metrics.known_circuit(SimpleNamespace(card=GPT2_SMALL.card)) is ioi_metrics.WANG2022_CIRCUIT
    assert ioi_metrics.known_circuit(SimpleNamespace(card={"task": {"hook_name": "blocks.0.hook_resid_post"}})) is None
    assert ioi_metrics.known_circuit(SimpleNamespace(card={"circuits": {"ioi": "unknown-paper"}})) is None
    assert ioi_metrics.known_circuit(SimpleNamespace()) is None
    toy = {"movers": ((1, 0), (1, 1))}
    assert ioi_metrics.head_precision_recall([[1, 0], [0, 0]], toy) == (0.5, 0.5)
