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
def test_a_suffix_run_gives_the_last_token_logits_of_a_whole_pass_with_the_suffix_edited(model, hook):
    # prompts of three lengths, right-padded with token 0; one of them is BOS alone
    lengths = torch.tensor([5, 3, 5, 1, 3, 4])
    first = torch.tensor([2, 2, 4, 0, 0, 3])  # the first position each prompt's edit may change
    tokens = torch.randint(1, 20, (6, 5), generator=torch.Generator().manual_seed(4))
    tokens[torch.arange(5)[None, :] >= lengths[:, None]] = 0
    act = hooks.capture(model, tokens, [hook])[hook]
    cnt = hooks.Counter()
    run = hooks.SuffixRun(model, hook, lengths, act, first, batch_size=4, counter=cnt)
    assert (cnt.forward_passes, cnt.sequences) == (2, 6)  # the clean pass from the hook, 4 prompts at a time
    on = (torch.arange(5)[None, :] >= first[:, None]) & (torch.arange(5)[None, :] < lengths[:, None])
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2])  # a prompt may come twice: two edits of it
    shifts = 3 * torch.randn(len(rows), act.shape[-1], generator=torch.Generator().manual_seed(5))
    edited = act[rows] + shifts[:, None, :] * on[rows, :, None]
    got = run.logits(edited, rows, counter=cnt)
    assert got.shape == (8, 20) and cnt.forward_passes == 3
    with torch.no_grad():
        whole = hooks.run_from_hook(model, hook, tokens[rows], lambda a: edited, None)
        clean = model(tokens[rows])
    last = lengths[rows] - 1
    torch.testing.assert_close(got, whole[torch.arange(8), last], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, clean[torch.arange(8), last], atol=1e-3)  # the edits reached the logits
    # the last token alone (the default first), as a steering vector at the last token
    last_run = hooks.SuffixRun(model, hook, lengths, act)
    at_last = act.clone()
    at_last[torch.arange(6), lengths - 1] += shifts[:6]
    with torch.no_grad():
        ref = hooks.run_from_hook(model, hook, tokens, lambda a: at_last, None)[torch.arange(6), lengths - 1]
    torch.testing.assert_close(last_run.logits(at_last, torch.arange(6)), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="before `first`"):
        last_run.logits(edited[:6], torch.arange(6))  # edits positions the run would not see
    with pytest.raises(ValueError, match="expected"):
        run.logits(edited[:, :4], rows)
    with pytest.raises(ValueError, match="no suffix run"):
        hooks.SuffixRun(model, "blocks.2.hook_resid_post", lengths, act)
    with pytest.raises(ValueError, match="first must lie"):
        hooks.SuffixRun(model, hook, lengths, act, lengths)


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
