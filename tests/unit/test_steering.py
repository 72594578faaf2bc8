"""Steering helpers and metrics (deeprobe_bench/interventions.py, metrics/steering.py), and the
diffmean / prompt methods on constructed cases."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from deeprobe_bench.api import Budget, DiscoveryContext, FeatureSet, UserError
from deeprobe_bench.baselines.diffmean import DiffMean, counterpart
from deeprobe_bench.baselines.prompt import Prompt
from deeprobe_bench.interventions import add_vector, steering_hook
from deeprobe_bench.metrics import steering
from deeprobe_bench.progress import progress


def test_add_vector_only_where_masked():
    resid = torch.randn(2, 4, 3)
    v = torch.tensor([1.0, 2.0, 3.0])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    out = add_vector(resid, v, mask)
    assert torch.allclose(out - resid, mask[..., None].float() * v)
    assert torch.allclose(add_vector(resid, v) - resid, v.expand(2, 4, 3))
    assert torch.allclose(steering_hook(v, mask)(resid), out)


def test_choose_coefficient_takes_the_best_then_the_smallest():
    grid = [-1.0, 0.0, 0.5, 1.0]
    assert steering.choose_coefficient(grid, [0.1, 0.0, 0.3, 0.2]) == (0.5, 2)
    assert steering.choose_coefficient(grid, [0.2, 0.0, 0.1, 0.2]) == (1.0, 3)  # tie: positive
    assert steering.choose_coefficient(grid, [-0.1, 0.0, -0.2, -0.3]) == (0.0, 1)  # nothing helps: no push
    with pytest.raises(ValueError):
        steering.choose_coefficient(grid, [0.1])


def test_choose_coefficient_skips_coefficients_over_the_fluency_ceiling():
    grid = [-1.0, 0.0, 0.5, 2.0]
    shift, cost = [0.1, 0.0, 0.2, 0.4], [0.3, 0.0, 0.2, 4.5]  # 2.0 shifts most by breaking the model
    assert steering.choose_coefficient(grid, shift) == (2.0, 3)
    assert steering.choose_coefficient(grid, shift, cost, max_cost=0.5) == (0.5, 2)
    assert steering.choose_coefficient(grid, shift, cost, max_cost=None) == (2.0, 3)
    assert steering.choose_coefficient([1.0, 2.0], [0.1, 0.3], [1.0, 4.0], max_cost=0.5) == (1.0, 0)  # least cost
    with pytest.raises(ValueError):
        steering.choose_coefficient(grid, shift, [0.0])


def test_shift_and_fluency_cost():
    m, se = steering.shift(torch.tensor([0.9, 0.7]), torch.tensor([0.5, 0.5]))
    assert m == pytest.approx(0.3) and se == pytest.approx(0.1)
    assert steering.fluency_cost(2.5, 2.0) == 0.5


def test_detection_auroc_known_cases_and_columns_match_sklearn():
    y = np.array([True, True, False, False])
    assert steering.detection_auroc(torch.tensor([3.0, 2.0, 1.0, 0.0]), y) == 1.0
    assert steering.detection_auroc(torch.tensor([0.0, 1.0, 2.0, 3.0]), y) == 0.0
    assert np.isnan(steering.detection_auroc(torch.tensor([1.0, 2.0]), [True, True]))
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (50, 3), generator=g).float()  # many ties
    labels = torch.rand(50, generator=g) > 0.5
    cols = steering.auroc_columns(scores, labels)
    for j in range(3):
        assert float(cols[j]) == pytest.approx(roc_auc_score(labels.numpy(), scores[:, j].numpy()))


def test_prompts_are_carried_by_sets_of_kind_prompts_only():
    fs = FeatureSet("h", torch.zeros(1, 4), encoder=lambda x: x[..., :1], meta={steering.PROMPTS_KEY: {"c+": "Be c."}},
                    kind="prompts")  # fmt: skip
    assert steering.prompts_of(fs) == {"c+": "Be c."}
    fs.kind = "directions"  # the same instructions on a set of directions are not prompting
    assert steering.prompts_of(fs) is None
    assert steering.prompts_of(FeatureSet("h", torch.eye(2), encoder=lambda x: x)) is None


def _ctx(acts, labels=None, concepts=None, sup="labels", **fields):
    return DiscoveryContext(None, "h", acts, None, 0, sup, Budget(None), progress, labels=labels, concepts=concepts,
                            **fields)  # fmt: skip


def test_diffmean_recovers_a_planted_mean_difference_between_poles():
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(8, generator=g)
    n = 200
    pole = torch.rand(n, generator=g) > 0.5
    other_trait = torch.rand(n, generator=g) > 0.5  # rows of another trait carry no signal
    acts = torch.randn(n, 8, generator=g) + torch.where(pole & ~other_trait, 1.0, 0.0)[:, None] * planted
    labels = torch.stack([pole & ~other_trait, ~pole & ~other_trait, other_trait & pole, other_trait & ~pole], 1)
    concepts = ["t+", "t-", "u+", "u-"]
    poles = {"t+": "t-", "u+": "u-"}
    assert counterpart("t+", concepts, poles) == "t-" and counterpart("t-", concepts, poles) == "t+"
    assert counterpart("t+", concepts, None) is None and counterpart("IO=Mary", concepts, poles) is None
    assert counterpart("t+", ["t+"], poles) is None  # the opposite pole is not a label column
    fs = DiffMean().discover(_ctx(acts, labels, concepts, poles=poles))
    assert fs.meta["contrast"] == {"t+": "t-", "t-": "t+", "u+": "u-", "u-": "u+"}
    assert DiffMean().discover(_ctx(acts, labels, concepts)).meta["contrast"]["t+"] == "rest"  # no poles given
    v = fs.directions[fs.labels.index("t+")]
    assert torch.nn.functional.cosine_similarity(v, planted, dim=0) > 0.9
    assert float(fs.scores[fs.labels.index("t+")]) > float(fs.scores[fs.labels.index("u+")])
    assert fs.encoder(acts).shape == (n, 4)


def test_prompt_method_carries_the_task_instructions_or_refuses():
    acts = torch.randn(4, 8)
    fs = Prompt().discover(
        _ctx(acts, steering_prompts={"a+": "You are a.", "a-": "You are not a."}, sup="none")
    )
    assert steering.prompts_of(fs) == {"a+": "You are a.", "a-": "You are not a."}
    assert fs.labels == ["a+", "a-"] and fs.directions.shape == (2, 8)
    with pytest.raises(UserError, match="steering instructions"):
        Prompt().discover(_ctx(acts, sup="none"))


def test_the_runner_refuses_prompting_on_a_task_that_cannot_score_it(toys, tmp_path):
    from deeprobe_bench import registry, runner
    from deeprobe_bench.api import Method

    class ToyPrompt(Method):
        name = "toy-prompt"
        description = "returns a prompting FeatureSet"
        kind = "prompts"

        def discover(self, ctx):  # pragma: no cover - refused before any work
            raise AssertionError("unreachable")

    class ToySneakyPrompt(ToyPrompt):
        name = "toy-sneaky-prompt"
        kind = "directions"  # declares directions, returns prompts: refused when it comes back

        def discover(self, ctx):
            return FeatureSet(ctx.hook_name, torch.zeros(1, ctx.train_acts.shape[1]), encoder=lambda x: x[..., :1],
                              meta={steering.PROMPTS_KEY: {"c0": "Be c0."}}, kind="prompts")  # fmt: skip

    registry.register_method(ToyPrompt)
    registry.register_method(ToySneakyPrompt)
    with pytest.raises(UserError, match="kind 'prompts', and task toy scores only 'directions'"):
        runner.run_cell("toy", "toy", "toy-prompt", 0, results_dir=str(tmp_path), progress=False,
                        subject_loader=toys.load_toy_subject)  # fmt: skip
    assert not list(tmp_path.rglob("*.json"))
    r = runner.run_cell("toy", "toy", "toy-sneaky-prompt", 0, results_dir=str(tmp_path), progress=False,
                        subject_loader=toys.load_toy_subject)  # fmt: skip
    assert r.status == "error" and "does not score feature sets of kind 'prompts'" in r.error


def test_concept_span_starts_where_a_contrast_pair_differs():
    from deeprobe_bench.tasks.persona.metrics import Prompts, concept_span

    # BOS=0, system 5, instruction 1 / 2 (the pole) or answer 3 / 4 at the end, question 6 7, padding 9
    tokens = torch.tensor([[0, 5, 1, 6, 7, 9], [0, 5, 2, 6, 7, 9], [0, 5, 6, 7, 3, 9], [0, 5, 6, 7, 4, 9]])
    lengths = torch.tensor([5, 5, 5, 5])
    span = concept_span(Prompts(tokens, lengths, torch.zeros(4, 6, 2)))
    assert span.int().tolist() == [[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0]]
    with pytest.raises(ValueError, match="pairs"):
        concept_span(Prompts(tokens[:3], lengths[:3], torch.zeros(3, 6, 2)))
    prefix = torch.tensor([[0, 5, 6, 7, 9, 9], [0, 5, 6, 7, 3, 9]])  # the first is a prefix of the second
    with pytest.raises(ValueError, match="prefix"):
        concept_span(Prompts(prefix, torch.tensor([4, 5]), torch.zeros(2, 6, 2)))


def test_target_nll_asks_for_the_next_token_and_for_an_answer_at_the_last():
    from deeprobe_bench.tasks.persona.metrics import fluency_cost, target_nll

    yes, no = 3, 4
    tokens = torch.tensor([[0, 1, 2, 9]])  # length 3: targets 1, 2, then an answer; position 3 is padding
    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 1] = logits[0, 1, 2] = 10.0  # confident and right
    logits[0, 2, yes] = logits[0, 2, no] = 10.0  # either answer
    nll = target_nll(logits, tokens, torch.tensor([3]), yes, no)
    assert nll[0, :3].max() < 1e-3 and nll[0, 3] == 0
    worse = logits.clone()
    worse[0, 2] = 0.0  # uniform over 5 tokens: p(Yes or No) = 2/5
    nll_w = target_nll(worse, tokens, torch.tensor([3]), yes, no)
    assert float(nll_w[0, 2]) == pytest.approx(-np.log(2 / 5), abs=1e-3)
    mask = torch.tensor([[False, False, True, False]])  # scored at the last token only
    cost = fluency_cost(torch.stack([nll, nll_w]), nll[0], mask)
    assert cost.tolist() == pytest.approx([0.0, float(nll_w[0, 2] - nll[0, 2])])
