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


def write(out_dir: Path, model: Any, card: dict[str, Any], saes: dict[str, Any] | None = None) -> Path:
    """Write a zoo model directory with ``card`` and its ``sha256`` map; returns ``out_dir``.

    Raises:
        RuntimeError: the written card lacks a checksum of a written file (never expected).
    """
    import json

    from deeprobe_bench.subject import CARD, SHA256, save_zoo_dir, zoo_file_digests

    out_dir = Path(out_dir)
    save_zoo_dir(out_dir, model, card, saes)
    written = json.loads((out_dir / CARD).read_text())
    if written.get(SHA256) != zoo_file_digests(out_dir):
        raise RuntimeError(f"{out_dir / CARD}: its {SHA256} map does not cover the files written")
    return out_dir
