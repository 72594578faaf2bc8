"""Shared by the subset searches (``mcts``, ``greedy``): the candidate pool and a cached set objective."""

from __future__ import annotations

from typing import Any, ClassVar

from deeprobe_bench.api import BudgetExhausted, DiscoveryContext, Method
from deeprobe_bench.baselines.sae import latent_features, rank_latents


class SubsetSearch(Method):
    """Base of the searches over subsets of SAE latents on the task objective (``greedy``, ``mcts``).

    ``attribution_option`` names the config field that, set to ``"attribution"``, chooses the candidates
    (or the prior) by attribution patching on the task's behaviour metric, which the task must then give.
    """

    supervision = "objective"
    attribution_option: ClassVar[str] = ""

    @classmethod
    def needs_for(cls, config: Any) -> tuple[str, ...]:
        """The task's behaviour metric when the attribution option is on, nothing more otherwise."""
        return ("behaviour",) if getattr(config, cls.attribution_option, None) == "attribution" else ()


class SetObjective:
    """The task objective of a set of SAE latents, cached per set (FUSE's transposition table).

    A cached set costs no objective call. ``exhausted`` turns True once the budget is spent.

    Attributes:
        pool: ``list[int]`` candidate latents, most frequent first.
        prior: ``dict[int, float]`` activation frequency of each candidate at the task positions.
        cache: ``{frozenset: reward}``; ``best`` / ``best_set``: the best reward seen and its set.
    """

    def __init__(self, ctx: DiscoveryContext, method: str, pool_size: int) -> None:
        order, freq = rank_latents(ctx, method)
        self.ctx = ctx
        self.pool = [int(i) for i in order[:pool_size]]
        self.prior = {i: float(freq[i]) for i in self.pool}
        self.cache: dict[frozenset, float] = {}
        self.best = float("-inf")
        self.best_set: tuple[int, ...] = ()
        self.exhausted = False
        self.hits = 0

    @property
    def pool(self) -> list[int]:
        return self._pool

    @pool.setter
    def pool(self, latents: list[int]) -> None:
        # every candidate set is a subset of the pool: its encoder slices the pool's encoding of the train
        # split, computed once (FeatureSet.encode_shared) instead of once per objective call
        self._pool = list(latents)
        self._pool_set = latent_features(self.ctx.sae, self.ctx.hook_name, self._pool)
        self._position = {a: i for i, a in enumerate(self._pool)}

    def __call__(self, latents) -> float | None:
        """Reward of the set ``latents`` (ordered), or None when the budget is spent."""
        key = frozenset(latents)
        if key in self.cache:
            self.hits += 1
            return self.cache[key]
        if self.exhausted:
            return None
        try:
            reward = self.ctx.objective(self._candidate(sorted(key)))
        except BudgetExhausted:
            self.exhausted = True
            return None
        self.cache[key] = reward
        if reward > self.best:
            self.best, self.best_set = reward, tuple(latents)
        return reward

    def _candidate(self, latents: list[int]):
        """The FeatureSet of ``latents`` (sorted), a subset of the pool's when they are all in it."""
        if any(a not in self._position for a in latents):
            return latent_features(self.ctx.sae, self.ctx.hook_name, latents)
        fs = self._pool_set.subset([self._position[a] for a in latents])
        fs.meta = {"latents": list(latents)}
        return fs

    def result(self, ranked: list[int], scores: list[float], meta: dict):
        """The FeatureSet: the best set first (``selected``), then ``ranked`` candidates outside it."""
        pos = {a: r for r, a in enumerate(ranked)}
        best = sorted(self.best_set, key=lambda a: pos.get(a, len(pos)))
        order = best + [i for i in ranked if i not in self.best_set]
        n = len(order)
        return latent_features(
            self.ctx.sae,
            self.ctx.hook_name,
            order,
            scores=[float(n - r) for r in range(n)],
            selected=len(self.best_set),
            meta={"best_reward": self.best, "objective_cache_hits": self.hits, "pool": self.pool, **meta,
                  "rank_scores": scores},  # fmt: skip
        )
