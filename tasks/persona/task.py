"""The ``persona`` task: steer a persona trait, CAA-style (Panickssery et al. 2023). Definitions: README.md."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from deeprobe_bench.api import FeatureSet, Metric, Task, TaskData, UserError, check_subset
from deeprobe_bench.tasks.persona.data import SYSTEM_PROMPT  # no torch: `ls` stays fast

logger = logging.getLogger(__name__)

# In units of each vector's own norm: 0.25 steps up to 1, then 1.5, 2 and 3, so every vector is tried at up to
# three times its own length (version 4's grid was in units of the mean residual norm and stopped at twice
# it, below the 1.9-3.0 x of the methods' own vectors).
DEFAULT_GRID: tuple[float, ...] = (-3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


@dataclass
class PersonaConfig:
    """Options of the ``persona`` task (``-T key=value``).

    Attributes:
        hook: hook point studied; default the model card's task hook, else the subject's first SAE hook.
        source: statements: ``templated`` (lexicons x templates; the zoo model's), ``handwritten`` (50
            pairs per trait, for pretrained models) or ``auto`` (templated for zoo models, else handwritten).
        system_prompt: the persona-neutral sentence every prompt opens with (``data.SYSTEM_PROMPT``; the
            zoo corpus opens every persona document with it, as a chat model runs under its default system
            prompt); None: none.
        traits: the traits scored (each steered towards its ``+`` pole).
        coefficients: the fixed grid of steering coefficients, in units of the vector's own norm (a
            coefficient c adds ``c * v``); the best on the train half is used.
        contrast: the labelled rows methods see: ``persona`` (each train question after the ``+`` and the
            ``-`` instruction of its trait, last token; the ActAdd / instruction contrast) or ``answer``
            (each train question followed by `` Yes`` and `` No``, the answer token; CAA's contrast).
        positions: where the vector is added: the ``last`` token of the prompt, where the answer is read
            (default), or ``all`` non-BOS tokens (CAA). The fluency cost is measured at the same positions.
        max_fluency_cost: the fluency ceiling (nats per token, at the positions where the intervention acts):
            coefficients (and instructions) that cost more on the train half are not chosen (None: no ceiling).
        size_penalty: objective = mean train shift - size_penalty * |chosen set|.
        objective_batch: train statements per trait the objective scores (a fixed, seeded subsample: a
            cheap reward, as FUSE advises); the coefficient of ``evaluate`` is chosen on all of them.
    """

    hook: str | None = None
    source: Literal["auto", "templated", "handwritten"] = "auto"
    system_prompt: str | None = SYSTEM_PROMPT
    contrast: Literal["persona", "answer"] = "persona"
    traits: tuple[str, ...] = ("agreeableness", "conscientiousness", "extraversion")
    coefficients: tuple[float, ...] = DEFAULT_GRID
    positions: Literal["all", "last"] = "last"
    max_fluency_cost: float | None = 0.5
    size_penalty: float = 0.001
    objective_batch: int = 48

    def __post_init__(self) -> None:
        from deeprobe_bench.tasks.persona.data import TRAITS

        check_subset("traits", self.traits, tuple(TRAITS))
        if not self.coefficients or not all(math.isfinite(c) for c in self.coefficients):
            raise ValueError("coefficients must be a non-empty list of finite numbers")
        if self.objective_batch < 1 or self.size_penalty < 0:
            raise ValueError("objective_batch must be >= 1, size_penalty >= 0")
        if self.max_fluency_cost is not None and not self.max_fluency_cost >= 0:
            raise ValueError("max_fluency_cost must be >= 0 (or None for no ceiling)")


@dataclass
class Readout:
    """How one feature of a set steers one trait: its index, the sign towards the ``+`` pole, and why."""

    index: int
    sign: float
    how: str


def _judge_examples(subject: Any, halves: dict[str, Any], concepts: list[str]) -> dict[str, Any]:
    """LLM-judge examples: the contrast rows of the train and test halves, the site token marked, with
    their trait-pole concepts (read only by the local judge server)."""
    from deeprobe_bench.metrics.autointerp import examples_from_tokens

    out = {}
    for key, split in (("train", "train"), ("eval", "test")):
        h = halves[split]
        out[key] = examples_from_tokens(subject.tokenizer, h.contrast.tokens, h.contrast.lengths, h.contrast.last,
                                        h.contrast_acts(), h.labels, concepts, name=f"persona {split} contrast rows")  # fmt: skip
    return out


class PersonaTask(Task):
    """Persona steering (CAA, Panickssery et al. 2023; persona evals, Perez et al. 2022): add a vector at the
    last prompt token and measure how far the model's Yes / No answers to a trait's statements move towards
    the trait's ``+`` pole.

    Scores ``steering_success`` (the shift, in probability, at the best coefficient of a fixed grid chosen
    on the train half under a fluency ceiling), ``steering_fraction`` of the oracle's shift,
    ``fluency_cost`` (nats per token) and ``detection_auroc``. Accepts prompts (the prompting baseline)
    as well as directions.
    """

    name = "persona"
    description = "persona steering (CAA / persona evals): steering success, fluency cost, detection AUROC"
    # 3: fluency ceiling of the coefficient choice; detection over the statement's own tokens
    # 4: prompts open with the system prompt; the persona contrast is read at the last token (was the
    #    instruction's pole word); a finer coefficient grid
    # 5: coefficients in units of each vector's own norm, up to 3x; the vector is added at the last token and
    #    the fluency cost measured where it acts, on the steered prompts (was: every token of neutral text);
    #    prompting held to the same ceiling; detection of the concept the method was given (held-out
    #    contrast rows, max-pooled); oracle_features
    # 6: steering_fraction (the shift over its attainable ceiling on the test half); calibration notes
    version = "6"
    Config = PersonaConfig
    primary_metric = "steering_success"
    default_model = "persona-mini"
    provides = ("token_acts", "lengths", "pairs", "steering_prompts", "poles")
    accepts = ("directions", "prompts")  # prompting (baselines/prompt.py) is scored like a vector
    calibration_notes = {
        "steering_success": "a shift of p(+ answer), capped by the test half's attainable shift "
                            "(task_info.steering_ceiling, about 0.5), not 1: steering_fraction is its calibrated form",
        "coefficient": "the chosen coefficient (units of the vector's own norm), not a score",
        "fluency_cost": "a cost in nats held under max_fluency_cost, not a score",
    }  # fmt: skip
    calibration_chance = {"detection_auroc": 0.5}

    # ------------------------------------------------------------------ prepare

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        import torch

        from deeprobe_bench.tasks.persona import data
        from deeprobe_bench.tasks.persona import metrics as persona_metrics

        cfg = self.config
        hook = cfg.hook or subject.card.get("task", {}).get("hook_name") or next(iter(subject.saes), None)
        if hook is None:
            raise UserError(f"model {subject.name} names no hook for persona and has no SAE; pass -T hook=...")
        source = cfg.source
        if source == "auto":
            source = "templated" if "recipe" in subject.card else "handwritten"
        concepts = [f"{t}{p}" for t in cfg.traits for p in data.POLES]
        halves = {}
        for split in ("train", "test"):
            rows = data.statements(source, split, cfg.traits)
            if limit is not None:  # keep whole contrast pairs, every trait
                rows = [s for s in rows if s.pair < max(1, limit // (2 * len(cfg.traits)))]
            halves[split] = persona_metrics.build_split(subject, rows, hook, concepts, cfg.contrast, cfg.system_prompt)
        train = halves["train"]
        scale = persona_metrics.residual_scale(train.questions)
        pair = torch.arange(len(train.contrast)) ^ 1  # rows 2i and 2i+1 are one statement's two contrast prompts
        instructions = {f"{t}{p}": data.instruction(t, p) for t in cfg.traits for p in data.POLES}
        gen = torch.Generator().manual_seed(seed)
        objective_rows = {}
        for t in cfg.traits:
            rows_t = torch.tensor([i for i, s in enumerate(train.statements) if s.trait == t], dtype=torch.long)
            objective_rows[t] = rows_t[torch.randperm(len(rows_t), generator=gen)[: cfg.objective_batch]].sort().values
        base, base_nll = {}, {}
        for split, h in halves.items():
            p, nll = persona_metrics.steered(subject, h.questions, hook)
            base[split], base_nll[split] = p[0], nll[0]
        n_system = int(subject.to_tokens([cfg.system_prompt])[1][0]) - 1 if cfg.system_prompt else 0
        ceiling = {s: float((1 - persona_metrics.p_match(b[None], halves[s].statements)).mean()) for s, b in base.items()}
        logger.info("persona on %s at %s (%s statements): residual scale %.3f", subject.name, hook, source, scale)
        out = TaskData(
            hook_name=hook,
            train_acts=train.contrast_acts(),
            train_labels=train.labels,
            concepts=concepts,
            n_train=len(train.statements),
            n_test=len(halves["test"].statements),
            examples=_judge_examples(subject, halves, concepts),
            token_acts=train.contrast.resid,
            lengths=train.contrast.lengths,
            pairs=pair,
            steering_prompts=instructions,
            poles={f"{t}{data.POLES[0]}": f"{t}{data.POLES[1]}" for t in cfg.traits},
            extra={
                "subject": subject,
                "halves": halves,
                "scale": scale,
                "base": base,
                "base_nll": base_nll,
                "source": source,
                "objective_rows": objective_rows,
                "n_system": n_system,
            },
            info={
                "hook_name": hook,
                "source": source,
                "traits": list(cfg.traits),
                "target": "the + pole of each trait (agreeable, conscientious, extraverted)",
                "system_prompt": cfg.system_prompt,
                "rows": f"train_acts: last token of each train statement's two {cfg.contrast} contrast prompts",
                "steering": f"x + c * v at the {cfg.positions} non-BOS prompt "
                f"token(s) of the hook; c from {list(cfg.coefficients)} chosen on the train half",
                "fluency": "increase of the loss of the next prompt token (and, at the last token, of giving an "
                f"answer, -log(p(Yes) + p(No))) at the {cfg.positions} token(s) where the intervention acts",
                "detection": "held-out contrast rows of the concept the method was given, max-pooled over the "
                "tokens from the first one that differs from the contrast partner",
                "residual_scale": scale,
                "statements": {s: len(h.statements) for s, h in halves.items()},
                "p_yes_clean": {s: float(b.mean()) for s, b in base.items()},
                "p_plus_clean": {s: float(persona_metrics.p_match(b[None], halves[s].statements).mean()) for s, b in base.items()},
                "steering_ceiling": ceiling,
            },
        )
        for h in halves.values():  # the default oracle's encoder reads the labels of the contrast rows
            out.add_reference_rows(hook, h.contrast_acts(), h.labels)
        return out

    # ------------------------------------------------------------------ oracle

    def oracle_features(self, data: TaskData, seed: int) -> FeatureSet:
        """The ceiling of every metric (README, "Calibration"): one feature per concept ``<t><p>``.

        - direction: the mean over the **held-out** statements of trait ``t`` of (the activation at the last
          token of the question after the instruction of pole ``p``) - (the same without it): adding it to
          a bare held-out question moves its answer state where stating the persona would;
        - encoder: the concept's label on every contrast row of both halves (a label lookup,
          :func:`deeprobe_bench.references.label_lookup_features`), 0 on any other activation.
        """
        import torch

        from deeprobe_bench.references import label_lookup_features
        from deeprobe_bench.tasks.persona import data as pdata
        from deeprobe_bench.tasks.persona import metrics as persona_metrics

        lookup = label_lookup_features(data, seed)
        subject, test = data.extra["subject"], data.extra["halves"]["test"]
        stm = test.statements
        texts = [pdata.with_system(f"{pdata.instruction(s.trait, p)} {pdata.question(s.text)}", self.config.system_prompt)
                 for s in stm for p in pdata.POLES]  # fmt: skip
        stated = persona_metrics.encode(subject, texts, data.hook_name).last_acts().float()
        bare = test.questions.last_acts().float()
        dirs = []
        for concept in data.concepts:
            trait, pole = concept[:-1], concept[-1]
            rows = torch.tensor([i for i, s in enumerate(stm) if s.trait == trait], dtype=torch.long)
            k = pdata.POLES.index(pole)
            dirs.append((stated[2 * rows + k] - bare[rows]).mean(0))
        return FeatureSet(data.hook_name, torch.stack(dirs), encoder=lookup.encoder, labels=list(data.concepts),
                          meta={"reference": "oracle", "oracle": "directions: held-out mean of (stated persona - "
                                "bare question) at the last token; encoder: concept labels of the contrast rows"})  # fmt: skip

    # ------------------------------------------------------------------ readout

    def readout(self, data: TaskData, features: FeatureSet, trait: str) -> Readout:
        """Which feature of ``features`` steers ``trait`` towards its ``+`` pole, with which sign.

        1. a feature labelled ``<trait>+`` (first one): sign +1;
        2. else one labelled ``<trait>-``: sign -1;
        3. else (a set without concept labels) its best-ranked feature, sign +1: an unsupervised method
           commits to its own ranking and gets no labels here; the coefficient grid holds both signs, so
           the train half still decides which way to push.
        """
        labels = features.labels or []
        for suffix, sign in (("+", 1.0), ("-", -1.0)):
            if f"{trait}{suffix}" in labels:
                return Readout(labels.index(f"{trait}{suffix}"), sign, f"label {trait}{suffix}")
        rank = features.ranking()
        if not rank:
            raise UserError("persona: the feature set has no feature to steer with")
        return Readout(rank[0], 1.0, "best-ranked feature")

    # ------------------------------------------------------------------ steering

    def _unit(self, data: TaskData, vector) -> Any:
        """The vector one coefficient unit adds: the vector itself, at its own norm."""
        return vector.float()

    def _curve(self, data: TaskData, split: str, vector, rows, coefficients=None) -> tuple[Any, Any]:
        """``(shift: Float[Tensor, "g n"], cost: Float[Tensor, "g"])``: the shift of p(+ pole answer) on the
        statements ``rows`` of ``split`` and the fluency cost there (nats per token at the positions the
        vector is added), for each coefficient (default: the grid)."""
        import torch

        from deeprobe_bench.tasks.persona import metrics as persona_metrics

        h = data.extra["halves"][split]
        grid = torch.tensor(self.config.coefficients if coefficients is None else coefficients, dtype=torch.float32)
        vecs = grid[:, None] * self._unit(data, vector)[None, :]
        q = h.questions.rows(rows)
        stm = [h.statements[i] for i in rows.tolist()]
        subject = data.extra["subject"]
        base = data.extra["base"][split][rows][None, :]
        clean = data.extra["base_nll"][split][rows, : q.tokens.shape[1]]
        run = self._last_token_run(data, split)
        if run is not None:  # the vector acts on the last token alone: only that token is recomputed
            p, answer_nll = persona_metrics.steered_last(subject, h.questions, rows, vecs, run)
            cost = (answer_nll - clean[torch.arange(len(rows)), q.last][None, :]).mean(1)
        else:
            p, nll = persona_metrics.steered(subject, q, data.hook_name, vecs, self.config.positions)
            cost = persona_metrics.fluency_cost(nll, clean, q.steer_mask(self.config.positions))
        return persona_metrics.p_match(p, stm) - persona_metrics.p_match(base, stm), cost

    def _last_token_run(self, data: TaskData, split: str) -> Any:
        """The :class:`~deeprobe_bench.hooks.SuffixRun` from the last token of the questions of ``split`` (built
        once and kept in ``data.extra``; every curve steers some of its rows), or None where it does not apply:
        the vector acts on every token (``positions="all"``), or no run can start at the hook
        (:meth:`SuffixRun.applies`)."""
        from deeprobe_bench.hooks import SuffixRun

        model = data.extra["subject"].model
        if self.config.positions != "last" or not SuffixRun.applies(model, data.hook_name):
            return None
        runs = data.extra.setdefault("last_token_runs", {})
        if split not in runs:
            q = data.extra["halves"][split].questions
            runs[split] = SuffixRun(model, data.hook_name, q.lengths, q.resid)
        return runs[split]

    def _trait_rows(self, statements, trait):
        import torch

        return torch.tensor([i for i, s in enumerate(statements) if s.trait == trait], dtype=torch.long)

    def _steer_trait(self, data: TaskData, features: FeatureSet, trait: str, split: str | None) -> dict[str, Any]:
        """Choose the coefficient for ``trait`` on the train half (the objective's subsample when ``split``
        is None); if ``split``, score it there too (shift and fluency cost)."""
        from deeprobe_bench.metrics.steering import choose_coefficient, shift

        r = self.readout(data, features, trait)
        vector = r.sign * features.directions[r.index]
        train = data.extra["halves"]["train"]
        rows = self._trait_rows(train.statements, trait) if split is not None else data.extra["objective_rows"][trait]
        d_train, c_train = self._curve(data, "train", vector, rows)
        curve = [float(x) for x in d_train.mean(1)]
        costs = [float(x) for x in c_train]
        coef, gi = choose_coefficient(list(self.config.coefficients), curve, costs if self.config.max_fluency_cost
                                      is not None else None, self.config.max_fluency_cost)  # fmt: skip
        out = {"readout": r, "vector": vector, "coefficient": coef, "train_shift": curve[gi], "train_curve": curve,
               "train_fluency_cost": costs, "unit_norm": float(self._unit(data, vector).norm())}  # fmt: skip
        if split is not None:
            test = data.extra["halves"][split]
            d, cost = self._curve(data, split, vector, self._trait_rows(test.statements, trait), [coef])
            out["shift"], out["shift_se"] = shift(d[0], 0 * d[0])
            out["fluency_cost"] = float(cost[0])
        return out

    def _prompted(self, data: TaskData, prompts: dict[str, str], trait: str, split: str) -> dict[str, Any]:
        """Steering by prompting: the ``<trait>+`` instruction between the system prompt and the question;
        shift and fluency cost (the loss of the question's own tokens and of an answer, at the positions
        the vectors are scored at: the last token, or every token after the instruction)."""
        import torch

        from deeprobe_bench.metrics.steering import shift
        from deeprobe_bench.tasks.persona import data as pdata
        from deeprobe_bench.tasks.persona import metrics as persona_metrics

        if f"{trait}+" not in prompts:
            raise UserError(f"persona: the prompting feature set has no instruction for {trait}+")
        h = data.extra["halves"][split]
        rows = self._trait_rows(h.statements, trait)
        stm = [h.statements[i] for i in rows.tolist()]
        texts = [pdata.with_system(f"{prompts[trait + '+']} {pdata.question(s.text)}", self.config.system_prompt)
                 for s in stm]  # fmt: skip
        subject = data.extra["subject"]
        pre = persona_metrics.encode(subject, texts, data.hook_name)
        p, nll = persona_metrics.steered(subject, pre, data.hook_name)
        d = persona_metrics.p_match(p, stm)[0] - persona_metrics.p_match(data.extra["base"][split][rows][None, :], stm)[0]
        bare = h.questions.rows(rows)
        # the same targets in both: the question's tokens and the answer (``all``), or the answer (``last``)
        n_tail = (
            bare.lengths - data.extra["n_system"] if self.config.positions == "all" else torch.ones_like(bare.lengths)
        )
        ar_p, ar_b = torch.arange(pre.tokens.shape[1])[None, :], torch.arange(bare.tokens.shape[1])[None, :]
        tail_p = (ar_p >= (pre.lengths - n_tail)[:, None]) & (ar_p < pre.lengths[:, None])
        tail_b = (ar_b >= (bare.lengths - n_tail)[:, None]) & (ar_b < bare.lengths[:, None])
        clean = data.extra["base_nll"][split][rows, : bare.tokens.shape[1]]
        cost = float(((nll[0] * tail_p).sum() - (clean * tail_b).sum()) / tail_b.sum().clamp_min(1))
        m, se = shift(d, 0 * d)
        return {"shift": m, "shift_se": se, "fluency_cost": cost}

    def _prompt_trait(self, data: TaskData, prompts: dict[str, str], trait: str, split: str | None) -> dict[str, Any]:
        """Prompting under the fluency rule of the vectors: the instruction is used when its train-half cost
        is within the ceiling, else none is (shift 0, as a coefficient of 0)."""
        train = self._prompted(data, prompts, trait, "train")
        ok = self.config.max_fluency_cost is None or train["fluency_cost"] <= self.config.max_fluency_cost
        out = {"train_shift": train["shift"] if ok else 0.0, "train_fluency_cost": train["fluency_cost"],
               "instruction": prompts[trait + "+"], "within_ceiling": ok}  # fmt: skip
        if split is not None:
            res = self._prompted(data, prompts, trait, split) if ok else {"shift": 0.0, "shift_se": 0.0,
                                                                           "fluency_cost": 0.0}  # fmt: skip
            out.update(shift=res["shift"], stderr=res["shift_se"], fluency_cost=res["fluency_cost"])
        return out

    # ------------------------------------------------------------------ detection

    def _detect(self, data: TaskData, features: FeatureSet, r: Readout, trait: str) -> float:
        """AUROC of the readout feature (signed), max-pooled over :func:`persona_metrics.concept_span`, for the held-out
        contrast rows of ``<trait>+`` against those of ``<trait>-`` (the concept the method was given)."""
        import torch

        from deeprobe_bench.metrics.steering import detection_auroc
        from deeprobe_bench.tasks.persona import metrics as persona_metrics

        test = data.extra["halves"]["test"]
        col = {c: j for j, c in enumerate(data.concepts)}
        pos, neg = test.labels[:, col[f"{trait}+"]], test.labels[:, col[f"{trait}-"]]
        span = persona_metrics.concept_span(test.contrast)
        rows = (pos | neg).nonzero().flatten()
        c = test.contrast.rows(rows)
        with torch.no_grad():
            acts = features.encoder(c.resid.float()).float()[..., r.index] * r.sign
        acts = acts.masked_fill(~span[rows, : c.tokens.shape[1]], float("-inf")).amax(1)
        return detection_auroc(acts, pos[rows])

    # ------------------------------------------------------------------ objective / evaluate

    def objective(self, data: TaskData, features: FeatureSet) -> float:
        """Mean over traits of the steering success on ``objective_batch`` train statements per trait at
        the coefficient best there (within the fluency ceiling), minus ``size_penalty * |chosen set|``."""
        from deeprobe_bench.metrics.steering import prompts_of

        chosen = features.chosen() if prompts_of(features) is None else features
        if len(chosen) == 0:  # the empty set steers nothing
            return 0.0
        if prompts_of(features) is not None:
            vals = [self._prompt_trait(data, prompts_of(features), t, None)["train_shift"] for t in self.config.traits]
        else:
            vals = [self._steer_trait(data, chosen, t, None)["train_shift"] for t in self.config.traits]
        return sum(vals) / len(vals) - self.config.size_penalty * len(chosen)

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Any]:
        from deeprobe_bench.metrics.steering import prompts_of

        prompts = prompts_of(features)
        per_trait: dict[str, Any] = {}
        shifts, ses, coefs, costs, aurocs = [], [], [], [], []
        for trait in self.config.traits:
            if prompts is not None:
                res = self._prompt_trait(data, prompts, trait, "test")
                per_trait[trait] = res
                shifts.append(res["shift"]), ses.append(res["stderr"]), costs.append(res["fluency_cost"])
                continue
            chosen = features.chosen()
            if len(chosen) == 0:  # the empty set steers nothing
                per_trait[trait] = {"shift": 0.0, "stderr": 0.0, "coefficient": 0.0, "fluency_cost": 0.0}
                shifts.append(0.0), ses.append(0.0), coefs.append(0.0), costs.append(0.0), aurocs.append(0.5)
                continue
            res = self._steer_trait(data, chosen, trait, "test")
            r = res["readout"]
            auroc = self._detect(data, chosen, r, trait)
            per_trait[trait] = {
                "shift": res["shift"], "stderr": res["shift_se"], "coefficient": res["coefficient"],
                "unit_norm": res["unit_norm"], "train_shift": res["train_shift"], "train_curve": res["train_curve"],
                "train_fluency_cost": res["train_fluency_cost"], "fluency_cost": res["fluency_cost"],
                "detection_auroc": auroc, "feature": r.index, "sign": r.sign, "readout": r.how,
                "label": (chosen.labels or [None] * len(chosen))[r.index],
            }  # fmt: skip
            shifts.append(res["shift"])
            ses.append(res["shift_se"])
            coefs.append(res["coefficient"])
            costs.append(res["fluency_cost"])
            aurocs.append(auroc)
        n = len(shifts)
        se = math.sqrt(sum(s * s for s in ses if s is not None)) / n if all(s is not None for s in ses) else None
        nan = float("nan")
        ceiling = data.info.get("steering_ceiling", {}).get("test")
        metrics: dict[str, Any] = {
            "steering_success": Metric(sum(shifts) / n, stderr=se),
            "steering_fraction": Metric(sum(shifts) / n / ceiling if ceiling else nan),
            "coefficient": Metric(sum(coefs) / n if coefs else nan, higher_is_better=False),
            "fluency_cost": Metric(sum(costs) / n, higher_is_better=False),
            "detection_auroc": Metric(sum(aurocs) / n if aurocs else nan),
        }
        metrics["_details"] = {
            "steering": {
                "per_trait": per_trait,
                "mode": "prompt" if prompts is not None else "vector",
                "coefficients": list(self.config.coefficients),
                "positions": self.config.positions,
                "max_fluency_cost": self.config.max_fluency_cost,
                "split": "held-out statements, no persona stated; coefficient chosen on the train half",
                "ceiling": data.info.get("steering_ceiling", {}).get("test"),
            }
        }
        return metrics
