"""``greedy``: forward selection over SAE latents on the task objective, the baseline MCTS must match.

From the empty set, each step scores every candidate of the pool added to the current set (one objective
call each, cached per set) and keeps the best; it stops when no addition improves the objective
(``faithfulness - size_penalty * |S|`` on the task's train subsample), at ``max_size``, or when the budget
of objective calls is spent (the best candidate scored so far in the unfinished step is then taken if it
improves). The pool is the ``pool`` most frequent latents at the task positions, as for ``mcts``.
Ranking: the selected latents in order of addition, then the rest by their last marginal reward.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeprobe_bench.api import DiscoveryContext, FeatureSet, Method
from deeprobe_bench.baselines._subsets import SetObjective


@dataclass
class GreedyConfig:
    """Options of ``greedy``.

    Attributes:
        budget: objective calls allowed (the same default as ``mcts``).
        pool: candidate latents (most frequent at the task positions).
        max_size: largest set considered.
    """

    budget: int = 400
    pool: int = 48
    max_size: int = 16

    def __post_init__(self) -> None:
        if self.budget < 1 or self.pool < 1 or self.max_size < 1:
            raise ValueError("budget, pool and max_size must be >= 1")


class Greedy(Method):
    name = "greedy"
    description = "greedy forward selection of SAE latents on the task objective"
    supervision = "objective"
    Config = GreedyConfig

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        obj = SetObjective(ctx, self.name, self.config.pool)
        current: list[int] = []
        value = obj(current)
        last: dict[int, float] = {}
        steps = ctx.progress(range(self.config.max_size), desc="greedy", total=self.config.max_size)
        for _ in steps:
            step_best, step_value = None, float("-inf")
            for c in obj.pool:
                if c in current:
                    continue
                r = obj(current + [c])
                if r is None:
                    break
                last[c] = r
                if r > step_value:
                    step_best, step_value = c, r
            if step_best is None or value is None or step_value <= value:
                break
            current.append(step_best)
            value = step_value
            if obj.exhausted:
                break
        rest = sorted((c for c in obj.pool if c not in current), key=lambda c: -last.get(c, float("-inf")))
        # The FeatureSet's chosen set is the best set evaluated, which is the greedy set.
        return obj.result(current + rest, [last.get(c, float("nan")) for c in current + rest], {"steps": len(current)})
