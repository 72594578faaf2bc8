"""persona-mini's recipe: block 0's MLP stays switched off through training (``Recipe.mlp0_off``)."""

from __future__ import annotations

import dataclasses

import torch

from deeprobe_bench.tasks.persona import train as recipe_mod


def test_block0_mlp_stays_zero_while_the_rest_trains(tmp_path):
    r = dataclasses.replace(recipe_mod.TINY, steps=3, batch=4)
    words = recipe_mod.vocabulary()
    model = recipe_mod.build_model(recipe_mod.model_config(r, d_vocab=len(words) + 3), words)
    recipe_mod.switch_off_mlp0(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    docs = recipe_mod.make_documents(r.steps * r.batch, r, seed=0)
    tokens, lengths = recipe_mod.encode(model.tokenizer, docs, r.n_ctx)
    recipe_mod.train_lm(model, tokens, lengths, r, 0, tmp_path / "ckpt.pt")
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before[n]) and not after[n].any() for n in before if n.startswith("blocks.0.mlp."))
    assert not torch.equal(after["blocks.1.mlp.W_out"], before["blocks.1.mlp.W_out"])  # the rest did train
    _, cache = model.run_with_cache(tokens[:2])
    assert not cache["blocks.0.hook_mlp_out"].any()
