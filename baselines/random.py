"""``random``: random directions, the floor every method must beat.

``n`` directions drawn i.i.d. from a standard Gaussian in the residual space (seeded by the cell's seed),
with the plain projection ``x . d`` as encoder. No ranking: the faithfulness curve follows the draw order,
so its expected value is what a random k-dimensional subspace keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method


@dataclass
class RandomConfig:
    """Options of ``random``.

    Attributes:
        n: number of random directions.
    """

    n: int = 50

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")


class RandomDirections(Method):
    """The floor: ``n`` i.i.d. standard Gaussian directions in the residual space (seeded by the cell's
    seed), projection encoder ``x . d``, no scores (any ranking is the draw order).
    """

    name = "random"
    description = "random Gaussian directions at the hook (the floor)"
    supervision = "none"
    Config = RandomConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        import torch

        gen = torch.Generator().manual_seed(ctx.seed)
        d = ctx.train_acts.shape[-1]
        directions = torch.randn(self.config.n, d, generator=gen)
        directions = directions / directions.norm(dim=1, keepdim=True)
        return FeatureSet(ctx.hook_name, directions, encoder=lambda x: x.float() @ directions.T)
