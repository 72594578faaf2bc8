"""Toy fixtures: a task, methods and a model that need no trained network.

The toy task hides ``n_concepts`` orthonormal directions in random 8-d "activations"; a method
scores by how well its feature directions recover them (``recovery``, mean over concepts of the
best |cosine|). Everything is a few tiny tensors, so a cell runs in milliseconds.

This file is also a plugin: ``deeprobe-bench --plugin tests/helpers.py run --task toy ...``
registers the classes below (automatically, being Task / Method subclasses defined here) and the
``toy`` model (explicitly, with ``registry.register_model``). Like every plugin meant for ``ls``,
it imports torch only inside functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deeprobe_bench import api, registry
from deeprobe_bench.results import Result

HELPERS_PATH = Path(__file__).resolve()
REPO_ROOT = HELPERS_PATH.parents[1]
D_MODEL = 8
HOOK = "blocks.0.hook_resid_post"


# --------------------------------------------------------------------------- model


class ToySubject:
    """A stand-in for ``subject.Subject``: a name, ``d_model``, ``sae_for``, ``info()``, a pass counter."""

    def __init__(self, name: str = "toy", d_model: int = D_MODEL) -> None:
        self.name = name
        self.d_model = d_model
        self.forward_passes = 0
        self.saes: dict[str, Any] = {}

    def sae_for(self, hook_name: str) -> Any | None:
        return self.saes.get(hook_name)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "d_model": self.d_model}


class ToyModelSpec:
    """A model spec as the ``deeprobe_bench.models`` entry-point group expects."""

    description = "8-d toy subject for tests (no network, no weights)"

    def __init__(self, name: str = "toy") -> None:
        self.name = name
        self.loads = 0

    def load(self) -> ToySubject:
        self.loads += 1
        return ToySubject(self.name)

    def train(self, out_dir: Path | None = None, seed: int = 0) -> Path:
        out = Path(out_dir if out_dir is not None else ".") / self.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "card.json").write_text(json.dumps({"name": self.name, "seed": seed}))
        return out


TOY_MODEL = registry.register_model(ToyModelSpec("toy"))


def load_toy_subject(name: str) -> ToySubject:
    """A subject loader for ``runner.run_grid(subject_loader=...)`` that knows only toy names."""
    if not name.startswith("toy"):
        raise api.UserError(f"unknown model {name!r} (toy loader)")
    return ToySubject(name)


# --------------------------------------------------------------------------- task


@dataclass
class ToyTaskConfig:
    """Options of the toy task.

    Attributes:
        n_train: train examples.
        n_test: test examples.
        n_concepts: hidden directions.
        noise: std of the isotropic noise.
    """

    n_train: int = 64
    n_test: int = 32
    n_concepts: int = 3
    noise: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.n_concepts <= D_MODEL:
            raise ValueError(f"n_concepts must be in 1..{D_MODEL}, got {self.n_concepts}")


def recovery(directions: Any, concepts: Any) -> float:
    """Mean over concepts of the best |cosine| with any feature direction (0 without features)."""
    import torch

    if directions.shape[0] == 0:
        return 0.0
    d = torch.nn.functional.normalize(directions.float(), dim=-1)
    c = torch.nn.functional.normalize(concepts.float(), dim=-1)
    return float((c @ d.T).abs().max(dim=1).values.mean())


class ToyTask(api.Task):
    name = "toy"
    description = "Recover hidden directions in random 8-d activations (test fixture)"
    version = "1"
    Config = ToyTaskConfig
    primary_metric = "recovery"
    other_hooks = True  # it scores directions wherever they were read (the validation tests use other hooks)
    default_model = "toy"

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> api.TaskData:
        import torch

        cfg = self.config
        d = getattr(subject, "d_model", D_MODEL)
        g = torch.Generator().manual_seed(1000 + seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        concepts = q[:, : cfg.n_concepts].T.contiguous()
        n_train = min(cfg.n_train, limit) if limit else cfg.n_train
        n_test = min(cfg.n_test, limit) if limit else cfg.n_test

        def sample(n: int) -> tuple[Any, Any]:
            z = torch.randn(n, cfg.n_concepts, generator=g)
            x = 2 * z.clamp(min=0) @ concepts + cfg.noise * torch.randn(n, d, generator=g)
            return x, z > 0

        x_train, y_train = sample(n_train)
        x_test, y_test = sample(n_test)
        if hasattr(subject, "forward_passes"):
            subject.forward_passes += n_train + n_test
        return api.TaskData(
            hook_name=HOOK,
            train_acts=x_train,
            train_labels=y_train,
            concepts=[f"c{i}" for i in range(cfg.n_concepts)],
            n_train=n_train,
            n_test=n_test,
            extra={"concepts": concepts, "x_test": x_test, "y_test": y_test},
            context_extra={"d_model": d},
            info={"d_model": d, "n_concepts": cfg.n_concepts},
        )

    def objective(self, data: api.TaskData, features: api.FeatureSet) -> float:
        return recovery(features.directions, data.extra["concepts"])

    def evaluate(self, data: api.TaskData, features: api.FeatureSet) -> dict[str, Any]:
        rec = recovery(features.directions, data.extra["concepts"])
        return {
            "recovery": api.Metric(rec, higher_is_better=True, stderr=0.01),
            "n_features": api.Metric(float(len(features)), higher_is_better=False),
            "_details": {"toy_note": "evaluated on the test split"},
        }


# --------------------------------------------------------------------------- methods


def feature_set(directions: Any, **kwargs: Any) -> api.FeatureSet:
    """A FeatureSet projecting onto ``directions`` at the toy hook."""
    dirs = directions
    return api.FeatureSet(hook_name=HOOK, directions=dirs, encoder=lambda x: (x @ dirs.T).clamp(min=0), **kwargs)


@dataclass
class ToyRandomConfig:
    """Options of toy-random (every supported option type, for parse_config tests).

    Attributes:
        k: number of directions.
        scale: multiplies the directions.
        arch: a Literal option.
        normalize: a bool option.
        dims: a tuple option.
        note: an optional string.
    """

    k: int = 3
    scale: float = 1.0
    arch: Literal["a", "b"] = "a"
    normalize: bool = True
    dims: tuple[int, ...] = ()
    note: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


class ToyRandom(api.Method):
    name = "toy-random"
    description = "Random directions (unsupervised toy baseline)"
    supervision = "none"
    Config = ToyRandomConfig

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        import torch

        g = torch.Generator().manual_seed(ctx.seed)
        dirs = torch.randn(self.config.k, ctx.train_acts.shape[1], generator=g) * self.config.scale
        for _ in ctx.progress(range(3), desc="toy-random"):
            pass
        return feature_set(dirs, meta={"k": self.config.k, "tensor": torch.arange(3)})


class ToyDiffMean(api.Method):
    name = "toy-diffmean"
    description = "Difference of class means per concept (uses labels)"
    supervision = "labels"

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        import torch

        assert ctx.labels is not None and ctx.objective is None
        x, y = ctx.train_acts, ctx.labels
        dirs = torch.stack([x[y[:, i]].mean(0) - x[~y[:, i]].mean(0) for i in range(y.shape[1])])
        return feature_set(dirs, labels=list(ctx.concepts or []), scores=dirs.norm(dim=1))


@dataclass
class ToySearchConfig:
    """Options of toy-search.

    Attributes:
        budget: objective calls allowed.
        candidates: random candidates tried.
    """

    budget: int | None = 20
    candidates: int = 10


class ToySearch(api.Method):
    name = "toy-search"
    description = "Keeps the random candidates the objective likes (uses the objective)"
    supervision = "objective"
    Config = ToySearchConfig

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        import torch

        assert ctx.objective is not None and ctx.labels is None
        g = torch.Generator().manual_seed(ctx.seed)
        cands = torch.randn(self.config.candidates, ctx.train_acts.shape[1], generator=g)
        scores = torch.tensor([ctx.objective(feature_set(cands[i : i + 1])) for i in range(len(cands))])
        best = scores.argsort(descending=True)[:3]
        return feature_set(cands[best], scores=scores[best])


class ToyCrash(api.Method):
    name = "toy-crash"
    description = "Raises inside discover (tests error records)"

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        raise RuntimeError("boom from toy-crash")


class ToyJudge(api.Method):
    name = "toy-judge"
    description = "Needs a judge"
    supervision = "judge"

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:  # pragma: no cover - never runs
        raise AssertionError("a judge method must not run without a judge")


class ToyInterrupt(api.Method):
    name = "toy-interrupt"
    description = "Simulates Ctrl-C inside discover"

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        raise KeyboardInterrupt


class ToyNeedsSae(api.Method):
    name = "toy-needs-sae"
    description = "Needs an SAE the toy subject does not have (a user error)"

    def discover(self, ctx: api.DiscoveryContext) -> api.FeatureSet:
        ctx.require_sae(self.name)
        raise AssertionError("unreachable")


TOY_TASKS = [ToyTask]
TOY_METHODS = [ToyRandom, ToyDiffMean, ToySearch, ToyCrash, ToyJudge, ToyInterrupt, ToyNeedsSae]


def register_toys() -> None:
    """Register the toy task, methods and model in the (in-process) registry."""
    for t in TOY_TASKS:
        registry.register_task(t)
    for m in TOY_METHODS:
        registry.register_method(m)
    registry.register_model(TOY_MODEL)


# --------------------------------------------------------------------------- results


def make_result(method: str = "m", seed: int = 0, task: str = "toy", **metrics: Any) -> Result:
    """A hand-made ok Result with ``metrics`` given as ``name=value`` or ``name=(value, higher_is_better)``."""
    ms = {}
    for k, v in metrics.items():
        value, hib = v if isinstance(v, tuple) else (v, True)
        ms[k] = {"value": value, "higher_is_better": hib, "stderr": None}
    return Result(
        task=task,
        task_version="1",
        model="toy",
        method=method.split("[")[0],
        method_label=method,
        supervision="none",
        seed=seed,
        metrics=ms,
        samples={"n_train": 10, "n_test": 10, "limit": None},
        wall_time_s=0.1,
    )


# --------------------------------------------------------------------------- plugin distributions


def write_plugin_distribution(root: Path, dist: str = "toyplug") -> Path:
    """Write an installed-looking distribution under ``root`` (put ``root`` on sys.path / PYTHONPATH).

    It declares, in ``deeprobe_bench.methods``: ``dist-method`` (works, torch-free import) and
    ``dist-broken`` (its module does not exist).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{dist}_methods.py").write_text(
        "from deeprobe_bench import api\n"
        "\n"
        "class DistMethod(api.Method):\n"
        "    name = 'dist-method'\n"
        "    description = 'A method from an installed plugin distribution'\n"
        "    supervision = 'none'\n"
        "\n"
        "    def discover(self, ctx):\n"
        "        import torch\n"
        "        dirs = torch.eye(ctx.train_acts.shape[1])[:2]\n"
        "        return api.FeatureSet(hook_name=ctx.hook_name, directions=dirs, encoder=lambda x: x @ dirs.T)\n"
    )
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[deeprobe_bench.methods]\n"
        f"dist-method = {dist}_methods:DistMethod\n"
        f"dist-broken = {dist}_missing_module:Nope\n"
    )
    return root


