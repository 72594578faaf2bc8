"""Threshold-sweep coverage and reconstruction on cases whose answers are known by construction."""

import torch

from deeprobe_bench.metrics.threshold_sweep import THRESHOLDS, coverage, reconstruction, sweep_counts


def _labels(n=400, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, c, (n,), generator=g)
    return torch.nn.functional.one_hot(cls, c).bool()


def test_thresholds_are_the_papers_grid():
    assert THRESHOLDS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_perfect_features_score_one():
    labels = _labels()
    acts = labels.float() * 3.0  # feature j fires exactly on concept j
    cov = coverage(acts, labels)
    assert cov.value == 1.0
    assert torch.all(cov.per_concept == 1.0)
    rec = reconstruction(acts, labels, acts, labels)
    assert rec.value == 1.0


def test_always_on_feature_scores_its_base_rate_f1():
    labels = _labels(n=1000, c=4)
    acts = torch.ones(1000, 1)
    cov = coverage(acts, labels)
    p = labels.float().mean(0)
    # An always-on feature has precision = base rate p and recall 1, so F1 = 2p / (1 + p).
    assert torch.allclose(cov.per_concept, 2 * p / (1 + p), atol=1e-6)
    counts = sweep_counts(acts, labels)
    assert torch.allclose(counts.precision()[0, 0], p)
    # Precision p < 0.95: never tagged, so reconstruction predicts nothing.
    assert reconstruction(acts, labels, acts, labels).value == 0.0


def test_threshold_sweep_picks_the_separating_threshold():
    labels = _labels(n=500, c=2)
    # concept 0 -> activation 1.0, concept 1 -> activation 0.5 on the same feature: only t >= 0.5 separates.
    acts = torch.where(labels[:, :1], torch.tensor(1.0), torch.tensor(0.5))
    cov = coverage(acts, labels[:, :1])
    assert cov.value == 1.0 and 0.5 <= cov.threshold < 1.0
    assert cov.per_threshold[0] < 1.0


def test_reconstruction_needs_ten_true_positives_and_precision():
    n = 200
    labels = torch.zeros(n, 1, dtype=torch.bool)
    labels[:9, 0] = True  # only 9 positives: a perfect feature cannot be tagged
    acts = labels.float()
    assert reconstruction(acts, labels, acts, labels).value == 0.0
    labels[:10, 0] = True
    acts = labels.float()
    assert reconstruction(acts, labels, acts, labels).value == 1.0


def test_reconstruction_generalises_from_label_to_test_split():
    lab_a, lab_b = _labels(seed=1), _labels(seed=2)
    noise = torch.rand(400, 4, generator=torch.Generator().manual_seed(3)) * 0.2
    rec = reconstruction(lab_a.float() + noise, lab_a, lab_b.float(), lab_b)
    assert rec.value == 1.0
    # A feature set that does not carry the concepts reconstructs nothing.
    rnd = torch.rand(400, 4, generator=torch.Generator().manual_seed(4))
    assert reconstruction(rnd, lab_a, rnd, lab_b).value < 0.2


def test_chunking_does_not_change_counts():
    labels = _labels(n=300, c=3)
    acts = torch.rand(300, 7, generator=torch.Generator().manual_seed(5))
    a, b = sweep_counts(acts, labels, chunk=17), sweep_counts(acts, labels, chunk=1000)
    assert torch.equal(a.tp, b.tp) and torch.equal(a.on, b.on)


def test_the_level_path_counts_what_the_dense_definition_counts():
    from deeprobe_bench.metrics.threshold_sweep import reconstruction_counts

    g = torch.Generator().manual_seed(7)
    lab, test = _labels(n=600, c=6, seed=1), _labels(n=500, c=6, seed=2)
    # features that track a concept (so that some are tagged, at some levels only) plus noise: every activation
    # positive (probes, neurons), or two thirds of them 0
    dense_l = torch.cat([lab.float() * 2 + torch.rand(600, 6, generator=g), torch.rand(600, 4, generator=g)], 1)
    dense_t = torch.cat([test.float() * 2 + torch.rand(500, 6, generator=g), torch.rand(500, 4, generator=g)], 1)
    # 60 concepts of about 1.7% each: latents that fire only where one holds are under 2% dense
    lab60, test60 = _labels(n=1200, c=60, seed=3), _labels(n=1000, c=60, seed=4)
    sparse_l = lab60[:, :10].float() * (1 + torch.rand(1200, 10, generator=g))
    sparse_t = test60[:, :10].float() * (1 + torch.rand(1000, 10, generator=g))
    cases = ((dense_l, lab, dense_t, test), (dense_l * (dense_l > 1.5), lab, dense_t * (dense_t > 1.5), test),
             (sparse_l, lab60, sparse_t, test60))  # fmt: skip
    for acts_l, lab_c, acts_t, test_c in cases:
        fast = reconstruction_counts(acts_l, lab_c, acts_t, test_c, min_true_positives=5)
        # descending thresholds take the dense definition (one boolean product per threshold)
        slow = reconstruction_counts(acts_l, lab_c, acts_t, test_c, thresholds=tuple(reversed(THRESHOLDS)),
                                     min_true_positives=5)  # fmt: skip
        assert fast.tags.any() and torch.equal(fast.tags, slow.tags.flip(0))
        assert torch.equal(fast.tp, slow.tp.flip(0)) and torch.equal(fast.pred, slow.pred.flip(0))
