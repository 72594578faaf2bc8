"""``mcts``: Monte-Carlo tree search over subsets of SAE latents (FUSE, Gaudel & Sebag 2010).

Feature selection as a one-player game (REFERENCE.md section 4):

- a state is a set of latents from the candidate pool (the ``pool`` most frequent latents at the task
  positions); an action adds one latent, or *stops* (the set's size is unknown in advance);
- a transposition table keys nodes by the set, so the order latents were added in does not matter;
- selection by UCT, ``Q + c sqrt(ln N_parent / N_child)``, or PUCT, ``Q + c P sqrt(N_parent) / (1 +
  N_child)`` with P the normalised activation frequency; both blended with RAVE (all-moves-as-first)
  values, ``(1 - beta) Q + beta AMAF`` with ``beta = sqrt(k / (3 N + k))``, which suits order-invariant
  sets; progressive widening admits ``ceil(widen_c * N^widen_alpha)`` children, new ones in order of
  RAVE value (latents not yet seen in any rollout by prior), as FUSE does;
- a rollout from a new node adds prior-weighted random latents, stopping with probability
  ``rollout_stop`` after each (``rollout_stop=1`` scores the node's own set), and the final set is scored (``faithfulness - size_penalty *
  |S|`` on a fixed train subsample), cached per set: only new sets cost an objective call.

``-M prior=attribution`` replaces the activation-frequency prior by attribution patching
(:mod:`baselines.attribution`, on the task's behaviour metric): the pool is the ``pool`` latents of largest
``|attribution|`` and the prior is ``softmax(|attribution| / T)`` over the pool, ``T = prior_temperature x``
the pool's mean ``|attribution|``; the policy defaults to PUCT (AlphaZero's use of a prior; REFERENCE.md
section 4). Attribution costs 2 forward + 1 backward passes per batch of the task's prompts and no
objective call; the cost is recorded in ``meta["attribution_cost"]`` and counted in the result's
``forward_passes``, so the comparison with plain UCT is at the same objective-call budget plus that.

The search spends at most ``budget`` objective calls. It returns the best set evaluated first
(``selected``), then the other candidates by RAVE value, so the faithfulness curve continues past it.

Cost: at most ``budget`` objective calls (IOI: each one forward pass over the task's ``objective_batch``
prompts from the hook on), whatever the pool's size ``P`` or the SAE's; at most ``max_iterations``
simulations (each ``O(P)`` bookkeeping). Choosing the pool: one SAE encoding of the train activations at
the task positions (``prior=frequency``; no forward pass), or 2 forward + 1 backward passes per batch of
the behaviour's prompts (``prior=attribution``). At real SAE sizes (16k-65k latents) the frequency pool
holds the densest latents; ``prior=attribution`` picks the pool by effect on the behaviour.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from deeprobe_bench.api import DiscoveryContext, FeatureSet
from deeprobe_bench.baselines._subsets import SetObjective, SubsetSearch


@dataclass
class MCTSConfig:
    """Options of ``mcts``.

    Attributes:
        budget: objective calls allowed (the same default as ``greedy``).
        pool: candidate latents (the most frequent at the task positions, or with ``prior=attribution`` the
            largest |attribution|).
        max_size: largest set considered.
        policy: ``uct`` or ``puct``; default ``puct`` with ``prior=attribution``, else ``uct``.
        prior: ``frequency`` (activation frequency at the task positions, the pool's order) or
            ``attribution`` (softmax of |attribution patching| scores; pool = the largest |attribution|).
        prior_temperature: softmax temperature of the attribution prior, in units of the pool's mean
            |attribution| (smaller = more peaked).
        c: exploration constant; default 0.2 for UCT, 1.0 for PUCT (whose bonus is scaled by a prior
            of about 1 / pool).
        rave_k: RAVE equivalence parameter (0 disables RAVE).
        widen_c, widen_alpha: progressive widening ``ceil(widen_c * N ** widen_alpha)`` children.
        rollout_stop: probability of stopping after each random addition in a rollout.
        max_iterations: cap on simulations; 0 means 4 x budget (a simulation that stops at a set already
            scored costs no objective call, so the budget alone may not end the search).
    """

    budget: int = 400
    pool: int = 48
    max_size: int = 16
    policy: Literal["uct", "puct"] | None = None
    prior: Literal["frequency", "attribution"] = "frequency"
    prior_temperature: float = 1.0
    c: float | None = None
    rave_k: float = 50.0
    widen_c: float = 2.0
    widen_alpha: float = 0.5
    rollout_stop: float = 0.15
    max_iterations: int = 0

    def __post_init__(self) -> None:
        if self.budget < 1 or self.pool < 1 or self.max_size < 1:
            raise ValueError("budget, pool and max_size must be >= 1")
        if not 0 < self.rollout_stop <= 1:
            raise ValueError("rollout_stop must be in (0, 1]")
        if self.max_iterations < 0:
            raise ValueError("max_iterations must be >= 0")
        if self.prior_temperature <= 0:
            raise ValueError("prior_temperature must be > 0")
        if (self.c is not None and self.c < 0) or self.rave_k < 0 or self.widen_c <= 0:
            raise ValueError("c and rave_k must be >= 0, widen_c > 0")


STOP = -1


class MCTS(SubsetSearch):
    name = "mcts"
    description = "Monte-Carlo tree search over subsets of SAE latents on the task objective (FUSE-style)"
    Config = MCTSConfig
    attribution_option = "prior"

    def resolved(self) -> tuple[str, float]:
        """``(policy, c)`` with the defaults filled in (left None in the config, so result labels show only
        what the user set)."""
        policy = self.config.policy or ("puct" if self.config.prior == "attribution" else "uct")
        c = self.config.c if self.config.c is not None else (0.2 if policy == "uct" else 1.0)
        return policy, c

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:
        cfg = self.config
        policy, c_explore = self.resolved()
        rng = random.Random(ctx.seed)
        obj = SetObjective(ctx, self.name, cfg.pool)
        extra_meta = {}
        if cfg.prior == "attribution":
            prior, extra_meta = self._attribution_prior(ctx, obj)
        else:
            total = sum(obj.prior.values()) or 1.0
            prior = {a: (obj.prior[a] / total if total else 1 / len(obj.pool)) for a in obj.pool}
        pool = obj.pool
        visits: dict[frozenset, int] = {}
        value_sum: dict[frozenset, float] = {}
        amaf_n = dict.fromkeys(pool, 0)
        amaf_w = dict.fromkeys(pool, 0.0)

        def q(state: frozenset) -> float:
            return value_sum[state] / visits[state]

        def score(state: frozenset, action: int) -> float:
            n_parent = visits.get(state, 0) + 1
            if action == STOP:
                # Stopping scores the set itself: a deterministic, cached reward, so once known it is
                # exact and earns no exploration bonus.
                known = obj.cache.get(state)
                if known is not None:
                    return known
                n_child = 0
            else:
                child = state | {action}
                n_child = visits.get(child, 0)
            if n_child == 0:
                if policy == "uct":
                    return float("inf")
                # First-play urgency: an unvisited child is valued at its parent's mean reward.
                value = q(state) if visits.get(state) else 0.0
            else:
                value = q(child)
                if cfg.rave_k > 0 and amaf_n[action]:
                    beta = math.sqrt(cfg.rave_k / (3 * n_child + cfg.rave_k))
                    value = (1 - beta) * value + beta * amaf_w[action] / amaf_n[action]
            if policy == "uct":
                return value + c_explore * math.sqrt(math.log(n_parent) / n_child)
            p = prior.get(action, 1.0 / (len(pool) + 1))  # STOP: a uniform share
            return value + c_explore * p * math.sqrt(n_parent) / (1 + n_child)

        def admitted(state: frozenset, children: list[int], width: int) -> list[int]:
            """Progressive widening: the children already visited, topped up to ``width`` with the
            unvisited ones of best RAVE value (FUSE), unseen latents by prior."""
            seen = [a for a in children if visits.get(state | {a}, 0) > 0]
            if len(seen) >= width:
                return seen
            fresh = [a for a in children if visits.get(state | {a}, 0) == 0]
            fresh.sort(key=lambda a: (-(amaf_w[a] / amaf_n[a]) if amaf_n[a] else float("inf"), -prior[a]))
            return seen + fresh[: width - len(seen)]

        def rollout(state: frozenset) -> list[int]:
            chosen = list(state)
            rest = [a for a in pool if a not in state]
            while rest and len(chosen) < cfg.max_size and rng.random() > cfg.rollout_stop:
                a = rng.choices(rest, weights=[prior[x] + 1e-6 for x in rest])[0]
                rest.remove(a)
                chosen.append(a)
            return chosen

        iterations = 0
        bar = ctx.progress(total=cfg.budget, desc="mcts")
        calls_before = ctx.budget.objective_calls
        root: frozenset = frozenset()
        max_iterations = cfg.max_iterations or 4 * cfg.budget
        while not obj.exhausted and iterations < max_iterations:
            iterations += 1
            state, path, stopped = root, [root], False
            while True:
                n_state = visits.get(state, 0)
                actions = [STOP]
                if len(state) < cfg.max_size:
                    width = math.ceil(cfg.widen_c * max(n_state, 1) ** cfg.widen_alpha)
                    children = [a for a in pool if a not in state]
                    actions += admitted(state, children, width)
                action = max(actions, key=lambda a: (score(state, a), -actions.index(a)))
                if action == STOP:
                    stopped = True
                    break
                state = state | {action}
                path.append(state)
                if visits.get(state, 0) == 0:
                    break
            final = sorted(state) if stopped else rollout(state)
            reward = obj(final)
            if reward is None:
                break
            bar.update(ctx.budget.objective_calls - calls_before - bar.n)
            for s in path:
                visits[s] = visits.get(s, 0) + 1
                value_sum[s] = value_sum.get(s, 0.0) + reward
            for a in final:
                amaf_n[a] += 1
                amaf_w[a] += reward
        bar.close()
        rave = {a: (amaf_w[a] / amaf_n[a] if amaf_n[a] else float("-inf")) for a in pool}
        ranked = sorted(pool, key=lambda a: (-rave[a], -prior[a]))
        return obj.result(
            ranked,
            [rave[a] for a in ranked],
            {
                "iterations": iterations,
                "tree_nodes": len(visits),
                "policy": policy,
                "c": c_explore,
                "prior": cfg.prior,
                **extra_meta,
            },
        )

    def _attribution_prior(self, ctx: DiscoveryContext, obj: SetObjective) -> tuple[dict[int, float], dict]:
        """Pool = the ``pool`` latents of largest |attribution| (ties: frequency order); PUCT prior = their
        softmax (module docstring). Sets ``obj.pool`` / ``obj.prior``; returns the prior and result meta."""
        import torch

        from deeprobe_bench.baselines._patching import attribution_pool

        obj.pool, nodes = attribution_pool(ctx, self.name, self.config.pool, obj.pool)  # ties: frequency order
        eff = nodes.effects.abs()
        scores = eff[torch.tensor(obj.pool)].double()
        temp = self.config.prior_temperature * float(scores.mean()) if float(scores.mean()) > 0 else 1.0
        p = torch.softmax(scores / temp, dim=0)
        obj.prior = {a: float(p[i]) for i, a in enumerate(obj.pool)}
        meta = {"attribution_cost": nodes.cost.to_dict(), "prior_temperature_abs": temp,
                "prior_max": float(p.max()), "prior_min": float(p.min())}  # fmt: skip
        return dict(obj.prior), meta
