"""Moved to :mod:`deeprobe_bench.zoo.sae` (the zoo kit's SAE stage); this name stays for old imports."""

from deeprobe_bench.zoo.sae import (  # noqa: F401
    ARCHITECTURES,
    _lp,
    _panneal_classes,
    p_anneal_schedule,
    sae_quality,
    shuffled_batches,
    train_sae,
)
