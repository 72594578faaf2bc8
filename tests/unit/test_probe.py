"""``probe``: its activation is a calibrated probability, even for a rare concept (the prior correction)."""

from __future__ import annotations

import torch

from deeprobe_bench.api import Budget, DiscoveryContext
from deeprobe_bench.baselines.probe import Probe


def test_probe_activation_is_calibrated_for_a_rare_concept():
    gen = torch.Generator().manual_seed(0)
    n, d = 4000, 4
    y = torch.rand(n, generator=gen) < 0.1  # base rate 0.1
    x = torch.randn(n, d, generator=gen)
    x[:, 0] += 1.5 * y.float()  # the concept shifts one coordinate: overlapping classes, known Bayes posterior
    ctx = DiscoveryContext(None, "h", x, None, 0, "labels", Budget(None), lambda it, **kw: it,
                           labels=y[:, None], concepts=["c"])  # fmt: skip
    fs = Probe().discover(ctx)
    p = fs.encoder(x)[:, 0]
    # calibration in the large: the mean probability is the base rate (a balanced fit alone gives about 0.3)
    assert abs(float(p.mean()) - float(y.float().mean())) < 0.02
    # calibration at the top: rows the probe calls >= 0.5 are positive about as often as it says
    top = p >= 0.5
    assert top.sum() > 20
    assert abs(float(y[top].float().mean()) - float(p[top].mean())) < 0.1
    # the Bayes posterior of this construction, p(y | x0) = sigmoid(1.5 x0 - 1.125 + log(1/9))
    bayes = torch.sigmoid(1.5 * x[:, 0] - 1.125 + torch.log(torch.tensor(0.1 / 0.9)))
    assert float((p - bayes).abs().mean()) < 0.03


def _anisotropic_data(n=600, d=6, k=3, seed=1):
    """Inputs with large per-dimension offsets and scales (as a residual stream has), labels from known
    logistic models with overlapping classes (a unique, finite L2 optimum)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 6.0, d)
    x = rng.normal(size=(n, d)) * scale + rng.normal(scale=5.0, size=d)
    w = rng.normal(size=(k, d)) / scale
    z = (x - x.mean(0)) @ w.T + np.array([-1.5, 0.0, 1.0])[:k]
    y = rng.random((n, k)) < 1 / (1 + np.exp(-z))
    return x, y


def test_fit_probes_minimises_scikit_learns_problem_on_raw_activations():
    """Version 3 solves version 2's problem (balanced L2 LogisticRegression on the raw activations): its
    folded direction and bias match scikit-learn's per-concept fit, converged tightly, on raw inputs,
    with either solver (600 rows x 6: Newton; 60 rows x 20, fewer rows than 4x the width: lbfgs)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from deeprobe_bench.baselines.probe import fit_probes

    for (x, y), solver in ((_anisotropic_data(), "newton-cholesky"), (_anisotropic_data(n=60, d=20), "lbfgs")):
        for C in (1.0, 0.01):  # 0.01: the penalty matters, so a wrong rescaling of C would show
            w, b, info = fit_probes(torch.tensor(x), torch.tensor(y), C=C, tol=1e-8)
            assert info["converged"] and info["solver"] == solver
            for j in range(y.shape[1]):
                ref = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=10000).fit(x, y[:, j])
                np.testing.assert_allclose(w[j].numpy(), ref.coef_[0], rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(float(b[j]), ref.intercept_[0], rtol=1e-4, atol=1e-5)


def test_fit_probes_columns_are_independent_and_invariant_to_affine_rescaling():
    """A column fitted with others (in parallel threads) equals it fitted alone; fitting on a * x + c
    (scalar a) gives the same logits on the transformed inputs once C is C / a^2 (the preconditioning's
    identity)."""
    from deeprobe_bench.baselines.probe import fit_probes

    x, y = _anisotropic_data()
    x, y = torch.tensor(x), torch.tensor(y)
    w, b, _ = fit_probes(x, y, tol=1e-8, n_jobs=2)
    w1, b1, _ = fit_probes(x, y[:, 1:2], tol=1e-8)
    torch.testing.assert_close(w[1:2], w1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b[1:2], b1, rtol=1e-5, atol=1e-6)
    a, c = 7.0, torch.linspace(-30, 30, x.shape[1], dtype=torch.float64)
    w2, b2, _ = fit_probes(a * x + c, y, C=1.0 / a**2, tol=1e-8)
    torch.testing.assert_close((a * x + c) @ w2.T + b2, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_probe_activation_is_version_2s_calibrated_probability():
    """The method's activation is version 2's: sigmoid(balanced-fit logit + log prior odds), with the
    balanced fit from scikit-learn on the raw activations; ranking is the F1 at the balanced 0.5."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    x, y = _anisotropic_data()
    y[:, 2] = False
    y[:3, 2] = True  # only 3 positives: still probed
    y_none = np.zeros((len(x), 1), bool)
    y_none[0] = True  # 1 positive: skipped
    yy = np.concatenate([y, y_none], 1)
    xt = torch.tensor(x, dtype=torch.float32)
    ctx = DiscoveryContext(None, "h", xt, None, 0, "labels", Budget(None), lambda it, **kw: it,
                           labels=torch.tensor(yy), concepts=["a", "b", "c", "d"])  # fmt: skip
    fs = Probe().discover(ctx)
    assert fs.labels == ["a", "b", "c"]
    p = fs.encoder(xt)
    xs = xt.double().numpy()
    for j in range(3):
        ref = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-10, max_iter=10000).fit(xs, y[:, j])
        prior = y[:, j].mean()
        p_ref = 1 / (1 + np.exp(-(ref.decision_function(xs) + np.log(prior / (1 - prior)))))
        assert np.abs(p[:, j].numpy() - p_ref).max() < 2e-3
        assert abs(float(fs.scores[j]) - f1_score(y[:, j], ref.predict(xs))) < 0.01
