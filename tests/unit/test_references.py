"""The null reference: a constant and noise features that carry no information about the input."""

import torch

from deeprobe_bench import api
from deeprobe_bench.references import Null, NullConfig


def _null(seed: int = 0, **options):
    acts = torch.randn(30, 8, generator=torch.Generator().manual_seed(9))
    ctx = api.DiscoveryContext(None, "blocks.0.hook_resid_post", acts, None, seed, "null", api.Budget(None),
                               lambda it, **kw: it)  # fmt: skip
    return Null(NullConfig(**options)).discover(ctx)


def test_null_is_a_constant_then_noise_that_depends_on_the_tensor_not_the_rows():
    fs = _null()
    assert fs.meta["features"] == ["constant"] + [f"noise{j}" for j in range(9)]
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(1))
    a = fs.encoder(x)
    assert torch.equal(a[:, 0], torch.ones(400))
    assert torch.equal(fs.encoder(x.clone()), a)  # the same activations: the same values
    noise = a[:, 1:]
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05
    twice = torch.cat([x[:200], x[:200]])  # identical rows get independent draws
    b = fs.encoder(twice)[:, 1:]
    assert not torch.equal(b[:200], b[200:])
    assert abs(float(torch.corrcoef(torch.stack([b[:200].flatten(), b[200:].flatten()]))[0, 1])) < 0.1
    assert not torch.equal(_null(seed=1).encoder(x)[:, 1:], noise)  # the seed changes the draws


def test_null_options_choose_the_features():
    assert _null(features="constant").meta["features"] == ["constant"]
    noise = _null(features="noise", n_noise=3)
    assert noise.meta["features"] == ["noise0", "noise1", "noise2"] and len(noise) == 3
    assert noise.encoder(torch.randn(5, 8)).shape == (5, 3)