# --------------------------------------------------------------------------- a tiny real subject


def tiny_ioi_subject(directory: Path, d_model: int = 32, n_layers: int = 2, d_sae: int = 64, k: int = 4):
    """A random-init word-level HookedTransformer over the IOI vocabulary, with a random TopK SAE.

    Real classes throughout (``subject.Subject``, TransformerLens, sae_lens), so the IOI task, the
    activation cache and the methods run on it in a second or two; the numbers mean nothing.
    """
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import Subject, load_tokenizer, quiet_hooked_transformer, word_level_tokenizer
    from deeprobe_bench.tasks.ioi.recipe import vocabulary

    torch.manual_seed(0)
    word_level_tokenizer(vocabulary()).save_pretrained(str(directory))
    tok = load_tokenizer(directory)
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_heads=2, d_head=d_model // 2, d_mlp=4 * d_model, n_ctx=64,
        d_vocab=len(tok), act_fn="gelu", normalization_type="LN", default_prepend_bos=True, seed=0,
    )  # fmt: skip
    model = quiet_hooked_transformer(cfg, tok)
    model.eval()
    hook = "blocks.0.hook_resid_post"
    sae = TopKSAE(TopKSAEConfig(d_in=d_model, d_sae=d_sae, k=k))
    sae.cfg.metadata.hook_name = hook
    return Subject("tiny", model, {hook: sae}, {"task": {"hook_name": hook}})


class ProgressBar:
    """A stand-in for the tqdm bar ``ctx.progress`` returns: iterable, with ``update`` counting into ``n``."""

    def __init__(self, it: Any) -> None:
        self.it, self.n = it, 0

    def __iter__(self):
        return iter(self.it)

    def update(self, k: int) -> None:
        self.n += k

    def close(self) -> None:
        pass


def task_context(subject: Any, data: api.TaskData, supervision: str, seed: int = 0) -> api.DiscoveryContext:
    """The :class:`api.DiscoveryContext` a method gets on a prepared task, as the runner builds it for
    supervision ``none`` / ``labels`` (no budget; labels and concepts always attached)."""
    from deeprobe_bench.progress import progress

    return api.DiscoveryContext(subject, data.hook_name, data.train_acts, subject.sae_for(data.hook_name), seed,
                                supervision, api.Budget(None), progress, labels=data.train_labels,
                                concepts=data.concepts, extra=dict(data.context_extra)).take_from(data)  # fmt: skip
