"""Typed context fields between tasks and methods (api.CONTEXT_FIELDS, Task.provides, Method.needs)."""

from __future__ import annotations

import pytest
import torch

from deeprobe_bench import api, registry, runner


def test_a_method_needing_a_field_the_task_does_not_provide_is_refused_before_any_work(toys, tmp_path):
    class NeedsPairs(api.Method):
        name = "toy-needs-pairs"
        description = "needs contrast pairs"
        needs = ("pairs",)

        def discover(self, ctx):  # pragma: no cover - refused before any work
            raise AssertionError("unreachable")

    registry.register_method(NeedsPairs)
    loads = []

    def loader(name):
        loads.append(name)
        return toys.load_toy_subject(name)

    with pytest.raises(api.UserError) as err:
        runner.run_grid("toy", "toy", ["toy-random", "toy-needs-pairs"], [0], results_dir=str(tmp_path),
                        progress=False, subject_loader=loader)  # fmt: skip
    msg = str(err.value)
    assert "method toy-needs-pairs needs pairs (contrast pairs" in msg and "task toy does not provide" in msg
    assert "\n" not in msg and not loads and not list(tmp_path.rglob("*.json"))  # nothing loaded or written


@pytest.mark.parametrize(("task", "method", "options", "field"), [
    ("ioi", "contrastive", {}, "pairs"),
    ("ioi", "prompt", None, None),  # a prompting method: refused by kind first
    ("othello", "attribution", {}, "behaviour"),
    ("othello", "mcts", {"prior": "attribution"}, "behaviour"),
    ("chess", "greedy", {"pool_by": "attribution"}, "behaviour"),
    ("synthetic", "exact", {}, "behaviour"),
])  # fmt: skip
def test_built_in_pairs_that_do_not_fit_are_refused_by_name(tmp_path, task, method, options, field):
    with pytest.raises(api.UserError) as err:
        runner.run_grid(task, None, [method], [0], method_options=options, results_dir=str(tmp_path), progress=False,
                        subject_loader=lambda name: pytest.fail("the model must not load"))  # fmt: skip
    msg = str(err.value)
    assert f"method {method}" in msg
    assert (f"needs {field} (" in msg) if field else "kind 'prompts'" in msg


def test_the_search_methods_need_the_behaviour_only_for_their_attribution_options():
    mcts, greedy = registry.get_method("mcts"), registry.get_method("greedy")
    assert mcts.needs_for(mcts.Config()) == () and mcts.needs_for(mcts.Config(prior="attribution")) == ("behaviour",)
    assert greedy.needs_for(greedy.Config()) == () and greedy.needs_for(greedy.Config(pool_by="attribution")) == ("behaviour",)


def test_built_in_tasks_declare_what_their_methods_read():
    for name in ("ioi", "othello", "chess", "persona", "synthetic"):
        provides = registry.get_task(name).provides
        assert set(provides) <= set(api.CONTEXT_FIELDS), name
    for name in ("contrastive", "prompt", "attribution", "exact"):
        assert set(registry.get_method(name).needs) <= set(api.CONTEXT_FIELDS), name


def test_the_context_carries_the_typed_fields_the_task_sets_and_a_declared_unset_one_fails_the_cell(toys, tmp_path):
    seen = {}

    class SiteTask(toys.ToyTask):
        name = "toy-sites"
        provides = ("site_acts",)

        def prepare(self, subject, seed, limit=None):
            data = super().prepare(subject, seed, limit)
            data.site_acts = torch.arange(16.0).reshape(2, 8)
            return data

    class Forgetful(SiteTask):
        name = "toy-forgetful"

        def prepare(self, subject, seed, limit=None):
            return toys.ToyTask.prepare(self, subject, seed, limit)

    class ReadsSites(api.Method):
        name = "toy-reads-sites"
        description = "records what it was given"
        needs = ("site_acts",)

        def discover(self, ctx):
            seen.update(site_acts=ctx.site_acts, pairs=ctx.pairs, behaviour=ctx.behaviour, extra=dict(ctx.extra))
            return toys.feature_set(torch.eye(8)[:2])

    for cls in (SiteTask, Forgetful, ReadsSites):
        registry.register_task(cls) if issubclass(cls, api.Task) else registry.register_method(cls)
    [r] = runner.run_grid("toy-sites", "toy", ["toy-reads-sites"], [0], results_dir=str(tmp_path), progress=False,
                          subject_loader=toys.load_toy_subject)  # fmt: skip
    assert r.ok and torch.equal(seen["site_acts"], torch.arange(16.0).reshape(2, 8))
    assert seen["pairs"] is None and seen["behaviour"] is None  # not given / supervision none
    assert seen["extra"] == {"d_model": 8}  # the toy plugin's private data, untouched
    [r] = runner.run_grid("toy-forgetful", "toy", ["toy-reads-sites"], [0], results_dir=str(tmp_path), progress=False,
                          subject_loader=toys.load_toy_subject)  # fmt: skip
    assert r.status == "error" and "declares it provides site_acts" in r.error
