"""``greedy``: forward selection over SAE latents on the task objective, the baseline MCTS must match.

From the empty set, each step scores every candidate of the pool added to the current set (one objective
call each, cached per set) and keeps the best; it stops when no addition improves the objective
(``faithfulness - size_penalty * |S|`` on the task's train subsample), at ``max_size``, or when the budget
of objective calls is spent (the best candidate scored so far in the unfinished step is then taken if it
improves). The candidate pool (``-M pool=P``, default 48) is the ``P`` latents most frequently active at
the task positions (``-M pool_by=frequency``, the default, as ``mcts``), or the ``P`` of largest
|attribution patching| effect on the task's behaviour (``-M pool_by=attribution``, ties by frequency;
:func:`baselines._patching.attribution_pool`), which finds the latents the behaviour depends on
among tens of thousands where frequency finds the dense ones.
Ranking: the selected latents in order of addition, then the rest by their last marginal reward.

Cost: at most ``budget`` objective calls (IOI: each one forward pass over the task's
``objective_batch`` prompts from the hook on); a step costs ``P - |S|`` calls, so a full run of
``s`` steps costs about ``s P`` calls, capped by the budget. Choosing the pool: one SAE encoding of the
train activations at the task positions (frequency; no forward pass), or 2 forward + 1 backward passes
per batch of the behaviour's prompts (attribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deeprobe_bench.api import DiscoveryContext, FeatureSet
from deeprobe_bench.baselines._subsets import SetObjective, SubsetSearch


@dataclass
class GreedyConfig:
    """Options of ``greedy``.

    Attributes:
        budget: objective calls allowed (the same default as ``mcts``).
        pool: candidate latents.
        pool_by: ``frequency`` (most often active at the task positions) or ``attribution`` (largest
            |attribution patching| effect on the task's behaviour metric).
        max_size: largest set considered.
    """

    budget: int = 400
    pool: int = 48
    pool_by: Literal["frequency", "attribution"] = "frequency"
    max_size: int = 16

    def __post_init__(self) -> None:
        if self.budget < 1 or self.pool < 1 or self.max_size < 1:
            raise ValueError("budget, pool and max_size must be >= 1")


class Greedy(SubsetSearch):
    name = "greedy"
    description = "greedy forward selection of SAE latents on the task objective"
    Config = GreedyConfig
    attribution_option = "pool_by"

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        obj = SetObjective(ctx, self.name, self.config.pool)
        meta: dict = {"pool_by": self.config.pool_by}
        if self.config.pool_by == "attribution":
            from deeprobe_bench.baselines._patching import attribution_pool

            obj.pool, nodes = attribution_pool(ctx, self.name, self.config.pool, obj.pool)  # ties: frequency
            meta["pool_cost"] = nodes.cost.to_dict()
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
        return obj.result(
            current + rest, [last.get(c, float("nan")) for c in current + rest], {"steps": len(current), **meta}
        )
