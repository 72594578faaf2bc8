"""Samples of a synthetic world: hidden activations and the planted features' activations, seeded.

``sample(world, n, seed)`` draws ``n`` i.i.d. samples of a ``sae_lens.synthetic.SyntheticModel`` with torch's
global generator forked and seeded with ``seed`` (the caller's generator state is untouched), in chunks,
and keeps the planted activations sparse (a world's L0 is ~16 of 4,096 features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: rows drawn per call of the world's sampler
CHUNK = 4096


@dataclass
class Samples:
    """``n`` samples of a world.

    Attributes:
        acts: ``Float[Tensor, "n d"]`` hidden activations ``x = sum_i a_i v_i + b``.
        features: ``Float[Tensor, "n F"]`` the planted activations ``a``, a sparse COO tensor (coalesced).
    """

    acts: Any
    features: Any

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    def fires(self, columns: Any) -> Any:
        """``Bool[Tensor, "n c"]``: whether each planted feature of ``columns`` fires (activation > 0)."""
        import torch

        cols = torch.as_tensor(columns, dtype=torch.long)
        where = torch.full((self.features.shape[1],), -1, dtype=torch.long)
        where[cols] = torch.arange(len(cols))
        idx, val = self.features.indices(), self.features.values()
        j = where[idx[1]]
        keep = (j >= 0) & (val > 0)
        out = torch.zeros(len(self), len(cols), dtype=torch.bool)
        out[idx[0][keep], j[keep]] = True
        return out

    def dense_features(self) -> Any:
        """``Float[Tensor, "n F"]``, the planted activations as a dense tensor."""
        return self.features.to_dense()


def sample(world: Any, n: int, seed: int) -> Samples:
    """Draw ``n`` samples of ``world`` (a ``SyntheticModel``) with a generator seeded by ``seed``.

    Raises:
        ValueError: ``n < 1``.
    """
    import torch

    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    acts, rows, cols, vals = [], [], [], []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, n, CHUNK):
            x, f = world.sample_with_features(min(CHUNK, n - start))
            if f.is_sparse:
                f = f.to_dense()
            nz = torch.nonzero(f > 0, as_tuple=True)
            acts.append(x.float())
            rows.append(nz[0] + start)
            cols.append(nz[1])
            vals.append(f[nz].float())
    features = torch.sparse_coo_tensor(
        torch.stack([torch.cat(rows), torch.cat(cols)]),
        torch.cat(vals),
        size=(n, world.cfg.num_features),
        check_invariants=True,
    ).coalesce()
    return Samples(acts=torch.cat(acts), features=features)
