import pytest
import torch

from deeprobe_bench.interventions import apply_projection, intervene_at_positions, projector
from deeprobe_bench.metrics import faithfulness as faith


def test_projector_spans_and_is_idempotent():
    d = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    p = projector(torch.cat([d, d[:1] * 2]))  # a repeated direction does not add rank
    assert torch.allclose(p @ p, p, atol=1e-5)
    assert round(float(torch.trace(p))) == 3
    assert torch.allclose(p @ d.T, d.T, atol=1e-5)
    assert torch.equal(projector(torch.zeros(0, 8)), torch.zeros(8, 8))


def test_keep_and_ablate_extremes():
    x, mean = torch.randn(5, 8), torch.randn(5, 8)
    full, empty = torch.eye(8), torch.zeros(8, 8)
    assert torch.allclose(apply_projection(x, mean, full, "keep"), x, atol=1e-6)
    assert torch.allclose(apply_projection(x, mean, empty, "keep"), mean)
    assert torch.allclose(apply_projection(x, mean, full, "ablate"), mean, atol=1e-6)
    # keep S + ablate S recombine: keep(x) - mean + ablate(x) = x
    p = projector(torch.randn(2, 8))
    assert torch.allclose(apply_projection(x, mean, p, "keep") - mean + apply_projection(x, mean, p, "ablate"), x, atol=1e-5)


def test_intervention_only_touches_named_positions():
    resid = torch.randn(2, 6, 4)
    pos = torch.tensor([[1, 5], [0, 2]])
    mean = torch.zeros(2, 2, 4)
    out = intervene_at_positions(resid, pos, mean, torch.zeros(4, 4), "keep")
    for b in range(2):
        for p in range(6):
            expected = torch.zeros(4) if p in pos[b].tolist() else resid[b, p]
            assert torch.allclose(out[b, p], expected)


def test_faithfulness_normalisation_and_area():
    assert faith.normalized(3.0, 1.0, 5.0) == 0.5
    assert faith.area([1, 1, 1]) == 1.0
    assert faith.area([0, 1]) == 0.5
    calls = []
    values = faith.curve(lambda k: calls.append(k) or k / 10, n_features=5, ks=(1, 2, 5, 10, 20))
    assert values == [0.1, 0.2, 0.5, 0.5, 0.5] and calls == [1, 2, 5]


def test_span_rank_counts_dimensions_not_directions():
    d = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    redundant = torch.cat([d, d[:1] + 2 * d[1:2], 3 * d])  # 7 directions spanning 3 dimensions
    assert faith.span_rank(redundant) == 3
    assert faith.prefix_ranks(redundant, [0, 3, 4, 1, 2, 5, 6]) == [1, 2, 2, 2, 3, 3, 3]  # row 4 = 3 x row 0
    assert faith.span_rank(torch.zeros(0, 16)) == 0


def test_stream_curve_is_over_the_fraction_kept_with_a_full_endpoint():
    d = torch.eye(100)
    curve = faith.stream_curve(lambda k: k / 100, d, list(range(100)))
    assert curve.k == [1, 2, 5, 10, 20, 50, None] and curve.f[-1] == 1.0
    assert curve.f[:-1] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    perfect = faith.stream_curve(lambda k: 1.0, d, list(range(100)))
    assert perfect.cpr == pytest.approx(1.0)
    # a set spanning 3 dimensions plateaus at its whole-set value until the endpoint
    small = faith.stream_curve(lambda k: 0.3 * k, d[:3], [0, 1, 2])
    assert small.k[:-1] == [1, 2, 3, 3, 3, 3] and small.f[-2] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        faith.stream_curve(lambda k: 1.0, d, [0], fractions=(0.1, 0.5))
