"""Named synthetic worlds: ``sae_lens.synthetic.SyntheticModelConfig`` recipes, built offline from a seed.

A *world* is a SynthSAEBench synthetic model (Chanin et al., sae_lens ``sae_lens.synthetic``): ``F`` planted
unit feature directions ``v_i`` in ``d`` dimensions, a sparse random activation ``a_i >= 0`` per feature and
sample (Zipfian firing probabilities, a hierarchy with mutually exclusive children, low-rank correlated
firing, per-feature magnitudes), and the hidden activation ``x = sum_i a_i v_i + b``. Kept free of torch
imports (``deeprobe-bench ls models`` reads this module).

- ``synth-4k``: the small world the default run and the leaderboard use: 4,096 features in 256 dimensions,
  the released SynthSAEBench-16k recipe scaled down (32 hierarchy roots instead of 128, same branching 4
  and depth 3, so 2,720 of the 4,096 features sit in trees as 10,880 of 16,384 do in the released world),
  without orthogonalisation (100 Adam steps at lr 3e-4 lower the released world's overlap loss by ~7%
  and cost ~3 CPU-minutes here; random 256-d unit vectors already have mean |cos| 0.05).
- ``synth-16k``: the released SynthSAEBench-16k configuration (16,384 features in 768 dimensions; the
  creation script of SAELens' SynthSAEBench, seed 42). Built here from the same config, not downloaded:
  the feature vectors equal the released ones only where torch draws the same random numbers.
- ``synth-tiny``: 256 features in 32 dimensions, for tests (not registered as a model).
"""

from __future__ import annotations

from typing import Any

#: the hook name of a world's hidden activation (the only hook a world has)
HOOK = "hook_hidden"


def _config(
    num_features: int,
    hidden_dim: int,
    roots: int,
    *,
    orthogonalize: bool,
    min_prob: float = 5e-4,
    rank: int = 25,
    seed: int = 42,
) -> Any:
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        OrthogonalizationConfig,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    return SyntheticModelConfig(
        num_features=num_features,
        hidden_dim=hidden_dim,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=min_prob),
        hierarchy=HierarchyConfig(
            total_root_nodes=roots,
            branching_factor=4,
            max_depth=3,
            mutually_exclusive_portion=1.0,
            mutually_exclusive_min_depth=0,
            compensate_probabilities=True,
            scale_children_by_parent=True,
        ),
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4) if orthogonalize else None,
        correlation=LowRankCorrelationConfig(rank=rank, correlation_scale=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=seed,
    )


def world_config(name: str) -> Any:
    """The ``SyntheticModelConfig`` of the named world.

    Raises:
        KeyError: an unknown name (the message lists the names).
    """
    if name == "synth-4k":
        return _config(4096, 256, 32, orthogonalize=False)
    if name == "synth-16k":
        return _config(16384, 768, 128, orthogonalize=True)
    if name == "synth-tiny":
        return _config(256, 32, 2, orthogonalize=False, min_prob=5e-3, rank=4)
    raise KeyError(f"unknown synthetic world {name!r}; known: synth-4k, synth-16k, synth-tiny")


#: the SAE recipe of each world: latents, steps, batch, TopK k, standard l1, training rows (held-out quality
#: samples: min(8192, n_acts))
SAE_RECIPES: dict[str, dict[str, Any]] = {
    "synth-4k": {"d_sae": 512, "steps": 600, "batch": 512, "k": 16, "l1": 5.0, "n_acts": 65536, "lr": 2e-3},
    "synth-16k": {"d_sae": 4096, "steps": 20000, "batch": 1024, "k": 25, "l1": 5.0, "n_acts": 262144, "lr": 3e-4},
    "synth-tiny": {"d_sae": 64, "steps": 80, "batch": 256, "k": 4, "l1": 2.0, "n_acts": 4096, "lr": 3e-3},
}
