"""Several SAEs at one hook: ids ``<hook>@<variant>``, the default, and the ``sae -M arch=`` choice."""

import pytest
import torch

from deeprobe_bench.api import Budget, DiscoveryContext, UserError
from deeprobe_bench.subject import Subject

HOOK = "blocks.0.hook_resid_post"


def make_subject(ids, card=None):
    return Subject(name="t", model=torch.nn.Linear(2, 2), saes={i: f"sae:{i}" for i in ids}, card=card or {})


def test_bare_hook_is_default_and_variants_are_named():
    s = make_subject([HOOK, f"{HOOK}@topk", "blocks.1.hook_resid_post@topk"])
    assert s.sae_for(HOOK) == f"sae:{HOOK}"
    assert s.sae_for(HOOK, "topk") == f"sae:{HOOK}@topk"
    assert s.sae_for(HOOK, "panneal") is None
    assert s.sae_variants(HOOK) == {"default": f"sae:{HOOK}", "topk": f"sae:{HOOK}@topk"}


def test_card_names_the_default_variant():
    s = make_subject([f"{HOOK}@standard", f"{HOOK}@topk"], card={"default_sae_variant": "topk"})
    assert s.sae_for(HOOK) == f"sae:{HOOK}@topk"
    assert make_subject([f"{HOOK}@topk"]).sae_for(HOOK) is None


def test_require_sae_names_what_the_subject_has():
    ctx = DiscoveryContext(None, HOOK, None, None, 0, "none", Budget(None), lambda x, **k: x,
                           saes={"topk": "T", "standard": "S"})  # fmt: skip
    assert ctx.require_sae("sae", "topk") == "T"
    with pytest.raises(UserError, match="'panneal' SAE .* standard, topk"):
        ctx.require_sae("sae", "panneal")
    with pytest.raises(UserError, match="needs an SAE"):
        ctx.require_sae("sae")
