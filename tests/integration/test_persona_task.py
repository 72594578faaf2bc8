"""The persona task end to end on the shipped zoo model persona-mini (loaded, never trained, in tests)."""

import json

import pytest
import torch
from helpers import task_context

from deeprobe_bench import cli
from deeprobe_bench.api import FeatureSet, UserError, parse_config
from deeprobe_bench.baselines.diffmean import DiffMean
from deeprobe_bench.baselines.prompt import Prompt
from deeprobe_bench.baselines.random import RandomDirections
from deeprobe_bench.tasks.persona import PersonaTask
from deeprobe_bench.tasks.persona.zoo import PERSONA_MINI

# one trait and a moderate grid keep the module fast
SMALL = {"traits": "agreeableness", "coefficients": "-1.5,-1,-0.5,0,0.5,1,1.5"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    import os

    os.environ.setdefault("DEEPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
    subject = PERSONA_MINI.load()
    task = PersonaTask(parse_config(PersonaTask.Config, SMALL))
    return subject, task, task.prepare(subject, seed=0, limit=96)  # 16 contrast pairs per half


def test_shipped_persona_mini_meets_its_bar_and_is_small():
    card = PERSONA_MINI.load().card
    assert card["quality"]["stated_persona_accuracy"] >= 0.9 and card["quality"]["bar_met"]
    assert abs(card["quality"]["no_persona_p_plus"] - 0.5) < 0.1  # undecided between the poles without a persona
    for f in PERSONA_MINI.path().rglob("*"):
        assert f.stat().st_size < 20 * 2**20, f


def test_without_a_persona_the_model_is_undecided(prepared):
    _, _, data = prepared
    assert 0.4 < data.info["p_plus_clean"]["test"] < 0.6


def test_prompting_steers_and_random_vectors_do_not(prepared):
    subject, task, data = prepared
    prompt = task.evaluate(data, Prompt().discover(task_context(subject, data, "none")))
    rand = task.evaluate(data, RandomDirections().discover(task_context(subject, data, "none")))
    assert prompt["steering_success"].value > 0.3  # the model follows a stated persona (card: p 0.992)
    assert abs(rand["steering_success"].value) < 0.05


def test_the_mean_difference_steers_and_detects_its_own_concept_and_random_directions_do_not(prepared):
    subject, task, data = prepared
    diffmean = task.evaluate(data, DiffMean().discover(task_context(subject, data, "labels")))
    per_trait = diffmean["_details"]["steering"]["per_trait"]["agreeableness"]
    # measured (task v5, agreeableness, held out): 0.472 at c = 1.5 own norms, 0.001 nats
    assert diffmean["steering_success"].value > 0.3 and per_trait["fluency_cost"] < task.config.max_fluency_cost
    assert diffmean["detection_auroc"].value >= 0.9  # its own concept on held-out contrast rows (measured 1.000)
    for seed in range(3):
        ctx = task_context(subject, data, "none", seed)
        assert abs(task.evaluate(data, RandomDirections().discover(ctx))["steering_success"].value) < 0.05


def test_the_fluency_ceiling_keeps_disruptive_coefficients_out(prepared):
    subject, task, data = prepared
    fs = DiffMean().discover(task_context(subject, data, "labels"))
    # 20 own norms swamps the residual (norm about 2.3, the vector's about 7): the answer stops being an answer
    big = PersonaTask(parse_config(PersonaTask.Config, {**SMALL, "coefficients": "0,0.5,1,20"}))
    capped = big._steer_trait(data, fs, "agreeableness", "test")
    assert capped["train_fluency_cost"][3] > big.config.max_fluency_cost
    assert capped["coefficient"] in (0.5, 1.0) and capped["fluency_cost"] <= big.config.max_fluency_cost
    free = PersonaTask(
        parse_config(PersonaTask.Config, {**SMALL, "coefficients": "0,0.5,1,20", "max_fluency_cost": "None"})
    )
    uncapped = free._steer_trait(data, fs, "agreeableness", "test")
    assert uncapped["train_shift"] >= capped["train_shift"]  # the ceiling only removes options


def test_the_fluency_cost_is_measured_where_the_vector_is_added(prepared):
    subject, task, data = prepared
    v = 20 * DiffMean().discover(task_context(subject, data, "labels")).directions[0]
    rows = task._trait_rows(data.extra["halves"]["train"].statements, "agreeableness")[:16]
    _, last = task._curve(data, "train", v, rows, [1.0])
    every = PersonaTask(parse_config(PersonaTask.Config, {**SMALL, "positions": "all"}))
    _, all_ = every._curve(data, "train", v, rows, [1.0])
    _, zero = task._curve(data, "train", v, rows, [0.0])
    assert float(zero[0]) == pytest.approx(0.0, abs=1e-6)  # nothing added: nothing lost
    # at every token the vector also breaks the prediction of the question's own words
    assert float(all_[0]) > float(last[0]) > task.config.max_fluency_cost


def test_steering_the_last_token_alone_recomputes_only_it_and_gives_the_whole_pass_s_numbers(prepared):
    from deeprobe_bench.hooks import SuffixRun
    from deeprobe_bench.tasks.persona import metrics as persona_metrics

    subject, task, data = prepared
    v = DiffMean().discover(task_context(subject, data, "labels")).directions[0]
    q = data.extra["halves"]["train"].questions
    assert len(set(q.lengths.tolist())) > 1  # prompts of several lengths: the run groups them
    vecs = torch.tensor([-2.0, 0.0, 1.0, 3.0])[:, None] * v[None, :]
    p, nll = persona_metrics.steered(subject, q, data.hook_name, vecs, "last")
    run = SuffixRun(subject.model, data.hook_name, q.lengths, q.resid)
    p_last, answer_nll = persona_metrics.steered_last(subject, q, torch.arange(len(q)), vecs, run)
    torch.testing.assert_close(p_last, p, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(answer_nll, nll[:, torch.arange(len(q)), q.last], rtol=1e-4, atol=1e-5)
    assert float((p[3] - p[1]).abs().max()) > 0.1  # the vector moved the answer
    # the task's curve takes the last-token path under positions="last"; the same shift and cost as the whole pass
    rows = task._trait_rows(data.extra["halves"]["train"].statements, "agreeableness")[:16]
    shift, cost = task._curve(data, "train", v, rows, [-1.0, 1.0, 3.0])
    assert len(data.extra["last_token_runs"]) >= 1
    sub = q.rows(rows)
    p_all, nll_all = persona_metrics.steered(subject, sub, data.hook_name, torch.tensor([-1.0, 1.0, 3.0])[:, None] * v,
                                             "last")  # fmt: skip
    stm = [data.extra["halves"]["train"].statements[i] for i in rows.tolist()]
    base = data.extra["base"]["train"][rows][None, :]
    want = persona_metrics.p_match(p_all, stm) - persona_metrics.p_match(base, stm)
    clean = data.extra["base_nll"]["train"][rows, : sub.tokens.shape[1]]
    torch.testing.assert_close(shift, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cost, persona_metrics.fluency_cost(nll_all, clean, sub.steer_mask("last")),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_a_direction_and_its_negation_steer_alike(prepared):
    subject, task, data = prepared
    v = DiffMean().discover(task_context(subject, data, "labels")).directions[0]
    up = task.evaluate(data, FeatureSet(data.hook_name, v[None], encoder=lambda x: x @ v[:, None]))
    down = task.evaluate(data, FeatureSet(data.hook_name, -v[None], encoder=lambda x: -(x @ v[:, None])))
    # unlabelled: the coefficient grid (both signs) decides the direction, so v and -v steer alike
    assert up["steering_success"].value == pytest.approx(down["steering_success"].value, abs=1e-6)
    assert up["coefficient"].value == pytest.approx(-down["coefficient"].value)
    assert up["detection_auroc"].value > 0.9 > 0.1 > down["detection_auroc"].value  # a signed readout
    zero = task.evaluate(data, FeatureSet(data.hook_name, torch.zeros(1, v.shape[0]), encoder=lambda x: x[..., :1] * 0))
    assert zero["steering_success"].value == pytest.approx(0.0, abs=1e-6)
    assert zero["detection_auroc"].value == 0.5


def test_coefficients_are_in_units_of_the_vector_s_own_norm(prepared):
    subject, task, data = prepared
    v = DiffMean().discover(task_context(subject, data, "labels")).directions[0]
    rows = task._trait_rows(data.extra["halves"]["train"].statements, "agreeableness")[:16]
    a, _ = task._curve(data, "train", v, rows, [0.5])
    b, _ = task._curve(data, "train", 0.25 * v, rows, [2.0])
    assert torch.allclose(a, b, atol=1e-5)  # 0.5 x v and 2 x (v / 4) add the same vector


def test_handwritten_statements_need_a_tokenizer_that_knows_them(prepared):
    subject, _, _ = prepared
    task = PersonaTask(parse_config(PersonaTask.Config, {"source": "handwritten", **SMALL}))
    with pytest.raises(UserError, match="does not know a word"):
        task.prepare(subject, seed=0)


def test_a_prompt_longer_than_the_context_is_a_user_error(prepared):
    subject, _, _ = prepared
    task = PersonaTask(
        parse_config(PersonaTask.Config, {**SMALL, "system_prompt": " ".join(["You are an assistant."] * 30)})
    )
    with pytest.raises(UserError, match="longer than the context"):
        task.prepare(subject, seed=0)


def test_objective_is_train_steering_success(prepared):
    subject, task, data = prepared
    fs = DiffMean().discover(task_context(subject, data, "labels")).subset([0])
    shift = task._steer_trait(data, fs.chosen(), "agreeableness", None)["train_shift"]
    assert task.objective(data, fs) == pytest.approx(shift - task.config.size_penalty * 1)
    assert task.objective(data, Prompt().discover(task_context(subject, data, "none"))) > 0.3


def test_prompting_is_refused_by_a_task_that_offers_no_instruction(prepared):
    subject, _, data = prepared
    ctx = task_context(subject, data, "none")
    ctx.steering_prompts = None
    with pytest.raises(UserError):
        Prompt().discover(ctx)


def test_cli_runs_persona_cells_and_records_the_coefficient(tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["-q", "run", "--task", "persona", "--method", "diffmean,contrastive,prompt", "--limit", "24",
            "--results-dir", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "steering_success" in capsys.readouterr().out
    for path in out.rglob("*.json"):
        result = json.loads(path.read_text())
        assert result["status"] == "ok", result.get("error")
        per_trait = result["details"]["steering"]["per_trait"]
        assert set(per_trait) == {"agreeableness", "conscientiousness", "extraversion"}
        if result["method"] != "prompt":
            assert all("coefficient" in v for v in per_trait.values())


def test_the_empty_set_steers_nothing(prepared):
    subject, task, data = prepared
    empty = FeatureSet(
        data.hook_name, torch.zeros(1, subject.model.cfg.d_model), encoder=lambda x: x[..., :1], selected=0
    )
    assert task.objective(data, empty) == 0.0
    assert task.evaluate(data, empty)["steering_success"].value == 0.0
