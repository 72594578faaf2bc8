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
