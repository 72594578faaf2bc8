"""The ``persona`` task: steer a persona trait, CAA-style (Panickssery et al. 2023). Definitions: README.md."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from deeprobe_bench.api import FeatureSet, Metric, Task, TaskData, UserError
from deeprobe_bench.tasks.persona.data import SYSTEM_PROMPT  # no torch: `ls` stays fast

logger = logging.getLogger(__name__)

# Steps of 0.25 up to |c| = 1, then 1.5 and 2 (AxBench sweeps its steering factor as finely). Version 3's grid
# had nothing between 0.5 and 1, where persona-mini's answers turn (README, "What the numbers mean").
DEFAULT_GRID: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


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
        coefficients: the fixed grid of steering coefficients, in units of the mean residual norm at the
            hook (a coefficient c adds ``c * scale * v / |v|``); the best on the train half is used.
        contrast: the labelled rows methods see: ``persona`` (each train question after the ``+`` and the
            ``-`` instruction of its trait, last token; the ActAdd / instruction contrast) or ``answer``
            (each train question followed by `` Yes`` and `` No``, the answer token; CAA's contrast).
        positions: where the vector is added: ``all`` non-BOS tokens of the prompt (CAA) or the ``last``.
        n_neutral: neutral texts of the fluency cost (and as many others, from another seed, on which the
            train-half coefficient choice measures it).
        max_fluency_cost: the fluency ceiling of the coefficient choice (nats per token on neutral text):
            coefficients that cost more on the train-side neutral texts are not chosen (None: no ceiling).
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
    positions: Literal["all", "last"] = "all"
    n_neutral: int = 64
    max_fluency_cost: float | None = 0.5
    size_penalty: float = 0.001
    objective_batch: int = 48

    def __post_init__(self) -> None:
        from deeprobe_bench.tasks.persona.data import TRAITS

        bad = [t for t in self.traits if t not in TRAITS]
        if bad or not self.traits:
            raise ValueError(f"traits must be a non-empty subset of {', '.join(TRAITS)}, got {self.traits}")
        if not self.coefficients or not all(math.isfinite(c) for c in self.coefficients):
            raise ValueError("coefficients must be a non-empty list of finite numbers")
        if self.n_neutral < 1 or self.objective_batch < 1 or self.size_penalty < 0:
            raise ValueError("n_neutral and objective_batch must be >= 1, size_penalty >= 0")
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
    name = "persona"
    description = "persona steering (CAA / persona evals): steering success, fluency cost, detection AUROC"
    # 3: fluency ceiling of the coefficient choice; detection over the statement's own tokens
    # 4: prompts open with the system prompt; the persona contrast is read at the last token (was the
    #    instruction's pole word); a finer coefficient grid
    version = "4"
    Config = PersonaConfig
    primary_metric = "steering_success"
    default_model = "persona-mini"
    accepts_prompts = True

    # ------------------------------------------------------------------ prepare

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        import torch

        from deeprobe_bench.tasks.persona import core, data

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
            halves[split] = core.build_split(subject, rows, hook, concepts, cfg.contrast, cfg.system_prompt)
        if source == "templated":
            neutral_texts = data.neutral_texts(cfg.n_neutral, 5_000_000 + seed)
            neutral_train_texts = data.neutral_texts(cfg.n_neutral, 6_000_000 + seed)
        else:  # the hand-written English texts: one half chooses the coefficient, the other scores it
            half = len(data.NEUTRAL_ENGLISH) // 2
            neutral_texts = list(data.NEUTRAL_ENGLISH[:half][: cfg.n_neutral])
            neutral_train_texts = list(data.NEUTRAL_ENGLISH[half:][: cfg.n_neutral])
        neutral = core.encode(subject, neutral_texts, hook)
        neutral_train = core.encode(subject, neutral_train_texts, hook)
        train = halves["train"]
        scale = core.residual_scale(train.questions)
        pair = torch.arange(len(train.contrast)) ^ 1  # rows 2i and 2i+1 are one statement's two contrast prompts
        instructions = {f"{t}{p}": data.instruction(t, p) for t in cfg.traits for p in data.POLES}
        gen = torch.Generator().manual_seed(seed)
        objective_rows = {}
        for t in cfg.traits:
            rows_t = torch.tensor([i for i, s in enumerate(train.statements) if s.trait == t], dtype=torch.long)
            objective_rows[t] = rows_t[torch.randperm(len(rows_t), generator=gen)[: cfg.objective_batch]].sort().values
        base = {}
        for split, h in halves.items():
            base[split] = core.p_yes(subject, h.questions, hook)[0]
        base_neutral = core.neutral_loss(subject, neutral, hook)
        base_neutral_train = core.neutral_loss(subject, neutral_train, hook)
        logger.info("persona on %s at %s (%s statements): residual scale %.3f, neutral loss %.3f",
                    subject.name, hook, source, scale, base_neutral)  # fmt: skip
        return TaskData(
            hook_name=hook,
            train_acts=train.contrast_acts(),
            train_labels=train.labels,
            concepts=concepts,
            n_train=len(train.statements),
            n_test=len(halves["test"].statements),
            examples=_judge_examples(subject, halves, concepts),
            context_extra={
                "token_acts": train.contrast.resid,
                "lengths": train.contrast.lengths,
                "pair": pair,
                "steering_prompts": instructions,
            },
            extra={"subject": subject, "halves": halves, "neutral": neutral, "neutral_texts": neutral_texts,
                   "scale": scale, "base": base, "base_neutral": base_neutral, "source": source,
                   "neutral_train": neutral_train, "base_neutral_train": base_neutral_train,
                   "objective_rows": objective_rows},  # fmt: skip
            info={
                "hook_name": hook,
                "source": source,
                "traits": list(cfg.traits),
                "target": "the + pole of each trait (agreeable, conscientious, extraverted)",
                "system_prompt": cfg.system_prompt,
                "rows": f"train_acts: last token of each train statement's two {cfg.contrast} contrast prompts",
                "steering": f"x + c * scale * v/|v| at {cfg.positions} non-BOS prompt tokens of the hook; "
                f"c from {list(cfg.coefficients)} chosen on the train half",
                "residual_scale": scale,
                "statements": {s: len(h.statements) for s, h in halves.items()},
                "neutral_texts": len(neutral_texts),
                "neutral_loss_clean": base_neutral,
                "p_yes_clean": {s: float(b.mean()) for s, b in base.items()},
                "p_plus_clean": {s: float(core.p_match(b[None], halves[s].statements).mean()) for s, b in base.items()},
            },
        )

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

    def _rows(self, data: TaskData, trait: str, labels=None):
        col = {c: j for j, c in enumerate(data.concepts)}
        lab = data.train_labels if labels is None else labels
        return lab[:, col[f"{trait}+"]].nonzero().flatten(), lab[:, col[f"{trait}-"]].nonzero().flatten()

    # ------------------------------------------------------------------ steering

    def _shifts(self, data: TaskData, split: str, vector, rows) -> Any:
        """``Float[Tensor, "g n"]``: shift of p(+ pole answer) on the statements ``rows`` of ``split``, for
        each coefficient of the grid."""
        import torch

        from deeprobe_bench.tasks.persona import core

        h = data.extra["halves"][split]
        grid = torch.tensor(self.config.coefficients, dtype=torch.float32)
        unit = vector.float() / vector.float().norm().clamp_min(1e-12)
        vecs = grid[:, None] * data.extra["scale"] * unit[None, :]
        stm = [h.statements[i] for i in rows.tolist()]
        p = core.p_yes(data.extra["subject"], h.questions.rows(rows), data.hook_name, vecs, self.config.positions)
        return core.p_match(p, stm) - core.p_match(data.extra["base"][split][rows][None, :], stm)

    def _train_costs(self, data: TaskData, vector) -> list[float]:
        """Fluency cost of each coefficient of the grid on the train-side neutral texts (nats per token)."""
        from deeprobe_bench.metrics.steering import fluency_cost
        from deeprobe_bench.tasks.persona import core

        unit = vector.float() / vector.float().norm().clamp_min(1e-12)
        subject, hook = data.extra["subject"], data.hook_name
        return [0.0 if c == 0 else fluency_cost(core.neutral_loss(subject, data.extra["neutral_train"], hook,
                                                                  vector=c * data.extra["scale"] * unit),
                                                data.extra["base_neutral_train"])
                for c in self.config.coefficients]  # fmt: skip

    def _trait_rows(self, statements, trait):
        import torch

        return torch.tensor([i for i, s in enumerate(statements) if s.trait == trait], dtype=torch.long)

    def _steer_trait(self, data: TaskData, features: FeatureSet, trait: str, split: str | None) -> dict[str, Any]:
        """Choose the coefficient for ``trait`` on the train half (the objective's subsample when ``split``
        is None); if ``split``, score it there too."""
        from deeprobe_bench.metrics.steering import choose_coefficient, shift

        r = self.readout(data, features, trait)
        vector = r.sign * features.directions[r.index]
        train = data.extra["halves"]["train"]
        rows = self._trait_rows(train.statements, trait) if split is not None else data.extra["objective_rows"][trait]
        d_train = self._shifts(data, "train", vector, rows)
        curve = [float(x) for x in d_train.mean(1)]
        costs = self._train_costs(data, vector) if self.config.max_fluency_cost is not None else None
        coef, gi = choose_coefficient(list(self.config.coefficients), curve, costs, self.config.max_fluency_cost)
        out = {"readout": r, "vector": vector, "coefficient": coef, "train_shift": curve[gi], "train_curve": curve,
               "train_fluency_cost": costs}  # fmt: skip
        if split is not None:
            test = data.extra["halves"][split]
            trows = self._trait_rows(test.statements, trait)
            d = self._shifts(data, split, vector, trows)[gi]
            out["shift"], out["shift_se"] = shift(d, 0 * d)
        return out

    def _prompted(self, data: TaskData, prompts: dict[str, str], trait: str, split: str) -> dict[str, Any]:
        """Steering by prompting: the ``<trait>+`` instruction between the system prompt and the question."""
        from deeprobe_bench.metrics.steering import shift
        from deeprobe_bench.tasks.persona import core
        from deeprobe_bench.tasks.persona import data as pdata

        if f"{trait}+" not in prompts:
            raise UserError(f"persona: the prompting feature set has no instruction for {trait}+")
        h = data.extra["halves"][split]
        rows = self._trait_rows(h.statements, trait)
        stm = [h.statements[i] for i in rows.tolist()]
        texts = [pdata.with_system(f"{prompts[trait + '+']} {pdata.question(s.text)}", self.config.system_prompt)
                 for s in stm]  # fmt: skip
        subject = data.extra["subject"]
        p = core.p_yes(subject, core.encode(subject, texts, data.hook_name), data.hook_name)
        d = core.p_match(p, stm)[0] - core.p_match(data.extra["base"][split][rows][None, :], stm)[0]
        m, se = shift(d, 0 * d)
        return {"shift": m, "shift_se": se}

    # ------------------------------------------------------------------ objective / evaluate

    def objective(self, data: TaskData, features: FeatureSet) -> float:
        """Mean over traits of the steering success on ``objective_batch`` train statements per trait at
        the coefficient best there, minus ``size_penalty * |chosen set|``."""
        from deeprobe_bench.metrics.steering import prompts_of

        chosen = features.chosen() if prompts_of(features) is None else features
        if len(chosen) == 0:  # the empty set steers nothing
            return 0.0
        if prompts_of(features) is not None:
            vals = [self._prompted(data, prompts_of(features), t, "train")["shift"] for t in self.config.traits]
        else:
            vals = [self._steer_trait(data, chosen, t, None)["train_shift"] for t in self.config.traits]
        return sum(vals) / len(vals) - self.config.size_penalty * len(chosen)

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Any]:
        import torch

        from deeprobe_bench.metrics.steering import detection_auroc, fluency_cost, prompts_of
        from deeprobe_bench.tasks.persona import core

        subject, hook = data.extra["subject"], data.hook_name
        prompts = prompts_of(features)
        per_trait: dict[str, Any] = {}
        shifts, ses, coefs, costs, aurocs = [], [], [], [], []
        for trait in self.config.traits:
            if prompts is not None:
                res = self._prompted(data, prompts, trait, "test")
                neutral_texts = data.extra["neutral_texts"]
                prefixed = core.encode(subject, [f"{prompts[trait + '+']} {t}" for t in neutral_texts], hook)
                loss = core.neutral_loss(subject, data.extra["neutral"], hook, prefix=prefixed)
                cost = fluency_cost(loss, data.extra["base_neutral"])
                per_trait[trait] = {"shift": res["shift"], "stderr": res["shift_se"], "fluency_cost": cost,
                                    "instruction": prompts[trait + "+"]}  # fmt: skip
                shifts.append(res["shift"])
                ses.append(res["shift_se"])
                costs.append(cost)
                continue
            chosen = features.chosen()
            if len(chosen) == 0:  # the empty set steers nothing
                per_trait[trait] = {"shift": 0.0, "stderr": 0.0, "coefficient": 0.0, "fluency_cost": 0.0}
                shifts.append(0.0), ses.append(0.0), coefs.append(0.0), costs.append(0.0), aurocs.append(0.5)
                continue
            res = self._steer_trait(data, chosen, trait, "test")
            r = res["readout"]
            unit = res["vector"].float() / res["vector"].float().norm().clamp_min(1e-12)
            vec = res["coefficient"] * data.extra["scale"] * unit
            loss = core.neutral_loss(subject, data.extra["neutral"], hook, vector=vec)
            cost = fluency_cost(loss, data.extra["base_neutral"])
            test = data.extra["halves"]["test"]
            trows = self._trait_rows(test.statements, trait)
            q = test.questions.rows(trows)
            with torch.no_grad():  # the feature's mean activation over the statement's own tokens (README)
                acts = chosen.encoder(q.resid.float()).float()[..., r.index] * r.sign
            span = core.statement_mask(q)
            acts = (acts * span).sum(1) / span.sum(1)
            y = torch.tensor([test.statements[i].pole == "+" for i in trows.tolist()])
            auroc = detection_auroc(acts, y)
            per_trait[trait] = {
                "shift": res["shift"], "stderr": res["shift_se"], "coefficient": res["coefficient"],
                "train_shift": res["train_shift"], "train_curve": res["train_curve"],
                "train_fluency_cost": res["train_fluency_cost"], "fluency_cost": cost,
                "detection_auroc": auroc, "feature": r.index, "sign": r.sign, "readout": r.how,
                "label": (chosen.labels or [None] * len(chosen))[r.index],
            }  # fmt: skip
            shifts.append(res["shift"])
            ses.append(res["shift_se"])
            coefs.append(res["coefficient"])
            costs.append(cost)
            aurocs.append(auroc)
        n = len(shifts)
        se = math.sqrt(sum(s * s for s in ses if s is not None)) / n if all(s is not None for s in ses) else None
        nan = float("nan")
        metrics: dict[str, Any] = {
            "steering_success": Metric(sum(shifts) / n, stderr=se),
            "coefficient": Metric(sum(coefs) / n if coefs else nan, higher_is_better=False),
            "fluency_cost": Metric(sum(costs) / n, higher_is_better=False),
            "detection_auroc": Metric(sum(aurocs) / n if aurocs else nan),
        }
        metrics["_details"] = {
            "steering": {
                "per_trait": per_trait,
                "mode": "prompt" if prompts is not None else "vector",
                "coefficients": list(self.config.coefficients),
                "max_fluency_cost": self.config.max_fluency_cost,
                "split": "held-out statements, no persona stated; coefficient chosen on the train half",
            }
        }
        return metrics
