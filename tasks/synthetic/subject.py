"""A synthetic world exposed as a subject: one hook (``hook_hidden``), its SAEs, its card.

The "model" of a :class:`SyntheticSubject` is the ``sae_lens.synthetic.SyntheticModel`` itself; it has no
tokens and no layers, only the hidden activation ``x = sum_i a_i v_i + b`` at the hook ``hook_hidden``.
Its weights' fingerprint (the result's ``weights_sha256``) is the SHA-256 of the world's saved files
(config, feature vectors, bias, firing probabilities, correlation factors, hierarchy), so results of a
rebuilt world are never reused for another. A world directory (written by
:mod:`deeprobe_bench.tasks.synthetic.recipe`)::

    card.json          config, recipe, seeds, SAE quality
    world/             SyntheticModel.save (synthetic_model_config.json, synthetic_model.safetensors, hierarchy.json)
    saes/<hook>@<variant>/   one sae_lens SAE per variant (SAE.save_model layout)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.api import UserError
from deeprobe_bench.subject import Subject


@dataclass
class SyntheticSubject(Subject):
    """A :class:`deeprobe_bench.subject.Subject` whose ``model`` is a ``SyntheticModel`` (no tokenizer)."""

    @property
    def world(self) -> Any:
        return self.model

    @property
    def tokenizer(self) -> Any:
        return None

    def info(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "name": self.name,
            "kind": "synthetic-world",
            "num_features": cfg.num_features,
            "d_model": cfg.hidden_dim,
            "saes": {h: {"architecture": s.cfg.architecture(), "d_sae": s.cfg.d_sae} for h, s in self.saes.items()},
            "card": {k: v for k, v in self.card.items() if k in ("version", "seed", "quality", "source")},
        }


def world_subject(world: Any, name: str, saes: dict[str, Any] | None = None, card: dict[str, Any] | None = None,
                  fingerprint: str | None = None) -> SyntheticSubject:  # fmt: skip
    """Wrap a ``SyntheticModel`` as a subject; ``fingerprint`` (default: hash of its tensors) identifies it."""
    subject = SyntheticSubject(name=name, model=world, saes=dict(saes or {}), card=dict(card or {}))
    if fingerprint is None:
        h = hashlib.sha256()
        h.update(json.dumps(world.cfg.to_dict(), sort_keys=True).encode())
        for t in (world.feature_dict.feature_vectors, world.feature_dict.bias,
                  world.activation_generator.firing_probabilities):  # fmt: skip
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        fingerprint = h.hexdigest()
    world._deeprobe_fingerprint = fingerprint  # read by deeprobe_bench.activations.fingerprint
    return subject


def load_world_dir(directory: Path, name: str | None = None, with_saes: bool = True) -> SyntheticSubject:
    """Load a world directory (see the module docstring).

    Raises:
        UserError: the world's files are missing (the message says how to build them).
    """
    from sae_lens.synthetic import SyntheticModel
    from sae_lens.synthetic.synthetic_model import SYNTHETIC_MODEL_CONFIG_FILENAME, SYNTHETIC_MODEL_WEIGHTS_FILENAME

    directory = Path(directory)
    name = name or directory.name
    world_dir = directory / "world"
    missing = [f for f in ("card.json", f"world/{SYNTHETIC_MODEL_CONFIG_FILENAME}", f"world/{SYNTHETIC_MODEL_WEIGHTS_FILENAME}")
               if not (directory / f).exists()]  # fmt: skip
    if missing:
        raise UserError(
            f"synthetic world {name} is not built at {directory} (missing {', '.join(missing)}); "
            f"run `deeprobe-bench zoo train {name}`"
        )
    card = json.loads((directory / "card.json").read_text())
    h = hashlib.sha256()
    for f in sorted(p for p in world_dir.iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    world = SyntheticModel.load_from_disk(world_dir)
    saes = {}
    if with_saes and (directory / "saes").is_dir():
        from sae_lens import SAE

        for sae_dir in sorted(p for p in (directory / "saes").iterdir() if p.is_dir()):
            sae = SAE.load_from_disk(sae_dir)
            sae.eval()
            saes[sae_dir.name] = sae
    return world_subject(world, name, saes=saes, card=card, fingerprint=h.hexdigest())
