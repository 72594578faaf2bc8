"""Each stage of the ``contrastive`` pipeline on constructed cases whose answer is known."""

from types import SimpleNamespace

import pytest
import torch

from deeprobe_bench.api import Budget, DiscoveryContext, UserError
from deeprobe_bench.baselines.contrastive import (
    Contrastive,
    cluster_latents,
    code_deltas,
    important_positions,
    least_squares_weights,
    pair_deltas,
    select_latents,
)
from deeprobe_bench.progress import progress

D, D_SAE = 16, 16


def test_pair_deltas_and_important_positions_find_the_planted_positions():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(4, 7, D, generator=g)
    lengths = torch.tensor([7, 7, 5, 5])  # rows 0/1 and 2/3 are pairs of different lengths
    planted = torch.randn(D, generator=g)
    pos = acts.clone()
    for row, n in ((0, 7), (2, 5)):
        pos[row] = acts[row + 1]  # the partner's activations ...
        pos[row, n - 1] += 3 * planted  # ... plus the planted delta at the last token (offset 0)
        pos[row, n - 3] += 1 * planted  # ... and a smaller one two tokens before (offset 2)
    both = torch.cat([pos[[0, 2]], acts[[1, 3]]])
    deltas, index = pair_deltas(both, lengths[[0, 2, 1, 3]], torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert deltas.shape == (2, 6, D)  # the longest pair's non-BOS length
    assert torch.allclose(deltas[:, 0], 3 * planted.expand(2, D), atol=1e-5)
    assert torch.allclose(deltas[:, 1], torch.zeros(2, D), atol=1e-5)
    assert index[1, 4:].eq(-1).all() and index[0, 0].tolist() == [6, 6]  # the short pair has 4 tokens
    keep = important_positions(deltas, 0.2)
    assert keep[:, 0].all() and keep[:, 2].all() and int(keep.sum()) == 4
    keep = important_positions(deltas, 0.5)
    assert keep[:, 0].all() and int(keep.sum()) == 2


def test_select_latents_keeps_consistent_sparse_latents_only():
    g = torch.Generator().manual_seed(1)
    m = 40
    codes = torch.zeros(m, D_SAE)
    codes[:, 3] = 2 + torch.rand(m, generator=g)  # consistent, sparse: kept
    codes[:, 7] = 0.5  # consistent, sparse: kept, ranked after 3
    codes[:, 5] = torch.randn(m, generator=g)  # sign flips across pairs: dropped
    codes[:, 9] = 4.0  # consistent but dense: dropped
    codes[: m // 4, 11] = 1.0  # active in only a quarter of the deltas: dropped
    density = torch.full((D_SAE,), 0.05)
    density[9] = 0.9
    latents, consistency, relaxed = select_latents(codes, density, 0.6, 0.25, 8)
    assert latents == [3, 7] and not relaxed
    assert consistency[3] == 1.0 and consistency[11] == pytest.approx(0.25)
    # nothing passes: the single best latent is kept, and said so
    latents, _, relaxed = select_latents(codes, density, 1.01, 0.25, 8)
    assert relaxed and latents == [9]


def test_cluster_latents_separates_latents_that_move_together():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    profiles = torch.stack([a, 2 * a, 0.5 * a + 0.01 * b, b, 3 * b], 1)  # latents 0-2 follow a, 3-4 follow b
    labels = cluster_latents(profiles, 2)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4]
    assert cluster_latents(profiles[:, :1], 4) == [0]


def test_least_squares_weights_recover_planted_coefficients():
    g = torch.Generator().manual_seed(3)
    decoder = torch.randn(4, D, generator=g)  # not orthogonal
    w_true = torch.tensor([2.0, -0.5, 0.0, 1.25])
    deltas = w_true @ decoder + 0.01 * torch.randn(50, D, generator=g)
    assert torch.allclose(least_squares_weights(decoder, deltas), w_true, atol=0.01)


class PlantedSAE:
    """An SAE with an orthonormal decoder and ReLU encoder: latent j reads coordinate j exactly."""

    def __init__(self, seed: int = 0) -> None:
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(seed)))
        self.W_dec = q.T.contiguous()  # rows orthonormal
        self.cfg = SimpleNamespace(d_sae=D_SAE)

    def encode(self, x):
        c = x @ self.W_dec.T
        return torch.where(c > 1e-5, c, torch.zeros_like(c))  # ReLU, float noise of the rotation counted as 0


