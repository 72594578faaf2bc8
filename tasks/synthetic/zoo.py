"""The synthetic worlds as models (entry-point group ``deeprobe_bench.models``).

Kept free of torch imports so that ``deeprobe-bench ls models`` stays fast; loading is in
:mod:`deeprobe_bench.tasks.synthetic.subject`, the recipe in :mod:`deeprobe_bench.tasks.synthetic.recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SyntheticWorldModel:
    """A named synthetic world shipped (or trainable) under ``tasks/synthetic/zoo/<name>/``.

    Attributes:
        name: registry name (``synth-4k``); also the world config's name (``worlds.world_config``).
        description: one line for ``deeprobe-bench ls models``.
        package: the package holding ``zoo/<name>/``.
    """

    name: str
    description: str
    package: str = "deeprobe_bench.tasks.synthetic"
    kind: str = "zoo"

    def path(self) -> Path:
        from importlib.resources import files

        return Path(str(files(self.package))) / "zoo" / self.name

    def user_path(self) -> Path:
        """Where ``zoo train`` writes this world by default: the user's zoo (as for every zoo model)."""
        from deeprobe_bench.zoo.card import user_zoo_dir

        return user_zoo_dir() / self.name

    def load(self) -> Any:
        """The world as a :class:`~deeprobe_bench.tasks.synthetic.subject.SyntheticSubject` with its SAEs: the
        user's built copy (:meth:`user_path`) when it has a card, else the shipped one.

        Raises:
            UserError: the world's files are missing (the message says how to build them).
        """
        from deeprobe_bench.tasks.synthetic.subject import load_world_dir

        user = self.user_path()
        return load_world_dir(user if (user / "card.json").is_file() else self.path(), name=self.name)

    def train(self, out_dir: Path | None = None, seed: int = 0) -> Path:
        """Build the world and train its SAEs into ``out_dir`` (default: :meth:`user_path`)."""
        from deeprobe_bench.tasks.synthetic.recipe import train

        out = Path(out_dir) if out_dir is not None else self.user_path()
        train(out_dir=out, seed=seed, name=self.name)
        return out


SYNTH_4K = SyntheticWorldModel(
    name="synth-4k",
    description="SynthSAEBench-style world, 4,096 planted features in 256 dims (hierarchy, correlations); "
    "standard/TopK SAEs and frozen-decoder/soft-frozen-decoder/frozen-encoder baselines",
)

SYNTH_16K = SyntheticWorldModel(
    name="synth-16k",
    description="the released SynthSAEBench-16k configuration (16,384 features in 768 dims); not shipped: "
    "`deeprobe-bench zoo train synth-16k` builds it (hours on CPU)",
)
