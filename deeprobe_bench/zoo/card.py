"""The zoo kit's card writer and the user's zoo directory.

A zoo model directory holds ``model.safetensors``, the tokenizer, ``saes/<hook>@<arch>/`` (sae_lens
files) and ``card.json`` (:func:`deeprobe_bench.subject.save_zoo_dir`). The card states how the model
was made (config, recipe numbers, data, library versions) and what it is worth (``quality``: the
recipe's figures; ``saes``: each SAE's explained variance, L0 and dead fraction on the measured rows),
and ends with ``sha256``: ``{path relative to the directory: SHA-256 hex}`` of every other file, which
loading verifies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The dtypes a zoo model's weights may be shipped in (:func:`round_weights`, :func:`write`).
WEIGHTS_DTYPES = ("float32", "float16", "bfloat16")

#: Libraries whose versions every card records.
LIBRARIES = ("torch", "transformer_lens", "sae_lens", "scikit-learn", "numpy")


def versions() -> dict[str, str]:
    """``{library: installed version}`` of :data:`LIBRARIES` (absent ones skipped)."""
    import importlib.metadata as md

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def user_zoo_dir() -> Path:
    """Where ``deeprobe-bench zoo train`` writes by default: ``$DEEPROBE_ZOO`` or
    ``$XDG_DATA_HOME/deeprobe_bench/zoo`` (``~/.local/share/deeprobe_bench/zoo``); never the installed
    package."""
    if os.environ.get("DEEPROBE_ZOO"):
        return Path(os.environ["DEEPROBE_ZOO"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "deeprobe_bench" / "zoo"


def make_card(
    name: str,
    version: int,
    seed: int,
    tiny: bool,
    config: dict[str, Any],
    *,
    recipe: dict[str, Any],
    data: dict[str, Any],
    quality: dict[str, Any],
    task: dict[str, Any],
    saes: dict[str, dict[str, Any]] | None = None,
    default_sae_variant: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A card (plain JSON types) with the fields every zoo model has; ``extra`` adds recipe-specific ones.

    ``saes``: ``{variant: quality figures}`` of the SAEs shipped (omitted when ``None``).

    Raises:
        ValueError: ``default_sae_variant`` names no SAE of ``saes``.
    """
    if default_sae_variant is not None and default_sae_variant not in (saes or {}):
        raise ValueError(f"default SAE variant {default_sae_variant!r} is not among {sorted(saes or {})}")
    card = {"name": name, "version": version, "seed": seed, "tiny": tiny, "config": config,
            "recipe": recipe, "data": data, "quality": quality, "task": task, "versions": versions(), **extra}  # fmt: skip
    if saes is not None:
        card["saes"] = saes
    if default_sae_variant is not None:
        card["default_sae_variant"] = default_sae_variant
    return card


def _torch_dtype(name: str) -> Any:
    """The torch dtype of one of :data:`WEIGHTS_DTYPES`.

    Raises:
        ValueError: ``name`` is not one of them.
    """
    import torch

    if name not in WEIGHTS_DTYPES:
        raise ValueError(f"weights dtype {name!r} is not one of {', '.join(WEIGHTS_DTYPES)}")
    return getattr(torch, name)


def round_weights(model: Any, dtype: str) -> Any:
    """Round every floating-point parameter and buffer of ``model`` to ``dtype`` and back, in place; returns
    ``model``.

    A recipe calls it on the trained model before it measures anything, so that the card's figures are
    those of the weights :func:`write` ships in ``dtype`` (half the bytes of float32 for float16; loading
    casts them back to the config's dtype exactly).

    Raises:
        ValueError: ``dtype`` is not one of :data:`WEIGHTS_DTYPES`, or a finite weight overflows it.
    """
    import itertools

    import torch

    to = _torch_dtype(dtype)
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.is_floating_point():
                rounded = t.to(to).to(t.dtype)
                if (torch.isfinite(t) & ~torch.isfinite(rounded)).any():
                    raise ValueError(f"a weight of magnitude {t.abs().max().item():.3g} overflows {dtype}")
                t.copy_(rounded)
    return model


def write(out_dir: Path, model: Any, card: dict[str, Any], saes: dict[str, Any] | None = None,
          weights_dtype: str = "float32") -> Path:  # fmt: skip
    """Write a zoo model directory with ``card`` and its ``sha256`` map; returns ``out_dir``.

    ``weights_dtype``: the dtype of ``model.safetensors`` (the card records it as ``weights_dtype``); round
    the model to it first (:func:`round_weights`) so that what the card measured is what ships.

    Raises:
        ValueError: ``weights_dtype`` is not one of :data:`WEIGHTS_DTYPES`.
        RuntimeError: the written card lacks a checksum of a written file (never expected).
    """
    import json

    from deeprobe_bench.subject import CARD, SHA256, save_zoo_dir, zoo_file_digests

    _torch_dtype(weights_dtype)
    out_dir = Path(out_dir)
    card["weights_dtype"] = weights_dtype
    save_zoo_dir(out_dir, model, card, saes, weights_dtype)
    written = json.loads((out_dir / CARD).read_text())
    if written.get(SHA256) != zoo_file_digests(out_dir):
        raise RuntimeError(f"{out_dir / CARD}: its {SHA256} map does not cover the files written")
    return out_dir
