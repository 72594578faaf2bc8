"""The zoo catalogue as data: ``catalogue.json`` lists every zoo model (description, package, recipe).

SAELens keeps its pretrained releases in a YAML file; the zoo does the same with one JSON file, read
here without importing torch (``deeprobe-bench ls models`` stays fast). Each model's own card
(``<package>/zoo/<name>/card.json``) holds what it is and what it is worth.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

CATALOGUE = "catalogue.json"


@lru_cache(maxsize=1)
def entries() -> dict[str, dict[str, Any]]:
    """``{name: {"description", "package", "recipe"}}`` of every zoo model."""
    return json.loads(files("deeprobe_bench.zoo").joinpath(CATALOGUE).read_text())["models"]


def model(name: str) -> Any:
    """The :class:`deeprobe_bench.subject.ZooModel` of catalogue entry ``name``.

    Raises:
        KeyError: ``name`` is not in the catalogue.
    """
    from deeprobe_bench.subject import ZooModel

    e = entries()[name]
    return ZooModel(name=name, description=e["description"], package=e["package"], trainer=e["recipe"],
                    sanity=e.get("sanity", ""))  # fmt: skip
