"""The zoo kit: schedule, resumable LM trainer (kill and continue: no step lost or repeated), private work
directories, tensors-only checkpoints, FastGPT -> HookedTransformer, card writer, catalogue."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from deeprobe_bench.zoo import card as cards  # noqa: E402
from deeprobe_bench.zoo import catalogue, gpt, lm  # noqa: E402

CFG = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32, "d_vocab": 11, "n_ctx": 8,
       "act_fn": "gelu", "normalization_type": "LN", "positional_embedding_type": "standard", "model_name": "t"}  # fmt: skip
STEPS = 10


def stream(step: int) -> torch.Tensor:
    """A pure data stream: step -> tokens (its own generator per step)."""
    return torch.randint(1, 11, (4, 9), generator=torch.Generator().manual_seed(1000 + step))


def sched(steps: int = STEPS) -> lm.Schedule:
    return lm.Schedule(steps=steps, lr=1e-2, warmup_steps=2, decay_steps=3, min_lr=1e-3)


def fresh() -> torch.nn.Module:
    return gpt.fast_gpt(CFG, seed=0)


def test_schedule_warmup_stable_decay():
    s = lm.Schedule(steps=10, lr=1.0, warmup_steps=4, decay_steps=4, min_lr=0.2)
    assert [s.lr_at(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s.lr_at(4) == s.lr_at(5) == 1.0  # stable until decay_start = 6
    assert s.lr_at(6) == pytest.approx(0.8) and s.lr_at(9) == pytest.approx(0.2)  # linear, min_lr at the last step
    # the stable phase does not depend on the total: a run may be extended before it decays
    assert lm.Schedule(steps=20, lr=1.0, warmup_steps=4, decay_steps=4).lr_at(9) == 1.0
    assert s.key() == lm.Schedule(steps=99, lr=1.0, warmup_steps=4, decay_steps=7, min_lr=0.2).key()
    with pytest.raises(ValueError):
        lm.Schedule(steps=3, decay_steps=4)


class Killed(Exception):
    pass


def killing(at: int):
    def batch_at(step: int) -> torch.Tensor:
        if step == at:
            raise Killed
        return stream(step)

    return batch_at


@pytest.mark.parametrize("autocast", [None, "bf16"])
def test_resume_after_kill_loses_and_repeats_no_step(tmp_path, autocast):
    import functools

    torch.set_num_threads(1)
    train = functools.partial(lm.train_lm, autocast=autocast)
    ref = fresh()
    ref_stats = train(ref, stream, sched(), tmp_path / "a")
    assert ref_stats["done"] and ref_stats["step"] == STEPS

    work = tmp_path / "b"
    m = fresh()
    first = train(m, stream, sched(), work, stop_after_s=0.0)  # one step, then a checkpoint
    assert (first["step"], first["done"]) == (1, False)
    m = fresh()  # killed at step 6, its last checkpoint still at step 1: steps 1..5 are redone, not counted twice
    with pytest.raises(Killed):
        train(m, killing(6), sched(), work, checkpoint_every_s=1e9)
    assert json.loads((work / lm.PROGRESS).read_text())["step"] == 1
    m = fresh()  # killed at step 8 with a checkpoint after every step
    with pytest.raises(Killed):
        train(m, killing(8), sched(), work, checkpoint_every_s=0.0)
    assert json.loads((work / lm.PROGRESS).read_text())["step"] == 8
    m = fresh()
    stats = train(m, stream, sched(), work)
    assert stats["done"] and stats["step"] == STEPS
    for (name, a), b in zip(ref.state_dict().items(), m.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with __import__("safetensors").safe_open(str(work / lm.CHECKPOINT), framework="pt") as fh:
        losses = json.loads(fh.metadata()["state"])["losses"]
    with __import__("safetensors").safe_open(str(tmp_path / "a" / lm.CHECKPOINT), framework="pt") as fh:
        ref_losses = json.loads(fh.metadata()["state"])["losses"]
    assert len(losses) == STEPS and losses == ref_losses
    # a finished run is a no-op: nothing trains again
    again = train(fresh(), killing(0), sched(), work)
    assert again["step"] == STEPS and again["steps_per_s"] == 0


def test_checkpoint_holds_tensors_and_json_only(tmp_path):
    from safetensors import safe_open

    lm.train_lm(fresh(), stream, sched(3), tmp_path, checkpoint_every_s=0.0)
    with safe_open(str(tmp_path / lm.CHECKPOINT), framework="pt") as fh:
        keys = list(fh.keys())
        state = json.loads(fh.metadata()["state"])
    assert state["step"] == 3
    params = [n for n, _ in fresh().named_parameters()]
    for n in params:  # every parameter, with both Adam moments
        assert f"model.{n}" in keys and f"opt.{n}.exp_avg" in keys and f"opt.{n}.exp_avg_sq" in keys


def test_no_pickle_in_the_kit_or_recipes():
    root = Path(__file__).resolve().parents[2]
    files = [*(root / "deeprobe_bench" / "zoo").glob("*.py"), *root.glob("tasks/*/recipe.py")]
    assert len(files) >= 6
    for f in files:
        text = f.read_text()
        assert not re.search(r"weights_only\s*=\s*False|import pickle|torch\.save\(", text), f


def test_changed_schedule_after_decay_began_is_refused(tmp_path):
    lm.train_lm(fresh(), stream, sched(STEPS), tmp_path, stop_after_s=None)  # ran into its decay (from step 7)
    with pytest.raises(ValueError, match="already decaying"):
        lm.train_lm(fresh(), stream, sched(STEPS + 5), tmp_path)
    lm.train_lm(fresh(), stream, sched(20), tmp_path / "b", stop_after_s=0.0)  # stopped at step 1, stable phase
    with pytest.raises(ValueError, match="give at least 4 steps"):
        lm.train_lm(fresh(), stream, lm.Schedule(steps=3, warmup_steps=0, decay_steps=3), tmp_path / "b")
    # a shorter total whose decay starts after the checkpoint is fine (the stable phase so far is the same)
    assert lm.train_lm(fresh(), stream, sched(6), tmp_path / "b")["step"] == 6


def test_a_run_stopped_at_its_decay_start_branches_into_its_own_decay_or_a_longer_run(tmp_path):
    import shutil

    torch.set_num_threads(1)
    ref = fresh()
    lm.train_lm(ref, stream, sched(), tmp_path / "ref")
    longer = fresh()
    lm.train_lm(longer, stream, sched(STEPS + 5), tmp_path / "longer")
    branch_point = sched().decay_start
    stable = lm.train_lm(fresh(), stream, sched(), tmp_path / "a", stop_at_step=branch_point)
    assert (stable["step"], stable["done"]) == (branch_point, False)
    assert json.loads((tmp_path / "a" / lm.PROGRESS).read_text())["step"] == branch_point
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    decayed, extended = fresh(), fresh()
    assert lm.train_lm(decayed, stream, sched(), tmp_path / "a")["done"]  # the branch: this run's own decay
    assert lm.train_lm(extended, stream, sched(STEPS + 5), tmp_path / "copy")["step"] == STEPS + 5  # or a longer run
    for model, same in ((decayed, ref), (extended, longer)):
        for (name, a), b in zip(same.state_dict().items(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b), name


def test_work_dir_is_private_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path))
    a = lm.work_dir("m", {"x": 1})
    assert a == lm.work_dir("m", {"x": 1}) != lm.work_dir("m", {"x": 2})
    assert a.parent == tmp_path / "zoo-work" and (a.stat().st_mode & 0o777) == 0o700
    os.chmod(a, 0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        lm.work_dir("m", {"x": 1})
    for bad in ("a/b", "/abs", "..", ""):
        with pytest.raises(ValueError, match="one plain path component"):
            lm.work_dir(bad, {})
    assert sorted(p.name for p in (tmp_path / "zoo-work").iterdir()) == sorted({a.name, lm.work_dir("m", {"x": 2}).name})


def test_temp_files_of_a_killed_save_are_removed(tmp_path):
    (tmp_path / "lm.safetensors.tmp").write_bytes(b"partial")
    (tmp_path / ".tmpabc").write_bytes(b"partial")
    lm.train_lm(fresh(), stream, lm.Schedule(steps=1), tmp_path)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".tmp*"))


def test_busy_work_dir_is_refused(tmp_path):
    held = lm._lock(tmp_path)
    try:
        with pytest.raises(lm.WorkDirBusy, match="another process"):
            lm.train_lm(fresh(), stream, sched(), tmp_path)
    finally:
        held.close()
    assert lm.train_lm(fresh(), stream, lm.Schedule(steps=2), tmp_path)["done"]


def test_fast_gpt_copies_into_hooked_transformer():
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import quiet_hooked_transformer

    fast = fresh()
    with torch.no_grad():  # non-zero biases, so that every weight's layout matters
        for p in fast.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    hooked = gpt.to_hooked(fast, quiet_hooked_transformer(HookedTransformerConfig(**CFG, device="cpu")))
    x = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(hooked(x), fast(x), atol=1e-5)
    with pytest.raises(ValueError, match="normalization_type"):
        gpt.fast_gpt({**CFG, "normalization_type": "RMS"}, 0)


def test_card_lists_every_file_with_its_checksum(tmp_path):
    import hashlib

    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.tasks.othello import recipe

    config = recipe.model_config(recipe.TINY)
    model = recipe.build_model(config, recipe.TINY.size)
    card = cards.make_card("t", 1, 0, True, config, recipe={}, data={}, quality={"x": 1.0}, task={}, saes={})
    out = cards.write(tmp_path / "t", model, card)
    written = json.loads((out / "card.json").read_text())
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "card.json")
    assert sorted(written["sha256"]) == files and "model.safetensors" in files
    for rel, digest in written["sha256"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert written["quality"] == {"x": 1.0} and "torch" in written["versions"]
    assert load_zoo_dir(out, name="t").card["name"] == "t"
    with pytest.raises(ValueError, match="default SAE variant"):
        cards.make_card("t", 1, 0, True, CFG, recipe={}, data={}, quality={}, task={}, saes={}, default_sae_variant="topk")


def test_a_model_shipped_in_half_precision_loads_as_the_rounded_model_the_card_measured(tmp_path):
    from safetensors import safe_open

    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.tasks.othello import recipe

    config = recipe.model_config(recipe.TINY)
    model = recipe.build_model(config, recipe.TINY.size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert cards.round_weights(model, "float16") is model
    after = model.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert changed, "float32 initial weights are not all representable in float16"
    floats = {k: v for k, v in after.items() if v.is_floating_point()}  # float32 tensors of float16 values
    assert all(v.dtype == before[k].dtype and torch.equal(v, v.half().to(v.dtype)) for k, v in floats.items())
    card = cards.make_card("t", 1, 0, True, config, recipe={}, data={}, quality={}, task={})
    out = cards.write(tmp_path / "t", model, card, weights_dtype="float16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in stored and "F32" not in stored
    loaded = load_zoo_dir(out, name="t")
    assert loaded.card["weights_dtype"] == "float16"
    x = torch.randint(1, config["d_vocab"], (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    with pytest.raises(ValueError, match="not one of"):
        cards.round_weights(model, "float8")
    with pytest.raises(ValueError, match="not one of"):
        cards.write(tmp_path / "u", model, card, weights_dtype="int8")
    big = torch.nn.Linear(2, 2)
    with torch.no_grad():
        big.weight.fill_(1e6)
    with pytest.raises(ValueError, match="overflows float16"):
        cards.round_weights(big, "float16")


def test_user_zoo_dir_is_never_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPROBE_ZOO", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert cards.user_zoo_dir() == tmp_path / "deeprobe_bench" / "zoo"
    monkeypatch.setenv("DEEPROBE_ZOO", str(tmp_path / "z"))
    m = catalogue.model("othello-mini")
    assert m.user_path() == tmp_path / "z" / "othello-mini"
    assert "site-packages" not in str(m.user_path()) and m.user_path() != m.path()


def test_catalogue_is_data_and_names_importable_recipes():
    import importlib

    entries = catalogue.entries()
    assert {"othello-mini", "othello-mini-random", "chess-mini", "chess-mini-random"} <= set(entries)
    for name, e in entries.items():
        module, func = e["recipe"].split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
        assert catalogue.model(name).package == e["package"]
        if "sanity" in e:
            module, func = e["sanity"].split(":")
            assert callable(getattr(importlib.import_module(module), func)), name
    assert {n for n, e in entries.items() if "sanity" in e} == {"othello-mini", "chess-mini", "ioi-mini", "persona-mini"}


def _recipe(**over):
    from deeprobe_bench.zoo.recipe import ZooRecipe

    numbers = dict(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, steps=10, batch=4, lr=1.0, min_lr=0.2,
                   warmup_steps=4, weight_decay=0.0, threads=1, d_sae=32, k=4, sae_steps=5, sae_batch=64, sae_lr=1e-3)  # fmt: skip
    return ZooRecipe(**{**numbers, **over})


def test_a_recipe_states_its_whole_model_and_its_schedule_decays_after_warmup_unless_told():
    from deeprobe_bench.zoo.recipe import ZooRecipe

    with pytest.raises(TypeError):  # no defaults for the model's numbers: each recipe states them
        ZooRecipe(n_layers=1)
    r = _recipe()
    assert r.schedule().decay_steps == 6 and r.schedule().lr_at(9) == pytest.approx(0.2)
    assert _recipe(decay_steps=2).schedule().lr_at(7) == 1.0  # stable until the last 2 steps
    cfg = r.transformer_config("t", n_ctx=8, d_vocab=11, seed=3)
    assert {k: cfg[k] for k in ("n_layers", "d_model", "d_mlp", "n_ctx", "d_vocab", "seed")} == {
        "n_layers": 1, "d_model": 16, "d_mlp": 32, "n_ctx": 8, "d_vocab": 11, "seed": 3}  # fmt: skip


def test_a_topk_only_recipe_refuses_l1_saes_and_caps_the_batch_at_the_rows():
    r = _recipe()
    assert r.sae_kwargs(n_rows=10) == {"steps": 5, "batch": 10, "lr": 1e-3, "k": 4}
    assert r.sae_spec(("topk",)).d_sae == 32
    with pytest.raises(ValueError, match="TopK SAEs only"):
        r.sae_spec(("topk", "standard"))
    assert _recipe(l1=2.0).sae_spec().l1 == 2.0 and _recipe(l1=2.0).sae_kwargs()["l1"] == 2.0


def test_recipe_command_line_overrides_fields_and_refuses_unknown_ones(capsys):
    from deeprobe_bench.zoo.recipe import recipe_args

    full, tiny = _recipe(), _recipe(n_layers=2)
    args, r, _ = recipe_args("d", full, tiny, ["--out", "x", "--tiny", "--set", "lr=0.5", "--set", "decay_steps=3"])
    assert (r.n_layers, r.lr, r.decay_steps, args.seed) == (2, 0.5, 3, 0) and isinstance(r.decay_steps, int)
    for bad in (["--set", "nope=1"], ["--set", "n_layers=2.5"], []):  # unknown field, not an int, no --out
        with pytest.raises(SystemExit) as e:
            recipe_args("d", full, tiny, bad if not bad else ["--out", "x", *bad])
        assert e.value.code == 2
    assert "unknown --set field of ZooRecipe 'nope'" in capsys.readouterr().err


def test_a_recipe_read_from_a_card_takes_its_fields_and_keeps_what_the_card_lacks():
    r = _recipe(l1=2.0).from_card({"d_sae": 512, "sae_steps": 9, "final_loss": 1.5, "schedule": {"lr": 7.0}})
    assert (r.d_sae, r.sae_steps, r.l1, r.lr) == (512, 9, 2.0, 1.0)  # training figures and the schedule ignored