def _planted_context(sae, n_pairs=60, seed=0):
    """Answer-style contrast pairs (rows 2i, 2i+1): the positive row adds 2 d3 + 0.5 d7 at the last token."""
    g = torch.Generator().manual_seed(seed)
    pos_len = 4
    base = torch.rand(n_pairs, pos_len, D_SAE, generator=g) * (torch.rand(n_pairs, pos_len, D_SAE, generator=g) < 0.2)
    base[..., [3, 7]] = 0.0
    rows = []
    labels = torch.zeros(2 * n_pairs, 2, dtype=torch.bool)
    for i in range(n_pairs):
        neg = base[i].clone()
        pos = base[i].clone()
        pos[-1, 3] += 2.0
        pos[-1, 7] += 0.5
        first_pos = i % 2 == 0  # which row of the pair is the positive one alternates
        rows += [pos, neg] if first_pos else [neg, pos]
        labels[2 * i, 0 if first_pos else 1] = True
        labels[2 * i + 1, 1 if first_pos else 0] = True
    codes = torch.stack(rows)  # n pos d_sae, in latent coordinates
    token_acts = codes @ sae.W_dec
    return DiscoveryContext(None, "blocks.0.hook_resid_post", token_acts[:, -1], sae, 0, "labels", Budget(None), progress,
                            labels=labels, concepts=["trait+", "trait-"], poles={"trait+": "trait-"}, token_acts=token_acts,
                            lengths=torch.full((2 * n_pairs,), pos_len), pairs=torch.arange(2 * n_pairs) ^ 1)  # fmt: skip


def test_contrastive_finds_the_planted_direction_and_its_coefficients():
    sae = PlantedSAE()
    ctx = _planted_context(sae)
    fs = Contrastive().discover(ctx)
    assert fs.labels[0] == "trait+" and fs.ranking()[0] == 0
    info = fs.meta["concepts"]["trait+"]
    assert info["offsets"] == {0: 60}  # the pairs differ at the last token only
    assert sorted(info["latents"]) == [3, 7]
    w = dict(zip(info["latents"], info["weights"], strict=True))
    assert w[3] == pytest.approx(2.0, abs=1e-4) and w[7] == pytest.approx(0.5, abs=1e-4)
    planted = 2.0 * sae.W_dec[3] + 0.5 * sae.W_dec[7]
    assert torch.allclose(fs.directions[0], planted, atol=1e-4)
    assert info["r2"] == pytest.approx(1.0, abs=1e-4)
    # the feature's activation separates positive from negative last tokens
    act = fs.encoder(ctx.train_acts)[:, 0]
    assert bool(act[ctx.labels[:, 0]].min() > act[ctx.labels[:, 1]].max())


def test_contrastive_needs_pairs_and_an_sae():
    sae = PlantedSAE()
    ctx = _planted_context(sae)
    ctx.pairs = None
    with pytest.raises(UserError, match="contrast pairs"):
        Contrastive().discover(ctx)
    ctx = _planted_context(sae)
    ctx.sae = None
    with pytest.raises(UserError, match="needs an SAE"):
        Contrastive().discover(ctx)


def test_code_deltas_are_differences_of_codes():
    sae = PlantedSAE()
    x = torch.rand(5, D) @ sae.W_dec
    y = torch.rand(5, D) @ sae.W_dec
    assert torch.allclose(code_deltas(sae.encode, x, y), sae.encode(x) - sae.encode(y))
