"""A FeatureSet is validated when it comes back from a method (api.FeatureSet.validate, runner.check_features).

Each case is a small plugin (a file passed with ``--plugin``, as a user would write one) whose method returns
a FeatureSet that is wrong in one known way, run on the toy task with a one-block TransformerLens model of
``d_model = 8`` (so the hook names are real). A single bad cell exits 2 with one line naming the method and
is recorded as an error; in a grid it is recorded per cell and the other cells go on.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from helpers import HELPERS_PATH, HOOK

from deeprobe_bench import cli
from deeprobe_bench.results import read_result, result_path

PLUGIN = textwrap.dedent(
    '''
    """Methods returning FeatureSets that are wrong in one known way, and an 8-d one-block model."""
    import torch
    from deeprobe_bench import api, registry

    HOOK = "blocks.0.hook_resid_post"


    class HookedSpec:
        name = "toy-hooked"
        description = "one-block TransformerLens model, d_model 8 (test fixture)"

        def load(self):
            from transformer_lens import HookedTransformerConfig

            from deeprobe_bench.subject import Subject, quiet_hooked_transformer

            torch.manual_seed(0)
            cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=12, d_mlp=16,
                                          act_fn="relu")
            subject = Subject("toy-hooked", quiet_hooked_transformer(cfg))
            subject.d_model = 8
            return subject


    registry.register_model(HookedSpec())


    def projection(hook, dirs, **kw):
        return api.FeatureSet(hook, dirs, encoder=lambda x: x.float() @ dirs.T, **kw)


    class NoSuchHook(api.Method):
        name = "bad-hook"
        description = "features at a hook the model does not have"

        def discover(self, ctx):
            return projection("blocks.7.hook_resid_post", torch.eye(8)[:2])


    class NanEncoder(api.Method):
        name = "bad-nan"
        description = "an encoder that returns NaN"

        def discover(self, ctx):
            d = torch.eye(8)[:2]
            return api.FeatureSet(ctx.hook_name, d, encoder=lambda x: x.float() @ d.T * float("nan"))


    class WrongWidth(api.Method):
        name = "bad-width"
        description = "directions 5 wide on an 8-wide hook"

        def discover(self, ctx):
            return api.FeatureSet(ctx.hook_name, torch.ones(2, 5), encoder=lambda x: x[..., :2])


    class WrongEncoderShape(api.Method):
        name = "bad-encoder-shape"
        description = "an encoder returning 3 columns for 2 features"

        def discover(self, ctx):
            return api.FeatureSet(ctx.hook_name, torch.eye(8)[:2], encoder=lambda x: x[..., :3])


    class PromptsByStealth(api.Method):
        name = "bad-kind"
        description = "declares directions, returns a prompting set"

        def discover(self, ctx):
            return api.FeatureSet(ctx.hook_name, torch.zeros(1, 8), encoder=lambda x: x[..., :1],
                                  meta={"steering_prompts": {"c0": "Be c0."}}, kind="prompts")


    class Prompts(api.Method):
        name = "toy-prompts"
        description = "a prompting method"
        kind = "prompts"

        def discover(self, ctx):  # pragma: no cover - refused before any work
            raise AssertionError("unreachable")


    class MlpNeurons(api.Method):
        name = "good-neurons"
        description = "MLP neurons: read at mlp.hook_post (16 wide), write d_model directions"

        def discover(self, ctx):
            w_out = ctx.subject.model.blocks[0].mlp.W_out.detach()
            return api.FeatureSet("blocks.0.mlp.hook_post", w_out, encoder=lambda x: x.float())
    '''
)


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "bad_features.py"
    path.write_text(PLUGIN)
    return ["--plugin", str(HELPERS_PATH), "--plugin", str(path)]


def run(plugin, tmp_path, methods, *extra):
    out = tmp_path / "res"
    argv = [*plugin, "-q", "run", "--task", "toy", "--model", "toy-hooked", "--method", methods,
            "--results-dir", str(out), *extra]  # fmt: skip
    return cli.main(argv), out


def stored(out, method):
    return read_result(result_path(out, "toy", "toy-hooked", method, 0))


@pytest.mark.parametrize(
    ("method", "says"),
    [
        ("bad-hook", "hook 'blocks.7.hook_resid_post' does not exist on the subject"),
        ("bad-nan", "encoder output contains NaN or inf"),
        ("bad-width", "width 5 is not 8"),
        ("bad-encoder-shape", "expected (32, 2) (rows, n_features)"),
        ("bad-kind", "task toy does not score feature sets of kind 'prompts'"),
    ],
)
def test_a_bad_feature_set_of_one_cell_exits_2_naming_the_method_and_is_recorded(plugin, tmp_path, capsys, method, says):
    code, out = run(plugin, tmp_path, method)
    _, err = capsys.readouterr()
    assert code == 2
    line = err.strip().splitlines()[-1]  # after the runner's log line of the failed cell
    assert line.startswith(f"deeprobe-bench: error: method {method} returned an invalid feature set: ")
    assert says in line and "Traceback" not in err
    r = stored(out, method)
    assert r.status == "error" and says in r.error and r.details["stage"] == "validate"
    assert not r.metrics


def test_in_a_grid_each_bad_cell_is_recorded_and_the_others_go_on(plugin, tmp_path, capsys):
    code, out = run(plugin, tmp_path, "toy-random,bad-nan,bad-width,good-neurons")
    text = capsys.readouterr().out
    assert code == 1  # some cells failed; their results say why
    assert stored(out, "toy-random").ok and stored(out, "good-neurons").ok
    assert "NaN" in stored(out, "bad-nan").error and "width 5" in stored(out, "bad-width").error
    assert "| toy-random " in text and "| bad-nan " in text


def test_a_set_at_another_real_hook_is_probed_there_and_the_probe_is_not_charged(plugin, tmp_path):
    code, out = run(plugin, tmp_path, "good-neurons")
    assert code == 0
    r = stored(out, "good-neurons")
    assert r.ok and r.details["features"]["hook_name"] == "blocks.0.mlp.hook_post"
    assert r.forward_passes == 0  # the validation pass at mlp.hook_post is not the method's cost


def test_a_method_of_a_kind_the_task_does_not_score_is_refused_before_any_work(plugin, tmp_path, capsys):
    code, out = run(plugin, tmp_path, "toy-random,toy-prompts")
    _, err = capsys.readouterr()
    assert code == 2
    assert "method toy-prompts returns feature sets of kind 'prompts'" in err and "task toy scores only" in err
    assert not out.exists() or not list(out.rglob("*.json"))  # nothing ran, nothing written


def test_the_validation_checks_known_cases_directly():
    import torch

    from deeprobe_bench.api import FeatureSet, InvalidFeatureSet

    d = torch.eye(4)[:2]
    fs = FeatureSet(HOOK, d, encoder=lambda x: x @ d.T)
    fs.validate({HOOK}, {4}, torch.randn(5, 4))  # fits
    fs.validate(None, set(), None)  # nothing to check against
    with pytest.raises(InvalidFeatureSet, match="did you mean 'blocks.0.hook_resid_post'"):
        FeatureSet("blocks.0.hook_resid_pots", d, encoder=lambda x: x @ d.T).validate({HOOK}, {4}, None)
    with pytest.raises(InvalidFeatureSet, match="directions contain NaN"):
        FeatureSet(HOOK, d * float("inf"), encoder=lambda x: x @ d.T).validate({HOOK}, {4}, None)
    with pytest.raises(ValueError, match="kind must be one of directions, prompts"):
        FeatureSet(HOOK, d, encoder=lambda x: x, kind="vectors")
    assert fs.subset([1]).kind == "directions"
    assert FeatureSet(HOOK, d, encoder=lambda x: x, kind="prompts").top(1).kind == "prompts"
    assert json.dumps(fs.meta) == "{}"


def test_probing_an_encoder_moves_no_random_stream_it_draws_from(toys):
    """An encoder may draw from its own generator (a plugin's noise feature): the probe must leave the task the
    same numbers (and the global generators alike)."""
    import torch

    from deeprobe_bench import api, runner
    from deeprobe_bench.references import Null

    subject = toys.ToySubject()
    task = toys.ToyTask()
    data = task.prepare(subject, 0)

    def null_set():
        ctx = api.DiscoveryContext(subject, data.hook_name, data.train_acts, None, 3, "null", api.Budget(None),
                                   lambda it, **kw: it)  # fmt: skip
        return Null().discover(ctx)

    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    fresh = null_set().encoder(x)
    probed = null_set()
    torch.manual_seed(7)
    runner.check_features(probed, "toy", task, data, subject)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(7)))  # global: as before
    assert torch.equal(probed.encoder(x), fresh)  # its own stream: as if never probed
    gen = torch.Generator().manual_seed(0)
    own = api.FeatureSet(HOOK, torch.eye(8)[:1], encoder=lambda a: torch.randn(*a.shape[:-1], 1, generator=gen))
    runner.check_features(own.subset([0]), "toy", task, data, subject)  # reached through subset's closure too
    assert torch.equal(own.encoder(x), torch.randn(5, 1, generator=torch.Generator().manual_seed(0)))


def test_a_task_that_scores_only_its_own_hook_refuses_a_set_read_elsewhere(toys):
    """IOI and persona intervene at their own hook: a set at another real hook is an error, not a silent
    evaluation at the task's hook."""
    import torch

    from deeprobe_bench import api, runner

    subject = toys.ToySubject()
    task = toys.ToyTask()
    data = task.prepare(subject, 0)
    task.other_hooks = False
    elsewhere = api.FeatureSet("blocks.0.mlp.hook_post", torch.eye(8)[:2], encoder=lambda x: x[..., :2])
    with pytest.raises(api.InvalidFeatureSet, match="task toy scores features at its hook blocks.0.hook_resid_post, "
                                                    "not at blocks.0.mlp.hook_post"):  # fmt: skip
        runner.check_features(elsewhere, "toy", task, data, subject)
