"""MCTS and greedy on a synthetic objective whose best set is known by construction."""

import pytest
import torch
from helpers import ProgressBar

from deeprobe_bench.api import Budget, BudgetExhausted, DiscoveryContext
from deeprobe_bench.baselines.greedy import Greedy, GreedyConfig
from deeprobe_bench.baselines.mcts import MCTS, MCTSConfig


class FakeSAE:
    """Latent i fires on 1 - i/64 of the rows: the frequency ranking is the index order."""

    def __init__(self, d_sae=64, d=16):
        self.W_dec = torch.randn(d_sae, d, generator=torch.Generator().manual_seed(0))
        self.d_sae = d_sae

    def encode(self, x):
        n = x.shape[0]
        rows = torch.arange(n).unsqueeze(1).float() / n
        cut = 1 - torch.arange(self.d_sae).float() / self.d_sae
        return (rows < cut).float()


TARGET = {3, 11, 20}


def ctx_for(budget, seed=0, pool_calls=None):
    b = Budget(budget)

    def objective(fs):
        b.charge()
        s = set(fs.meta["latents"])
        if pool_calls is not None:
            pool_calls.append(frozenset(s))
        return len(s & TARGET) / len(TARGET) - 0.02 * len(s - TARGET) - 0.01 * len(s)

    return DiscoveryContext(
        subject=None, hook_name="h", train_acts=torch.zeros(64, 16), sae=FakeSAE(), seed=seed,
        supervision="objective", budget=b, progress=lambda it=None, **kw: ProgressBar(it), objective=objective,
    )


@pytest.mark.parametrize("policy", ["uct", "puct"])
def test_mcts_finds_the_planted_set_within_budget(policy):
    calls = []
    ctx = ctx_for(300, pool_calls=calls)
    fs = MCTS(MCTSConfig(budget=300, pool=24, policy=policy)).discover(ctx)
    assert set(fs.meta["latents"][: fs.selected]) == TARGET
    assert ctx.budget.objective_calls <= 300
    assert len(calls) == len(set(calls)), "a set was scored twice: the transposition cache failed"


def test_greedy_finds_the_planted_set_and_stops():
    ctx = ctx_for(500)
    fs = Greedy(GreedyConfig(budget=500, pool=24)).discover(ctx)
    assert fs.meta["latents"][: fs.selected] == sorted(TARGET, key=lambda a: a) or set(
        fs.meta["latents"][: fs.selected]
    ) == TARGET
    assert fs.selected == 3
    # Greedy stops when no addition improves: 1 (empty) + 24 + 23 + 22 + 21 calls.
    assert ctx.budget.objective_calls == 1 + 24 + 23 + 22 + 21


def test_budget_is_respected_and_recorded():
    ctx = ctx_for(10)
    fs = Greedy(GreedyConfig(budget=10, pool=24)).discover(ctx)
    assert ctx.budget.objective_calls == 10
    assert 0 <= fs.selected <= 1
    b = Budget(1)
    b.charge()
    with pytest.raises(BudgetExhausted):
        b.charge()


def test_mcts_is_deterministic_in_its_seed():
    a = MCTS(MCTSConfig(budget=60, pool=24)).discover(ctx_for(60, seed=1))
    b = MCTS(MCTSConfig(budget=60, pool=24)).discover(ctx_for(60, seed=1))
    assert a.meta["latents"] == b.meta["latents"] and a.selected == b.selected
