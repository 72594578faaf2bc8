"""The contracts every task and method is written against (DESIGN.md, "Contracts").

A *method* (a feature-discovery algorithm) turns a :class:`DiscoveryContext` into a
:class:`FeatureSet`; a *task* prepares data with ground truth, gives search methods an
objective on its train split, and scores any FeatureSet on its held-out split. The core
(runner, CLI, leaderboard) knows nothing more about either than what is written here.

This module imports torch only for type annotations and tensors handed around; it is
imported by ``deeprobe-bench ls`` through the registry only lazily.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Supervision = Literal["none", "labels", "objective", "judge", "oracle", "null"]
SUPERVISIONS: tuple[str, ...] = typing.get_args(Supervision)
#: supervisions of the reference rows, the floor and ceiling of every metric (DESIGN.md, "Calibration"):
#: ``oracle`` reads the task's ground truth on every split it scores; ``null`` is uninformative by
#: construction (a constant and noise features) and gets no more than ``none``. Tables show such rows
#: apart and never rank them.
REFERENCE_SUPERVISIONS: tuple[str, ...] = ("oracle", "null")


class UserError(Exception):
    """A mistake in what the user asked for (bad name, bad option, bad file).

    The CLI prints its message on one line and exits with status 2; no traceback.
    """


class ConfigError(UserError):
    """A ``-M`` / ``-T`` option that names no field of the config or has the wrong type."""


# --------------------------------------------------------------------------- configs


def _convert(value: str, tp: Any, key: str) -> Any:
    """Convert the string ``value`` of option ``key`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and value.lower() in ("none", "null", ""):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value {value!r} for {key}")
    if origin is Literal:
        for choice in args:
            if str(choice) == value:
                return choice
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(map(str, args))}")
    if origin in (tuple, list):
        inner = args[0] if args else str
        parts = [p for p in value.split(",") if p != ""]
        conv = [_convert(p, inner, key) for p in parts]
        return tuple(conv) if origin is tuple else conv
    if tp is bool:
        low = value.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r}: expected a boolean (true/false)")
    if tp in (int, float, str):
        try:
            out = tp(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected {tp.__name__}") from None
        if tp is float and not math.isfinite(out):
            raise ConfigError(f"{key}={value!r}: expected a finite number")
        return out
    raise ConfigError(f"{key}: options of type {tp!r} cannot be set from the command line")


def check_task_config(cfg: Any, sizes: tuple[str, ...]) -> None:
    """The checks task configs share, for ``__post_init__``: every field named in ``sizes`` (split sizes,
    numbers of games or prompts) is at least 2, ``size_penalty`` >= 0 and ``min_positives`` >= 1.

    Raises:
        ValueError: naming the first field that fails.
    """
    for k in sizes:
        if getattr(cfg, k) < 2:
            raise ValueError(f"{k} must be at least 2")
    if cfg.size_penalty < 0:
        raise ValueError("size_penalty must be >= 0")
    if cfg.min_positives < 1:
        raise ValueError("min_positives must be >= 1")


def check_subset(field: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    """For a task config's ``__post_init__``: ``values`` (the field ``field``) is a non-empty subset of ``allowed``.

    Raises:
        ValueError: naming the field, the allowed values and what was given.
    """
    if not values or any(v not in allowed for v in values):
        raise ValueError(f"{field} must be a non-empty subset of {', '.join(allowed)}, got {', '.join(values) or 'none'}")


def parse_config(cls: type, options: dict[str, str] | None, what: str = "option", base: Any = None) -> Any:
    """Build the config dataclass ``cls`` from ``key=value`` strings, type-checked.

    Args:
        cls: a dataclass whose fields all have defaults (or any dataclass, with ``base``).
        options: ``{"budget": "200", ...}`` as given by ``-M`` / ``-T``; values already of the
            right Python type (from a JSON config) are accepted as they are.
        what: how to name the options in errors (``"-M option of mcts"``).
        base: an instance of ``cls`` whose other fields the result keeps (``dataclasses.replace``).

    Returns:
        An instance of ``cls``; its ``__post_init__`` validation runs.

    Raises:
        ConfigError: unknown key (with the valid keys), or a value of the wrong type.
    """
    options = dict(options or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"unknown {what} {key!r}; valid keys: {valid}")
        kwargs[key] = _convert(raw, hints[key], key) if isinstance(raw, str) else raw
    try:
        return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json_ready(dataclasses.asdict(cfg)) if cfg is not None else {}


def json_ready(obj: Any) -> Any:
    """Recursively turn tuples, numpy and torch scalars into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@dataclass
class EmptyConfig:
    """A config with no options."""


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """One scored number.

    Attributes:
        value: the metric's value (its range and unit are in the task README).
        higher_is_better: direction, shown as an arrow in tables.
        stderr: standard error over the evaluation examples, where it applies.
    """

    value: float
    higher_is_better: bool = True
    stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))


# --------------------------------------------------------------------------- features


FeatureKind = Literal["directions", "prompts"]
FEATURE_KINDS: tuple[str, ...] = typing.get_args(FeatureKind)


@dataclass
class FeatureSet:
    """What a method found: ``n`` features at one hook point of the subject.

    Attributes:
        hook_name: TransformerLens hook point, e.g. ``"blocks.1.hook_resid_post"``.
        directions: ``Float[Tensor, "n d_model"]``, the write direction of each feature (an SAE
            decoder row, a probe weight, a steering vector). Not required to be unit norm.
        encoder: maps activations ``Float[Tensor, "... d_model"]`` to feature activations
            ``Float[Tensor, "... n"]`` (an SAE restricted to these latents, a probe's
            probabilities, a projection). Used by the threshold-sweep metrics, which read an
            activation as "on" where it exceeds a fraction of its maximum, so encoders should
            return non-negative values where they can.
        labels: the concept each feature claims (supervised methods), or None.
        scores: ``Float[Tensor, "n"]``, the method's importance, higher is better; the order of
            the faithfulness curve. None means the given order.
        selected: how many of the top-ranked features form the method's chosen set (a search returns
            its best set first and ranks the rest after it); None means all ``n``.
        meta: free JSON-ready details (latent indices, search statistics ...), stored in the result.
        coordinates: ``list[int]`` when the features are coordinates of the hook's activation (feature ``i`` reads
            coordinate ``coordinates[i]``: MLP neurons at ``mlp.hook_post``), so that a task can edit them in the
            hook's own basis even when ``directions`` live elsewhere (a neuron writes along its ``W_out`` row in
            ``d_model``); None for any other set. Kept, remapped, by :meth:`subset` / :meth:`chosen` / :meth:`top`.
        kind: ``directions`` (features are directions at the hook, the default) or ``prompts`` (steering by
            prompting: the set carries an instruction per concept in ``meta["steering_prompts"]``, see
            :mod:`deeprobe_bench.metrics.steering`, and zero directions). A task scores the kinds in its
            :attr:`Task.accepts`; the runner refuses any other (:meth:`validate`).

    Validation (:meth:`validate`, run by the runner on every FeatureSet a method returns, before the task
    sees it): the hook exists on the subject, the directions are finite and as wide as the model's
    residual stream or the hook's activation, and the encoder maps a probe batch of the hook's activations
    ``"rows d_hook"`` to finite ``"rows n"``.
    """

    hook_name: str
    directions: Any
    encoder: Callable[[Any], Any]
    labels: list[str] | None = None
    scores: Any | None = None
    selected: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: FeatureKind = "directions"
    coordinates: list[int] | None = None
    _last: tuple[Any, int, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FEATURE_KINDS)}, got {self.kind!r}")
        if self.directions.ndim != 2:
            raise ValueError(f"directions must be 2-D (n, d_model), got shape {tuple(self.directions.shape)}")
        n = self.directions.shape[0]
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for {n} features")
        if self.scores is not None and tuple(self.scores.shape) != (n,):
            raise ValueError(f"scores must have shape ({n},), got {tuple(self.scores.shape)}")
        if self.selected is not None and not 0 <= self.selected <= n:
            raise ValueError(f"selected={self.selected} is not in [0, {n}]")
        if self.coordinates is not None and len(self.coordinates) != n:
            raise ValueError(f"{len(self.coordinates)} coordinates for {n} features")

    def __len__(self) -> int:
        return int(self.directions.shape[0])

    def ranking(self) -> list[int]:
        """Feature indices, best first (by ``scores``, ties and no scores: given order)."""
        n = len(self)
        if self.scores is None:
            return list(range(n))
        s = [float(x) for x in self.scores]
        return sorted(range(n), key=lambda i: (-s[i], i))

    def chosen_indices(self) -> list[int]:
        """Indices of the method's chosen set, best first: the ``selected`` best-ranked (all when None)."""
        rank = self.ranking()
        return rank if self.selected is None else rank[: self.selected]

    def chosen(self) -> FeatureSet:
        """The method's chosen set: the ``selected`` best-ranked features (all when ``selected`` is None)."""
        return self.subset(self.chosen_indices())

    def top(self, k: int) -> FeatureSet:
        """The ``k`` best-ranked features (all of them when ``k >= n``)."""
        return self.subset(self.ranking()[:k])

    def encode_shared(self, x: Any) -> Any:
        """``encoder(x)``, computed once for the last input the subsets of this set were given.

        A search scores many subsets of one candidate pool on the same activations (the task's train
        split), and an evaluation reads the chosen set and the prefixes of the ranking on the same splits:
        each is a :meth:`subset`, whose encoder slices this set's encoding of the same input tensor (the same
        object, unmodified since: ``x._version``) instead of running the encoder again. The values are those
        of a fresh call for any encoder that is a function of its input; an output that requires grad is
        never kept.

        Args:
            x: ``Float[Tensor, "... d_hook"]`` activations at :attr:`hook_name`.

        Returns:
            ``Float[Tensor, "... n"]``, as :attr:`encoder`.
        """
        last = self._last
        if last is not None and last[0] is x and last[1] == x._version:
            return last[2]
        out = self.encoder(x)
        self._last = None if getattr(out, "requires_grad", False) else (x, x._version, out)
        return out

    def subset(self, idx: list[int]) -> FeatureSet:
        """The features ``idx`` (in that order) as a new FeatureSet whose encoder slices this set's
        (:meth:`encode_shared`)."""
        import torch

        index = torch.as_tensor(idx, dtype=torch.long)
        return FeatureSet(
            hook_name=self.hook_name,
            directions=self.directions[index],
            encoder=lambda x: self.encode_shared(x)[..., index],
            labels=[self.labels[i] for i in idx] if self.labels is not None else None,
            scores=self.scores[index] if self.scores is not None else None,
            meta={"subset_of": len(self)},
            kind=self.kind,
            coordinates=[self.coordinates[i] for i in idx] if self.coordinates is not None else None,
        )

    def validate(self, hooks: Any, widths: Any, probe: Any) -> None:
        """Check this set against the subject it claims to be about (see the class docstring).

        Args:
            hooks: the subject's hook names (a container), or None when the subject has none to check against.
            widths: the widths a direction may have: ``{d_model, d_hook}`` (a neuron at ``mlp.hook_post`` reads
                ``d_mlp`` coordinates and writes a ``d_model`` direction).
            probe: ``Float[Tensor, "rows d_hook"]`` activations at :attr:`hook_name` to run the encoder on, or
                None (no encoder check).

        Raises:
            InvalidFeatureSet: the first check that fails, in one line.
        """
        import torch

        if hooks is not None and self.hook_name not in hooks:
            import difflib

            close = difflib.get_close_matches(self.hook_name, list(hooks), n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidFeatureSet(f"hook {self.hook_name!r} does not exist on the subject{hint}")
        d = tuple(self.directions.shape)
        if widths and d[1] not in widths:
            allowed = " or ".join(str(w) for w in sorted(widths))
            raise InvalidFeatureSet(f"directions have shape {d}: width {d[1]} is not {allowed} "
                                    f"(d_model or the width of {self.hook_name})")  # fmt: skip
        if not bool(torch.isfinite(torch.as_tensor(self.directions).float()).all()):
            raise InvalidFeatureSet("directions contain NaN or inf")
        if probe is None:
            return
        with torch.no_grad():
            out = self.encoder(probe)
        shape = tuple(getattr(out, "shape", ()))
        want = (int(probe.shape[0]), len(self))
        if shape != want:
            raise InvalidFeatureSet(f"encoder maps activations of shape {tuple(probe.shape)} to shape {shape}, "
                                    f"expected {want} (rows, n_features)")  # fmt: skip
        if not bool(torch.isfinite(torch.as_tensor(out).float()).all()):
            raise InvalidFeatureSet(f"encoder output contains NaN or inf on {want[0]} rows of activations at "
                                    f"{self.hook_name}")  # fmt: skip


class InvalidFeatureSet(ValueError):
    """A FeatureSet that does not fit its subject (:meth:`FeatureSet.validate`); the runner records it as the
    cell's error, naming the method."""


# --------------------------------------------------------------------------- behaviour


@dataclass
class Behaviour:
    """The task's behaviour metric as a differentiable function of the model's output, with clean and
    counterfactual inputs: what gradient attribution and activation patching need.

    A task that supports attribution methods (``attribution``, ``exact``, ``mcts -M prior=attribution``)
    puts one in :attr:`TaskData.behaviour`; the runner hands it to methods of supervision ``objective``
    only, as :attr:`DiscoveryContext.behaviour` (it reveals the metric the objective is built on, like
    the objective itself, but no concept labels). The core never looks inside it.

    Patching (Wang et al. 2022; attribution patching, Nanda 2023; Sparse Feature Circuits, Marks et al.
    2024) replaces activations of the ``clean`` run by those of the ``counterfactual`` run at the same
    token positions, so the two must be position-aligned (same length, same template).

    Attributes:
        clean: ``Int[Tensor, "n pos"]`` clean input tokens (BOS included, right-padded).
        counterfactual: ``Int[Tensor, "n pos"]`` counterfactual tokens, same shape, position-aligned.
        positions: ``Int[Tensor, "n k"]`` token positions at the task's hook where latent-level
            attribution and patching apply (their effects are summed over these ``k`` positions).
        metric: ``metric(logits, rows) -> Float[Tensor, "b"]``: the behaviour metric of each example
            from ``logits: Float[Tensor, "b pos d_vocab"]`` of the examples ``rows: Int[Tensor, "b"]``
            (indices into ``clean``); differentiable in ``logits``. Higher means more of the behaviour.
        name: what the metric is (``"logit difference"``), for results and logs.
        batch_size: examples per forward pass.
        last_token_metric: the same metric from the logits at each example's last token alone
            (``Float[Tensor, "b d_vocab"]``, the token at ``lengths - 1``), for a metric that reads nothing else;
            with it, patching pushes only the positions from the first patched one on through the layers
            after the hook (:class:`deeprobe_bench.metrics.ranking.PatchedBatch`). Not differentiated.
        lengths: ``Int[Tensor, "n"]`` tokens per example (BOS included); needed with ``last_token_metric``.
    """

    clean: Any
    counterfactual: Any
    positions: Any
    metric: Callable[[Any, Any], Any]
    name: str = "behaviour metric"
    batch_size: int = 128
    last_token_metric: Callable[[Any, Any], Any] | None = None
    lengths: Any = None

    def __post_init__(self) -> None:
        if tuple(self.clean.shape) != tuple(self.counterfactual.shape):
            raise ValueError(
                f"clean {tuple(self.clean.shape)} and counterfactual {tuple(self.counterfactual.shape)} "
                "tokens must have the same shape (position-aligned)"
            )
        if self.positions.ndim != 2 or self.positions.shape[0] != self.clean.shape[0]:
            raise ValueError(f"positions must be (n, k) with n = {self.clean.shape[0]}, got {tuple(self.positions.shape)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.last_token_metric is not None and (self.lengths is None or tuple(self.lengths.shape) != (len(self),)):
            raise ValueError(f"last_token_metric needs lengths of shape ({len(self)},)")

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def batches(self) -> Iterator[Any]:
        """``rows: Int[Tensor, "b"]`` of each batch of ``batch_size`` examples, in order."""
        import torch

        n = len(self)
        for i in range(0, n, self.batch_size):
            yield torch.arange(i, min(i + self.batch_size, n))


# --------------------------------------------------------------------------- discovery


class Budget:
    """Counts calls of the task objective; raises when a method exceeds its allowance."""

    def __init__(self, max_objective_calls: int | None) -> None:
        self.max_objective_calls = max_objective_calls
        self.objective_calls = 0

    @property
    def remaining(self) -> int | None:
        if self.max_objective_calls is None:
            return None
        return self.max_objective_calls - self.objective_calls

    def charge(self) -> None:
        if self.max_objective_calls is not None and self.objective_calls >= self.max_objective_calls:
            raise BudgetExhausted(f"objective budget of {self.max_objective_calls} calls spent")
        self.objective_calls += 1


class BudgetExhausted(RuntimeError):
    """Raised by the objective when a method calls it beyond its budget."""


#: What a task can give methods beyond the train activations: typed, optional fields of :class:`TaskData` and
#: :class:`DiscoveryContext` of these names (DESIGN.md, "DiscoveryContext"), with what each holds. A task lists
#: those it gives in :attr:`Task.provides`, a method those it cannot work without in :attr:`Method.needs`; the
#: runner refuses a pair that does not fit before any work, naming the missing field. All are free of
#: supervision (they hold no concept label) except ``behaviour``, handed to ``objective`` methods only.
CONTEXT_FIELDS: dict[str, str] = {
    "train_tokens": 'the train sequences\' tokens, Int[Tensor, "n_seq pos"] (BOS included, right-padded)',
    "train_measured": 'where train_acts are read, Bool[Tensor, "n_seq pos"]: train_acts = acts(train_tokens)[train_measured]',
    "token_acts": 'per-token activations at the hook, Float[Tensor, "n_train pos d_model"]: sequence i ends at train row i',
    "lengths": 'tokens per sequence of token_acts (BOS included), Int[Tensor, "n_train"]',
    "pairs": 'contrast pairs, Int[Tensor, "n_train"]: pairs[i] is the train row contrasted with row i (pairs[pairs[i]] = i)',
    "steering_prompts": "an instruction per concept that asks for it in the prompt, dict[str, str]",
    "site_acts": 'activations at every position the task intervenes at, Float[Tensor, "n_sites d_model"]',
    "poles": "the two poles of each bipolar concept, dict[str, str]: positive pole -> negative pole (label column names)",
    "behaviour": "the differentiable behaviour metric with clean / counterfactual inputs (api.Behaviour)",
}
#: the fields handed to every method whatever its supervision (``behaviour`` goes to ``objective`` methods only)
SUPERVISION_FREE_FIELDS: tuple[str, ...] = tuple(f for f in CONTEXT_FIELDS if f != "behaviour")


def describe_field(name: str) -> str:
    """``"name (what it holds)"`` for error messages."""
    return f"{name} ({CONTEXT_FIELDS[name]})" if name in CONTEXT_FIELDS else name


@dataclass(kw_only=True)
class ContextFields:
    """The supervision-free fields of :data:`CONTEXT_FIELDS` (shapes in :class:`DiscoveryContext`), declared once:
    a task sets them on its :class:`TaskData`, the runner copies them into the :class:`DiscoveryContext`
    (:meth:`DiscoveryContext.take_from`). Keyword-only; None where the task gives none."""

    train_tokens: Any | None = None
    train_measured: Any | None = None
    token_acts: Any | None = None
    lengths: Any | None = None
    pairs: Any | None = None
    steering_prompts: dict[str, str] | None = None
    site_acts: Any | None = None
    poles: dict[str, str] | None = None


@dataclass
class DiscoveryContext(ContextFields):
    """Everything a method may use, and nothing more (DESIGN.md, "DiscoveryContext").

    Attributes:
        subject: the model under study (:class:`deeprobe_bench.subject.Subject`).
        hook_name: the hook point the task studies.
        train_acts: ``Float[Tensor, "n_train d_model"]``, cached train-split activations at
            the hook, at the task's positions (one row per example and position).
        sae: the subject's default SAE at the hook (a ``sae_lens.SAE``), or None.
        saes: ``{variant: SAE}`` of every SAE the subject has at the hook (``Subject.sae_variants``),
            for methods with an ``arch`` / ``variant`` option.
        seed: the cell's seed; methods seed their own generators from it.
        supervision: what this context was built for.
        budget: counts objective calls.
        progress: ``progress(iterable, desc=..., total=...)``, a tqdm wrapper (silent under --quiet).
        labels: ``Bool[Tensor, "n_train n_concepts"]`` concept labels of the train rows
            (supervision ``labels`` only), with ``concepts`` naming the columns.
        objective: ``objective(FeatureSet) -> float`` on the train split, each call charged to
            ``budget`` (supervision ``objective`` only).
        judge: supervision ``judge`` only: a ``deeprobe_bench.metrics.autointerp.JudgeScorer``, the judge
            client (``.client``) bound to the task's train examples (``TaskData.examples["train"]``), which
            explains and detection-scores features on them. Judge methods also get :attr:`objective`
            (counted against the budget) for the causal term of their reward.
        extra: a plugin's private data, from its own task's ``TaskData.context_extra`` (built-in tasks and
            methods share nothing through it: what a task gives is one of the typed fields below).
        behaviour: the task's differentiable behaviour metric with clean / counterfactual inputs
            (:class:`Behaviour`), for gradient attribution and patching (supervision ``objective``
            only, and only when the task provides one; else None).
        train_tokens: ``Int[Tensor, "n_seq pos"]`` the train sequences' tokens (BOS included,
            right-padded), or None.
        train_measured: ``Bool[Tensor, "n_seq pos"]`` the positions :attr:`train_acts` are read at, row-major:
            ``train_acts == acts_at_hook(train_tokens)[train_measured]``; or None.
        token_acts: ``Float[Tensor, "n_train pos d_model"]`` per-token activations at the hook of the sequence
            whose last token is train row ``i`` (right-padded), or None.
        lengths: ``Int[Tensor, "n_train"]`` tokens of each sequence of :attr:`token_acts` (BOS included), or None.
        pairs: ``Int[Tensor, "n_train"]`` contrast pairs: ``pairs[i]`` is the train row contrasted with row ``i``
            (the same question with the opposite pole), ``pairs[pairs[i]] == i``; or None.
        steering_prompts: ``{concept: instruction}`` that asks for the concept in the prompt (``"You are
            agreeable."``), for steering by prompting; or None.
        site_acts: ``Float[Tensor, "n_sites d_model"]`` activations at every position the task intervenes at
            (one row per example and position; IOI: END and S2), where :attr:`train_acts` holds one per example;
            or None.
        poles: ``{positive pole: negative pole}`` of the concepts that come in two opposite poles (names of label
            columns, persona: ``{"agreeableness+": "agreeableness-", ...}``), so that a method contrasts a concept
            with its opposite rather than with every other row; or None (no bipolar concepts). It names concepts,
            it labels no row.
        oracle: supervision ``oracle`` only (the reference rows): ``oracle() -> FeatureSet``, the task's
            own ground-truth feature set on every split it scores (:meth:`Task.oracle_features`).

    The optional fields are those of :data:`CONTEXT_FIELDS` (declared once, in :class:`ContextFields`): set from
    the task's :class:`TaskData` (:meth:`take_from`), None where the task gives none. A method that cannot work
    without one lists it in :attr:`Method.needs`.
    """

    subject: Any
    hook_name: str
    train_acts: Any
    sae: Any
    seed: int
    supervision: str
    budget: Budget
    progress: Callable[..., Any]
    labels: Any | None = None
    concepts: list[str] | None = None
    objective: Callable[[FeatureSet], float] | None = None
    judge: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    saes: dict[str, Any] = field(default_factory=dict)
    behaviour: Behaviour | None = None
    oracle: Callable[[], FeatureSet] | None = None

    def take_from(self, data: TaskData) -> DiscoveryContext:
        """Set every supervision-free field of :data:`SUPERVISION_FREE_FIELDS` from ``data`` (``behaviour`` is
        the runner's to give, by supervision); returns ``self``."""
        for name in SUPERVISION_FREE_FIELDS:
            setattr(self, name, getattr(data, name, None))
        return self

    def require_sae(self, method: str, variant: str | None = None) -> Any:
        """The SAE at the hook (``variant`` of :attr:`saes` when given, else :attr:`sae`).

        Raises:
            UserError: the subject has no such SAE at the hook (the message lists the variants it has).
        """
        sae = self.sae if not variant else self.saes.get(variant)
        if sae is None:
            have = ", ".join(sorted(self.saes)) or "none"
            what = f"a {variant!r} SAE" if variant else "an SAE"
            raise UserError(f"method {method} needs {what} at {self.hook_name}; this subject has: {have}")
        return sae

    def require_behaviour(self, method: str) -> Behaviour:
        """:attr:`behaviour`, or a UserError naming the method when the task gives none."""
        if self.behaviour is None:
            raise UserError(
                f"method {method} needs the task's differentiable behaviour metric with counterfactual inputs "
                "(TaskData.behaviour), and this task provides none"
            )
        return self.behaviour


class Method:
    """A feature-discovery method. Subclass it, set the class attributes, write ``discover``.

    Class attributes:
        name: the registry name (``mcts``).
        description: one line, shown by ``deeprobe-bench ls methods``.
        supervision: ``none`` | ``labels`` | ``objective`` | ``judge``; decides what the
            :class:`DiscoveryContext` carries and is shown in every table.
        Config: a dataclass of options, every field with a default, filled from ``-M key=value``. A field
            ``budget`` (``int`` or None) is the method's allowance of objective calls
            (:meth:`objective_budget`), counted by :class:`Budget` and capped by ``max_budget``.
        kind: the :attr:`FeatureSet.kind` it returns (``directions``, or ``prompts`` for steering by
            prompting); the runner refuses, before any work, a task whose :attr:`Task.accepts` lacks it.
        needs: the optional context fields (:data:`CONTEXT_FIELDS`) it cannot work without; the runner refuses,
            before any work, a task whose :attr:`Task.provides` lacks one. Fields it uses only when present are
            not listed (it reads them as None elsewhere). :meth:`needs_for` may make them depend on options.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    supervision: ClassVar[str] = "none"
    Config: ClassVar[type] = EmptyConfig
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "directions"
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def needs_for(cls, config: Any) -> tuple[str, ...]:
        """The context fields the method needs with ``config`` (default: :attr:`needs`)."""
        return tuple(cls.needs)

    @classmethod
    def objective_budget(cls, config: Any) -> int | None:
        """The objective calls ``config`` allows: its ``budget`` field (an int), or None (no limit)."""
        budget = getattr(config, "budget", None)
        return budget if isinstance(budget, int) and not isinstance(budget, bool) else None

    def discover(self, ctx: DiscoveryContext) -> FeatureSet:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class ExampleSet:
    """Examples an LLM judge reads to explain and score features (autointerp), task-agnostic.

    One row per (example, position): the text of the example with the token the row is read at
    marked ``<<token>>``, the activation at that token and hook, and the concept labels of the row.
    Tasks build one per split they expose (:attr:`TaskData.examples`); the autointerp metric
    (:mod:`deeprobe_bench.metrics.autointerp`) picks, per feature, the top-activating rows to explain
    and a shuffled mix of activating and random rows to detect (SAEBench / EleutherAI delphi).

    Attributes:
        texts: ``n`` single-line texts, each with exactly one token marked as ``<<token>>``
            (:meth:`mark`).
        acts: ``Float[Tensor, "n d_model"]`` activations at the marked tokens, at the task's hook.
        labels: ``Bool[Tensor, "n n_concepts"]`` ground-truth concepts of each row, or None. Only the
            project's local judge server reads them (it answers from ground truth); a real judge never
            sees them, and judge-supervised methods must not read them.
        concepts: names of the label columns (``"IO=Mary"``), or None.
        name: what the rows are, for results (``"ioi val END"``).
        hook_name: the hook ``acts`` are read at ("" = whatever hook the features are at).
        acts_at: ``hook -> Float[Tensor, "n d_hook"]``: the same rows' activations at another hook (a
            feature set at another hook, e.g. MLP neurons, is encoded there), or None.
    """

    texts: list[str]
    acts: Any
    labels: Any | None = None
    concepts: list[str] | None = None
    name: str = ""
    hook_name: str = ""
    acts_at: Any = None

    MARK_OPEN: ClassVar[str] = "<<"
    MARK_CLOSE: ClassVar[str] = ">>"

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.acts.ndim != 2 or self.acts.shape[0] != n:
            raise ValueError(f"acts must be ({n}, d_model), got {tuple(self.acts.shape)}")
        if self.labels is not None:
            if tuple(self.labels.shape[:1]) != (n,) or self.labels.ndim != 2:
                raise ValueError(f"labels must be ({n}, n_concepts), got {tuple(self.labels.shape)}")
            if self.concepts is None or len(self.concepts) != self.labels.shape[1]:
                raise ValueError("labels need one concept name per column")

    def __len__(self) -> int:
        return len(self.texts)

    def acts_for(self, hook_name: str) -> Any:
        """``Float[Tensor, "n d_hook"]``: the rows' activations at ``hook_name``, where a feature set there reads.

        Raises:
            ValueError: ``hook_name`` is not the examples' hook and they cannot be read at another one.
        """
        if not hook_name or not self.hook_name or hook_name == self.hook_name:
            return self.acts
        if self.acts_at is None:
            raise ValueError(f"features at {hook_name} cannot be judged on examples read at {self.hook_name}")
        return self.acts_at(hook_name)

    @classmethod
    def mark(cls, before: str, token: str, after: str = "") -> str:
        """``before + "<<token>>" + after`` on one line (newlines become spaces)."""
        text = f"{before}{cls.MARK_OPEN}{token}{cls.MARK_CLOSE}{after}"
        return " ".join(text.split("\n"))

    def concepts_of(self, row: int) -> list[str]:
        """The concept names labelled true for ``row`` (empty without labels)."""
        if self.labels is None or self.concepts is None:
            return []
        return [c for c, on in zip(self.concepts, self.labels[row].tolist(), strict=True) if on]


@dataclass
class TaskData(ContextFields):
    """What ``Task.prepare`` returns; opaque to the core except these fields.

    Attributes:
        hook_name: hook point studied.
        train_acts: ``Float[Tensor, "n_train d_model"]`` train activations at the task positions.
        train_labels: ``Bool[Tensor, "n_train n_concepts"]`` or None.
        concepts: names of the label columns.
        n_train / n_test: examples in each split (prompts, games ...).
        extra: anything the task's own objective / evaluate need (never given to methods).
        context_extra: a plugin's private, supervision-free data for its own methods (``ctx.extra``); what a
            task gives any method is one of the typed fields below.
        train_tokens, train_measured, token_acts, lengths, pairs, steering_prompts, site_acts, poles: what the task
            gives methods beyond :attr:`train_acts` (:data:`CONTEXT_FIELDS`, shapes in
            :class:`DiscoveryContext`); the task lists those it sets in :attr:`Task.provides`.
        info: JSON-ready facts recorded in the result (ablation, positions, splits ...).
        examples: ``{"train": ExampleSet, "eval": ExampleSet}`` for LLM-judge autointerp, or empty.
            ``train`` rows come from the train split (judge-supervised methods score features on them
            through ``ctx.judge``); ``eval`` rows from a split methods never see (the ``judge_score``
            metric the runner adds when a judge is configured). Either may be absent.
        behaviour: the behaviour metric with clean / counterfactual inputs on the train split
            (:class:`Behaviour`), handed to ``objective``-supervised methods; None if the task has none.
    """

    hook_name: str
    train_acts: Any
    train_labels: Any | None
    concepts: list[str] | None
    n_train: int
    n_test: int
    extra: dict[str, Any] = field(default_factory=dict)
    context_extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, ExampleSet] = field(default_factory=dict)
    behaviour: Behaviour | None = None
    reference_rows: list[tuple[str, Any, Any]] = field(default_factory=list)

    def add_reference_rows(self, hook_name: str, acts: Any, labels: Any) -> None:
        """Register ``acts: Float[Tensor, "rows d_model"]`` at ``hook_name`` with their ground-truth
        ``labels: Bool[Tensor, "rows n_concepts"]`` (columns :attr:`concepts`), from any split the task
        scores on, so that the default oracle (:meth:`Task.oracle_features`) reads the truth of exactly
        these rows. Never handed to a method other than the reference ``oracle``.
        """
        self.reference_rows.append((hook_name, acts, labels))


class Task:
    """A task with ground truth. Subclass it and set the class attributes.

    Class attributes:
        name, description, version: registry name, one line for ``ls``, bumped when numbers change.
        Config: options dataclass filled from ``-T key=value``.
        primary_metric: the metric tables sort by.
        default_model: the zoo model used when ``--model`` is not given.
        provides: the optional context fields (:data:`CONTEXT_FIELDS`) its ``prepare`` sets on :class:`TaskData`
            (``behaviour``, ``site_acts`` ...); a method that needs another is refused before any work.
        accepts: the :attr:`FeatureSet.kind` values ``evaluate`` scores (default ``("directions",)``; a task
            that can score steering by prompting adds ``"prompts"``, see ``deeprobe_bench.metrics.steering``);
            the runner refuses a method of another kind before any work.
        other_hooks: whether ``evaluate`` scores a feature set read at another hook than the task's own
            (``FeatureSet.hook_name``: the board games read MLP neurons at ``mlp.hook_post``); when False the
            runner refuses such a set (one line naming both hooks) instead of scoring it at the wrong hook.
        calibration_notes: metrics without a calibration verdict and why (:mod:`deeprobe_bench.calibration`).
        calibration_chance: chance levels of metrics whose chance is not 0 (an AUROC: 0.5).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type] = EmptyConfig
    primary_metric: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ("directions",)
    provides: ClassVar[tuple[str, ...]] = ()
    other_hooks: ClassVar[bool] = False
    #: ``{metric: why}`` for the metrics ``deeprobe-bench calibrate`` gives no verdict: counts, flags, and
    #: scores whose attainable ceiling is not 1 (say why, as the task README does). Every other metric
    #: must separate the reference rows: oracle - null >= 0.9 in its better direction.
    calibration_notes: ClassVar[dict[str, str]] = {}
    #: ``{metric: chance level}`` for scores whose chance is not 0 (an AUROC: 0.5); ``calibrate`` then asks
    #: the null to sit within noise of it and the oracle to reach ``chance + 0.9 (1 - chance)``
    calibration_chance: ClassVar[dict[str, float]] = {}

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:  # pragma: no cover
        raise NotImplementedError

    def objective(self, data: TaskData, features: FeatureSet) -> float:  # pragma: no cover
        raise NotImplementedError

    def evaluate(self, data: TaskData, features: FeatureSet) -> dict[str, Metric]:  # pragma: no cover
        raise NotImplementedError

    def oracle_features(self, data: TaskData, seed: int) -> FeatureSet:
        """The ceiling of every metric: features that read this task's ground truth on every split it
        scores (DESIGN.md, "Calibration"), returned to the reference method ``oracle``.

        The default serves tasks whose ground truth is concept labels: it reads the labels of every row
        the task registered with :meth:`TaskData.add_reference_rows` (see
        :func:`deeprobe_bench.references.label_lookup_features`). A task whose metrics need more
        (a steering vector, a circuit) overrides it and says in its README what its oracle is.

        Raises:
            UserError: the task registered no labelled rows and has no oracle of its own.
        """
        from deeprobe_bench.references import label_lookup_features

        return label_lookup_features(data, seed)
