"""FeatureSet subsets: the same values as the whole set's encoder, computed once per input."""

import torch

from deeprobe_bench.api import FeatureSet


def _counting_set(n: int = 6, d: int = 4):
    w = torch.randn(d, n, generator=torch.Generator().manual_seed(0))
    calls = []

    def encoder(x):
        calls.append(x)
        return torch.relu(x @ w)

    fs = FeatureSet("blocks.0.hook_resid_post", torch.randn(n, d), encoder, scores=torch.arange(n, 0, -1).float())
    return fs, w, calls


def test_subsets_slice_one_encoding_of_the_same_input():
    fs, w, calls = _counting_set()
    x = torch.randn(50, 4)
    full = torch.relu(x @ w)
    for idx in ([0], [3, 1], [5, 4, 2]):
        assert torch.equal(fs.subset(idx).encoder(x), full[:, idx])
    assert torch.equal(fs.chosen().encoder(x), full)
    assert len(calls) == 1  # one encoding for four subsets
    y = torch.randn(50, 4)
    assert torch.equal(fs.subset([2]).encoder(y), torch.relu(y @ w)[:, [2]])
    assert len(calls) == 2  # another input is encoded again


def test_an_input_changed_in_place_is_encoded_again():
    fs, w, calls = _counting_set()
    x = torch.randn(10, 4)
    fs.subset([0]).encoder(x)
    x.mul_(2)
    assert torch.equal(fs.subset([0, 1]).encoder(x), torch.relu(x @ w)[:, [0, 1]])
    assert len(calls) == 2


def test_an_output_that_requires_grad_is_not_kept():
    w = torch.randn(4, 3, requires_grad=True)
    calls = []

    def encoder(x):
        calls.append(1)
        return x @ w

    fs = FeatureSet("blocks.0.hook_resid_post", torch.randn(3, 4), encoder)
    x = torch.randn(5, 4)
    fs.subset([0]).encoder(x).sum().backward()
    fs.subset([1]).encoder(x).sum().backward()  # a kept graph would fail the second backward
    assert len(calls) == 2
