"""Calibrated concept metrics (deeprobe_bench.metrics.concepts) on cases whose answer is known by construction."""

import pytest
import torch

from deeprobe_bench.metrics import concepts as C


def _labels(n: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.linspace(0.02, 0.45, c)
    return torch.rand(n, c, generator=g) < p


@pytest.fixture(scope="module")
def splits():
    return _labels(3000, 12, 0), _labels(3000, 12, 1)


def test_perfect_features_score_one(splits):
    lab, test = splits
    m = C.concept_metrics(lab.float(), lab, test.float(), test)
    assert m["coverage"].value == pytest.approx(1.0)
    assert m["reconstruction"].value == pytest.approx(1.0)
    assert m["coverage_n_scored"].value == 12


def test_constant_and_noise_score_chance(splits):
    lab, test = splits
    const = C.concept_metrics(torch.ones(len(lab), 1), lab, torch.ones(len(test), 1), test)
    g = torch.Generator().manual_seed(2)
    noise = C.concept_metrics(torch.randn(len(lab), 4, generator=g), lab, torch.randn(len(test), 4, generator=g), test)
    for m in (const, noise):
        assert m["coverage"].value <= 0.02
        assert m["reconstruction"].value == 0.0
    # the paper's uncorrected coverage rewards the always-on feature: 2p / (1 + p) per concept
    p = test.float().mean(0)
    assert const["coverage_paper"].value == pytest.approx(float((2 * p / (1 + p)).mean()), abs=1e-5)


def test_chance_correction_formula():
    f1 = torch.tensor([0.5, 1.0, 0.1])
    pos = torch.tensor([100.0, 100.0, 100.0])
    c = 2 * 0.25 / 1.25  # p = 100 / 400
    out = C.corrected(f1, pos, 400)
    assert out.tolist() == pytest.approx([(0.5 - c) / (1 - c), 1.0, 0.0])


def test_invariant_to_monotone_rescaling(splits):
    lab, test = splits
    g = torch.Generator().manual_seed(3)
    a = lab.float() * 2 + 0.8 * torch.randn(lab.shape, generator=g)
    b = test.float() * 2 + 0.8 * torch.randn(test.shape, generator=g)
    m1 = C.concept_metrics(a, lab, b, test)
    m2 = C.concept_metrics(torch.exp(a / 4), lab, torch.exp(b / 4), test)  # strictly increasing, no saturation
    for k in ("coverage", "reconstruction"):
        assert m1[k].value == pytest.approx(m2[k].value, abs=1e-6)
        assert 0.05 < m1[k].value < 0.999


def test_concepts_absent_from_a_split_are_not_scored(splits):
    lab, test = splits
    test = test.clone()
    test[:, 0] = False  # concept 0 never occurs in the test split
    m = C.coverage(lab.float(), lab, test.float(), test)
    assert m.n_scored == 11
    assert torch.isnan(m.per_concept[0])
    assert m.value == pytest.approx(1.0)


def test_choice_is_made_on_the_label_split_not_the_scored_one():
    # feature 0 is perfect on the label split and useless on the test split; feature 1 the other way round:
    # a choice made on the label split picks feature 0, so the test score is 0, not 1.
    lab = _labels(2000, 1, 4)
    test = _labels(2000, 1, 5)
    g = torch.Generator().manual_seed(6)
    label_acts = torch.stack([lab[:, 0].float(), torch.rand(2000, generator=g)], 1)
    test_acts = torch.stack([torch.rand(2000, generator=g), test[:, 0].float()], 1)
    assert C.coverage(label_acts, lab, test_acts, test).value < 0.05


def test_quantile_thresholds_and_levels_equal_their_direct_definitions():
    """One sort per column and searchsorted give exactly torch.quantile('lower') and the broadcast count."""
    gen = torch.Generator().manual_seed(3)
    for n in (1, 2, 7, 1001):
        acts = torch.randn(n, 40, generator=gen)
        acts[:, :10] = acts[:, :10].clamp(min=0)  # ties at 0, as for SAE latents
        acts[:, 10:12] = 1.5  # constant features
        q = torch.tensor([1.0 - r for r in C.FIRING_RATES], dtype=torch.float64)
        direct = torch.cummax(torch.quantile(acts.double(), q, dim=0, interpolation="lower").float(), dim=0).values
        th = C.quantile_thresholds(acts, chunk=16)
        assert torch.equal(th, direct)
        test = torch.randn(300, 40, generator=gen)
        test[:5] = th[3]  # values equal to a threshold are not above it
        counted = (test.unsqueeze(1) > th.unsqueeze(0)).sum(1).float()
        assert torch.equal(C.levels(test, th, chunk=64), counted)



def test_a_subset_read_from_the_whole_set_s_label_counts_scores_as_computed_alone(splits):
    lab_y, test_y = splits  # the labels themselves are perfect features; five noise features join them
    feats = torch.cat([lab_y.float(), torch.rand(len(lab_y), 5, generator=torch.Generator().manual_seed(3))], 1)
    tfeats = torch.cat([test_y.float(), torch.rand(len(test_y), 5, generator=torch.Generator().manual_seed(4))], 1)
    lv_l, lv_t = C.split_levels(feats, tfeats)
    counts = C.label_counts(lv_l, lab_y)
    for idx in ([0], [1, 2], list(range(feats.shape[1])), [feats.shape[1] - 1, 0]):
        i = torch.tensor(idx)
        alone = C.reconstruction_from_levels(lv_l[:, i], lab_y, lv_t[:, i], test_y)
        shared = C.reconstruction_from_levels(lv_l[:, i], lab_y, lv_t[:, i], test_y, counts=counts.features(i))
        assert (alone.value, alone.level) == (shared.value, shared.level)
        assert torch.equal(alone.counts.tags, shared.counts.tags) and torch.equal(alone.counts.tp, shared.counts.tp)
        cov = C.coverage_from_levels(lv_l[:, i], lab_y, lv_t[:, i], test_y)
        cov_shared = C.coverage_from_levels(lv_l[:, i], lab_y, lv_t[:, i], test_y, counts=counts.features(i))
        assert cov.value == cov_shared.value and torch.equal(cov.feature, cov_shared.feature)
    assert C.reconstruction_from_levels(lv_l, lab_y, lv_t, test_y).value > 0.9  # the perfect features are in
    with pytest.raises(ValueError, match="label_counts are for"):
        C.reconstruction_from_levels(lv_l[:, :2], lab_y, lv_t[:, :2], test_y, counts=counts)
