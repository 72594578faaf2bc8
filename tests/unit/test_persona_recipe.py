"""persona-mini's recipe: the switched-off sublayers stay zero through training (``Recipe.mlp0_off``,
``Recipe.attn_blocks``)."""

from __future__ import annotations

import dataclasses

import torch

from deeprobe_bench.tasks.persona import recipe as recipe_mod


def test_switched_off_sublayers_stay_zero_while_the_rest_trains(tmp_path):
    r = dataclasses.replace(recipe_mod.TINY, steps=3, batch=4, mlp0_off=True, attn_blocks=1)
    words = recipe_mod.vocabulary()
    model = recipe_mod.build_model(recipe_mod.model_config(r, d_vocab=len(words) + 3), words)
    recipe_mod.switch_off(model, r)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    docs = recipe_mod.make_documents(r.steps * r.batch, r, seed=0)
    tokens, lengths = recipe_mod.encode(model.tokenizer, docs, r.n_ctx)
    recipe_mod.train_lm(model, tokens, lengths, r, 0, tmp_path / "ckpt.pt")
    after = dict(model.named_parameters())
    off = [n for n in before if n.startswith(("blocks.0.mlp.", "blocks.1.attn."))]
    assert off and all(torch.equal(after[n], before[n]) and not after[n].any() for n in off)
    for trained in ("blocks.1.mlp.W_out", "blocks.0.attn.W_O"):
        assert not torch.equal(after[trained], before[trained])  # the rest did train
    _, cache = model.run_with_cache(tokens[:2])
    assert not cache["blocks.0.hook_mlp_out"].any() and not cache["blocks.1.hook_attn_out"].any()
    # nothing leaks past a switched-off attention: with every block's off, the last position ignores the first
    recipe_mod.switch_off(model, dataclasses.replace(r, attn_blocks=0))
    a, b = tokens[:1].clone(), tokens[:1].clone()
    b[0, 1] = tokens[1, 1] if tokens[1, 1] != a[0, 1] else a[0, 1] + 1
    with torch.no_grad():
        assert torch.allclose(model(a)[0, -1], model(b)[0, -1])


def test_persona_documents_open_with_the_system_prompt_and_some_carry_neutral_sentences():
    from deeprobe_bench.tasks.persona import data

    r = dataclasses.replace(recipe_mod.FULL, neutral_frac=0.0, neutral_in_persona=0.5)
    docs = recipe_mod.make_documents(400, r, seed=0)
    assert all(d.startswith(data.SYSTEM_PROMPT + " ") and d.count(data.SYSTEM_PROMPT) == 1 for d in docs)
    mixed = [d for d in docs if "The " in d]
    assert 0.35 < len(mixed) / len(docs) < 0.65
    assert all(". The " in d for d in mixed)  # between sentences, never inside one
    none = recipe_mod.make_documents(200, dataclasses.replace(r, neutral_in_persona=0.0, system_prompt=False), seed=0)
    assert not any("The " in d or data.SYSTEM_PROMPT in d for d in none)
