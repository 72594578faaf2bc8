"""deeprobe_bench.hooks: hook-name parsing, capture, forward from a hook (both paths give the same logits)."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench import hooks
from deeprobe_bench.api import UserError


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import quiet_hooked_transformer

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=3, d_model=16, n_ctx=8, d_head=4, d_vocab=20, d_mlp=32, act_fn="relu")
    return quiet_hooked_transformer(cfg, None).eval()


def test_hook_names_parse_into_layers():
    assert hooks.block_of("blocks.2.mlp.hook_post") == 2 and hooks.block_of("hook_embed") is None
    assert hooks.block_of("ln_final.hook_normalized") is None
    with pytest.raises(UserError, match="beyond the model's 3 layers"):
        hooks.block_of("blocks.3.hook_resid_post", 3)
    assert hooks.stop_layer(["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"], 3) == 2
    assert hooks.stop_layer(["hook_embed"], 3) == 0
    assert hooks.stop_layer(["blocks.2.hook_resid_post"], 3) is None  # the last block: the whole model
    assert hooks.stop_layer(["ln_final.hook_normalized"], 3) is None
    assert hooks.resume_layer("blocks.0.hook_resid_post", 3) == 1 and hooks.resume_layer("blocks.2.hook_resid_pre", 3) == 2
    assert hooks.resume_layer("blocks.2.hook_resid_post", 3) is None  # nothing to resume at
    assert hooks.resume_layer("blocks.0.mlp.hook_post", 3) is None
    assert hooks.act_name("post", 1) == "blocks.1.mlp.hook_post" and hooks.act_name("z", 0) == "blocks.0.attn.hook_z"


def test_capture_reads_what_a_full_cached_run_reads_and_counts_one_pass(model):
    tokens = torch.randint(0, 20, (3, 6), generator=torch.Generator().manual_seed(1))
    names = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]
    cnt = hooks.Counter()
    got = hooks.capture(model, tokens, names, cnt)
    _, cache = model.run_with_cache(tokens)
    for n in names:
        torch.testing.assert_close(got[n], cache[n])
    assert (cnt.forward_passes, cnt.sequences) == (1, 3)


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_post",
                                  "blocks.1.mlp.hook_post"])  # fmt: skip
def test_forward_from_a_hook_matches_the_whole_model_with_the_edit_inside_the_hook(model, hook):
    tokens = torch.randint(0, 20, (2, 5), generator=torch.Generator().manual_seed(2))
    act = hooks.capture(model, tokens, [hook])[hook]
    shift = torch.randn(act.shape[-1], generator=torch.Generator().manual_seed(3))

    def edit(a):
        return a + shift

    with torch.no_grad():
        from_hook = hooks.run_from_hook(model, hook, tokens, edit, act)
        whole = hooks.run_from_hook(model, hook, tokens, edit, None)
        clean = model(tokens)
        by_hand = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: a + shift)])
    torch.testing.assert_close(from_hook, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(whole, by_hand)
    assert not torch.allclose(whole, clean)  # the edit changed the output
    torch.testing.assert_close(hooks.run_from_hook(model, hook, tokens, None, act), clean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hooks.replace_at_hook(model, tokens, hook, act + shift), whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre"])
def test_the_last_token_run_gives_the_logits_of_a_whole_pass_with_the_last_token_edited(model, hook):
    # prompts of three lengths, right-padded with token 0; one of them is BOS alone (no prefix to cache)
    lengths = torch.tensor([5, 3, 5, 1, 3, 4])
    tokens = torch.randint(1, 20, (6, 5), generator=torch.Generator().manual_seed(4))
    tokens[torch.arange(5)[None, :] >= lengths[:, None]] = 0
    act = hooks.capture(model, tokens, [hook])[hook]
    last = lengths - 1
    shifts = 3 * torch.randn(4, act.shape[-1], generator=torch.Generator().manual_seed(5))
    cnt = hooks.Counter()
    run = hooks.LastTokenRun(model, hook, tokens, lengths, counter=cnt)
    assert cnt.forward_passes == 3 and cnt.sequences == 5  # one clean pass per length > 1, over its prefixes
    got = run.logits(act[torch.arange(6), last][None] + shifts[:, None, :], batch_size=4, counter=cnt)
    assert got.shape == (4, 6, 20)
    for g, shift in enumerate(shifts):
        def edit(a, shift=shift):
            a = a.clone()
            a[torch.arange(6), last] += shift
            return a

        with torch.no_grad():
            whole = hooks.run_from_hook(model, hook, tokens, edit, None)[torch.arange(6), last]
            clean = model(tokens)[torch.arange(6), last]
        torch.testing.assert_close(got[g], whole, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got[g], clean, atol=1e-3)  # the edit reached the logits
    with pytest.raises(ValueError, match="expected"):
        run.logits(act[:, 0][None, :5])
    with pytest.raises(ValueError, match="not a residual hook"):
        hooks.LastTokenRun(model, "blocks.2.hook_resid_post", tokens, lengths)


def test_the_position_helpers_keep_their_annotated_shapes_when_checked_at_run_time():
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    at = jaxtyped(typechecker=beartype)(hooks.at_positions)
    add = jaxtyped(typechecker=beartype)(hooks.add_at_positions)
    act = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    pos = torch.tensor([[0, 4], [1, 3]])
    got = at(act, pos)
    assert torch.equal(got, torch.stack([act[0, [0, 4]], act[1, [1, 3]]]))
    out = add(act, pos, torch.ones(2, 2, 3))
    assert float((out - act).sum()) == 2 * 2 * 3 and torch.equal(out[0, 1:4], act[0, 1:4])  # elsewhere untouched
    with pytest.raises(TypeCheckError):
        add(act, pos, torch.ones(2, 3, 3))  # delta of another k than the positions
