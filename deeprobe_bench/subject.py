"""The model under study: zoo checkpoints offline, ``from_pretrained`` online, and their SAEs.

A :class:`Subject` bundles a TransformerLens ``HookedTransformer``, its tokenizer, the SAEs trained on
it (``hook_name -> sae_lens.SAE``) and its model card. Two kinds of models exist:

- **Zoo models** (:class:`ZooModel`), trained by this project and shipped inside a task package as a
  directory ``zoo/<name>/``::

      card.json            config (HookedTransformerConfig fields), recipe, seed, data size, quality
      model.safetensors    the HookedTransformer state dict
      tokenizer.json       a Hugging Face ``tokenizers`` file (word-level for the zoo)
      saes/<hook_name>/    one sae_lens SAE per hook (``SAE.save_model`` layout)

  The card's ``sha256`` maps every other file of the directory (path relative to it, ``/``-separated)
  to its SHA-256 (:func:`zoo_file_digests`); :func:`load_zoo_dir` checks them before loading, so
  bit-flipped or truncated weights are refused with a one-line error naming the file, never run.
  Tasks declare them in the entry-point group ``deeprobe_bench.models``.
- **Pretrained models** (:class:`PretrainedModel`), loaded with ``HookedTransformer.from_pretrained``
  and ``SAE.from_pretrained`` from a SAELens release. They need the network or a local Hugging Face
  cache; without either the error says what is missing and how to get it.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deeprobe_bench.api import UserError

logger = logging.getLogger(__name__)

CARD = "card.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
SAES = "saes"


@dataclass
class Subject:
    """A model with its tokenizer, SAEs and card.

    Attributes:
        name: registry name (``ioi-mini``, ``gpt2-small``).
        model: the ``transformer_lens.HookedTransformer``, in eval mode, on CPU unless moved.
        saes: ``{sae_id: sae_lens.SAE}``. An id is the hook name (the hook's default SAE) or
            ``"<hook_name>@<variant>"`` when a hook has several SAEs (``blocks.1.hook_resid_post@topk``);
            the zoo directory ``saes/<sae_id>/`` holds each.
        card: the model card (JSON-ready dict); for pretrained models, what was loaded from where.
        forward_passes: batched forward passes of ``model`` so far (counted by a forward pre-hook).
    """

    name: str
    model: Any
    saes: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    forward_passes: int = 0

    def __post_init__(self) -> None:
        # Count batched forward passes of the model (read by the runner into each result).
        def count(module, args):
            self.forward_passes += 1

        self.model.register_forward_pre_hook(count)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def sae_for(self, hook_name: str, variant: str | None = None) -> Any | None:
        """The SAE at ``hook_name``: the named ``variant``, else the hook's default, else None.

        The default is the SAE whose id is the bare hook name, or else the variant the card names in
        ``default_sae_variant``.
        """
        if variant is not None:
            return self.saes.get(f"{hook_name}@{variant}")
        if hook_name in self.saes:
            return self.saes[hook_name]
        default = self.card.get("default_sae_variant")
        return self.saes.get(f"{hook_name}@{default}") if default else None

    def sae_variants(self, hook_name: str) -> dict[str, Any]:
        """``{variant: SAE}`` of every SAE at ``hook_name``; the bare-hook SAE is the variant ``"default"``."""
        out = {}
        for sae_id, sae in self.saes.items():
            hook, _, variant = sae_id.partition("@")
            if hook == hook_name:
                out[variant or "default"] = sae
        return out

    def to_tokens(self, texts: list[str]) -> tuple[Any, Any]:
        """:func:`tokenize_with_bos` with this subject's tokenizer."""
        return tokenize_with_bos(self.tokenizer, texts)

    def single_token(self, word: str) -> int:
        """The token id of ``word`` as it occurs after a space mid-sentence (``" Mary"``); memoised.

        Raises:
            UserError: the word is not exactly one token for this tokenizer.
        """
        cache = self.__dict__.setdefault("_single_tokens", {})
        if word not in cache:
            ids = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            unk = self.tokenizer.unk_token_id
            if len(ids) != 1 or (unk is not None and ids[0] == unk):
                raise UserError(f"{word!r} is not a single token for model {self.name} (got {len(ids)} tokens)")
            cache[word] = int(ids[0])
        return cache[word]

    def info(self) -> dict[str, Any]:
        """What identifies this subject in a result: name, architecture, SAEs, card quality figures (the
        runner adds the SHA-256 of the weights)."""
        cfg = self.model.cfg
        return {
            "name": self.name,
            "n_layers": cfg.n_layers,
            "d_model": cfg.d_model,
            "d_vocab": cfg.d_vocab,
            "saes": {h: {"architecture": s.cfg.architecture(), "d_sae": s.cfg.d_sae} for h, s in self.saes.items()},
            "card": {k: v for k, v in self.card.items() if k in ("version", "seed", "quality", "source", "sha256")},
        }


def tokenize_with_bos(tokenizer: Any, texts: list[str]) -> tuple[Any, Any]:
    """Tokenise with a BOS token, right-padded (one batched tokenizer call).

    Returns:
        ``(tokens Int[Tensor, "batch pos"], lengths Int[Tensor, "batch"])``, lengths counting the BOS.
    """
    import torch

    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    lengths = torch.tensor([len(r) + 1 for r in ids], dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(ids), int(lengths.max()) if len(ids) else 1), pad, dtype=torch.long)
    tokens[:, 0] = tokenizer.bos_token_id
    for i, r in enumerate(ids):
        tokens[i, 1 : len(r) + 1] = torch.tensor(r, dtype=torch.long)
    return tokens, lengths


def quiet_hooked_transformer(cfg: Any, tokenizer: Any = None) -> Any:
    """``HookedTransformer(cfg, tokenizer)`` without its 3.x deprecation warning."""
    from transformer_lens import HookedTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg, tokenizer=tokenizer)


def word_level_tokenizer(words: list[str]) -> Any:
    """A word-level Hugging Face tokenizer over ``words`` (plus ``<pad>``, ``<bos>``, ``<unk>``).

    Text is split on white space and punctuation (``tokenizers`` ``Whitespace``); ids follow the
    order of ``words`` after the three special tokens (pad 0, bos 1, unk 2).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + [w for w in dict.fromkeys(words) if w not in specials])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", eos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def load_tokenizer(directory: Path) -> Any:
    """Load ``tokenizer.json`` as a transformers tokenizer TransformerLens can rebuild offline."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # TransformerLens re-creates the tokenizer with add_bos_token=True from name_or_path, so it must be
    # a directory transformers can read: write the config beside tokenizer.json once if it is absent.
    if not (directory / "tokenizer_config.json").exists():
        tok = PreTrainedTokenizerFast(
            tokenizer_file=str(directory / TOKENIZER),
            bos_token="<bos>",
            eos_token="<bos>",
            pad_token="<pad>",
            unk_token="<unk>",
        )
        tok.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory))


#: the card field holding the checksums of the directory's files
SHA256 = "sha256"


def zoo_file_digests(directory: Path) -> dict[str, str]:
    """``{relative path: SHA-256 hex}`` of every file of a zoo directory but ``card.json`` (and temp files).

    Paths are relative to ``directory`` with ``/`` separators, sorted; what a card's ``sha256`` holds.
    """
    import hashlib

    directory = Path(directory)
    out: dict[str, str] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel == CARD or path.name.endswith(".tmp") or "__pycache__" in path.parts:
            continue
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def _fix(name: str) -> str:
    return f"run `deeprobe-bench zoo train {name}` (or reinstall deeprobe-bench for a shipped model)"


def verify_zoo_dir(directory: Path, card: dict[str, Any], name: str) -> None:
    """Check every file a card's ``sha256`` lists against its checksum.

    Raises:
        UserError: a listed file is missing or its content differs (one line naming the file and the fix).
    """
    expected = card.get(SHA256)
    if not isinstance(expected, dict) or not expected:
        logger.info("zoo model %s: its card has no checksums (%s); files not verified", name, SHA256)
        return
    actual = zoo_file_digests(directory)
    for rel, digest in sorted(expected.items()):
        if rel not in actual:
            raise UserError(f"zoo model {name}: {Path(directory) / rel} is missing; {_fix(name)}")
        if actual[rel] != digest:
            raise UserError(
                f"zoo model {name}: {Path(directory) / rel} does not match its SHA-256 in {CARD} (corrupt or "
                f"changed); {_fix(name)}"
            )


def save_zoo_dir(directory: Path, model: Any, card: dict[str, Any], saes: dict[str, Any] | None = None,
                 weights_dtype: str | None = None) -> None:  # fmt: skip
    """Write a zoo model directory (see the module docstring). The tokenizer is ``model.tokenizer``;
    ``weights_dtype`` (``"float16"`` ...): the floating-point weights are stored in it (default: as they are).

    SAEs already in ``directory`` are removed first: they were trained on an earlier model's activations.
    The card is written last, with the ``sha256`` of every file written (:func:`zoo_file_digests`), which is
    also set in ``card`` itself.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    if (directory / SAES).is_dir():
        shutil.rmtree(directory / SAES)
    dtype = getattr(torch, weights_dtype) if weights_dtype else None
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
             for k, v in model.state_dict().items()}  # fmt: skip
    save_file(state, str(directory / WEIGHTS))
    model.tokenizer.save_pretrained(str(directory))
    for hook_name, sae in (saes or {}).items():
        sae.save_model(directory / SAES / hook_name)
    card[SHA256] = zoo_file_digests(directory)  # in place: the caller's card is the one written
    tmp = directory / (CARD + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    tmp.replace(directory / CARD)


def load_zoo_dir(directory: Path, name: str | None = None, with_saes: bool = True) -> Subject:
    """Load a zoo model directory written by :func:`save_zoo_dir`.

    Raises:
        UserError: the directory or one of its files is missing, a file differs from its SHA-256 in the card,
            or a file cannot be read (corrupt JSON or safetensors): one line naming the file and the fix.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformerConfig

    directory = Path(directory)
    name = name or directory.name
    missing = [f for f in (CARD, WEIGHTS, TOKENIZER) if not (directory / f).exists()]
    if missing:
        raise UserError(
            f"zoo model {name} is incomplete at {directory} (missing {', '.join(missing)}); "
            f"run `deeprobe-bench zoo train {name}`"
        )
    unreadable = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)

    def refuse(path: Path, e: BaseException) -> UserError:
        text = " ".join(str(e).split())[:160]
        return UserError(f"zoo model {name}: {path} cannot be read ({type(e).__name__}: {text}); {_fix(name)}")

    try:
        card = json.loads((directory / CARD).read_text())
        if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
            raise ValueError("not a model card (no 'config' object)")
    except unreadable as e:
        raise refuse(directory / CARD, e) from None
    verify_zoo_dir(directory, card, name)
    try:
        cfg = HookedTransformerConfig(**card["config"])
    except unreadable as e:
        raise refuse(directory / CARD, e) from None
    try:
        tokenizer = load_tokenizer(directory)
    except unreadable as e:
        raise refuse(directory / TOKENIZER, e) from None
    model = quiet_hooked_transformer(cfg, tokenizer)
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
    except unreadable as e:
        raise refuse(directory / WEIGHTS, e) from None
    model.eval()
    torch.set_grad_enabled(True)
    saes = {}
    if with_saes and (directory / SAES).is_dir():
        from sae_lens import SAE

        for sae_dir in sorted(p for p in (directory / SAES).iterdir() if p.is_dir()):
            try:
                sae = SAE.load_from_disk(sae_dir)
            except unreadable as e:
                raise refuse(sae_dir, e) from None
            sae.eval()
            hook, at, variant = sae_dir.name.partition("@")
            saes[(sae.cfg.metadata.hook_name or hook) + at + variant] = sae
    return Subject(name=name, model=model, saes=saes, card=card)


@dataclass
class ZooModel:
    """A model this project trains and ships (entry-point group ``deeprobe_bench.models``).

    Attributes:
        name: registry name.
        description: one line for ``deeprobe-bench ls models``.
        package: the package holding ``zoo/<name>/`` (``deeprobe_bench.tasks.ioi``).
        trainer: ``"module:function"`` with signature ``train(out_dir: Path, seed: int) -> dict``
            (returns the card); imported only by :meth:`train`.
        sanity: ``"module:function"`` with signature ``sanity_saes(out_dir: Path, seed: int) -> dict`` that
            adds the random-SAE sanity baselines to a trained copy (:meth:`add_sanity_saes`); empty when the
            model has no SAE to compare them with.
    """

    name: str
    description: str
    package: str
    trainer: str
    kind: str = "zoo"
    sanity: str = ""

    def path(self) -> Path:
        from importlib.resources import files

        return Path(str(files(self.package))) / "zoo" / self.name

    def user_path(self) -> Path:
        """Where ``zoo train`` writes this model by default: the user's zoo (``deeprobe_bench.zoo.card.user_zoo_dir``)."""
        from deeprobe_bench.zoo.card import user_zoo_dir

        return user_zoo_dir() / self.name

    def active_path(self) -> Path:
        """The copy :meth:`load` uses: the user's trained copy (:meth:`user_path`) when it has a card, else the
        shipped model (:meth:`path`)."""
        user = self.user_path()
        return user if (user / CARD).is_file() else self.path()

    def load(self) -> Subject:
        """The model in :meth:`active_path`."""
        path = self.active_path()
        if path != self.path():
            logger.info("zoo model %s: loading the user's copy %s", self.name, path)
        return load_zoo_dir(path, name=self.name)

    def train(self, out_dir: Path | None = None, seed: int = 0) -> Path:
        """Train from scratch (resuming any interrupted run) into ``out_dir`` (default: :meth:`user_path`,
        never the installed package) and return it."""
        import importlib

        module, func = self.trainer.split(":")
        out = Path(out_dir) if out_dir is not None else self.user_path()
        getattr(importlib.import_module(module), func)(out_dir=out, seed=seed)
        return out

    def add_sanity_saes(self, out_dir: Path | None = None, seed: int = 0) -> Path:
        """Add the sanity-baseline SAEs (``saes/<hook>@frozen-decoder`` ...) to the copy in ``out_dir``
        (default: the copy :meth:`load` would use) and return it.

        Raises:
            UserError: the model has no sanity stage, or ``out_dir`` holds no trained copy.
        """
        import importlib

        if not self.sanity:
            raise UserError(f"zoo model {self.name} has no SAE to train sanity baselines for")
        out = Path(out_dir) if out_dir is not None else self.active_path()
        if not (out / CARD).is_file():
            raise UserError(f"{out} holds no trained {self.name} (no {CARD}); run `deeprobe-bench zoo train {self.name}` first")
        module, func = self.sanity.split(":")
        getattr(importlib.import_module(module), func)(out_dir=out, seed=seed)
        return out


@dataclass
class PretrainedModel:
    """A model loaded with ``HookedTransformer.from_pretrained`` plus a SAELens release.

    Attributes:
        name: TransformerLens model name (``gpt2-small``).
        description: one line for ``ls models``.
        sae_release: SAELens release (``gpt2-small-res-jb``).
        sae_ids: ``{hook_name: sae_id}`` to load from the release.
        card: facts about the model its card carries for tasks, e.g. ``{"circuits": {"ioi": "wang2022"}}``: the
            IOI circuit of this model is known (tasks/ioi names the circuits it can score against).
    """

    name: str
    description: str
    sae_release: str
    sae_ids: dict[str, str]
    kind: str = "pretrained"
    card: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Subject:
        import contextlib
        import io

        from huggingface_hub.errors import HfHubHTTPError

        # Not being able to reach or find the files: OSError (transformers, huggingface_hub's
        # LocalEntryNotFoundError) or an HTTP error of the hub. Anything else is a bug, not the user's.
        missing = (OSError, HfHubHTTPError)
        printed = io.StringIO()  # TransformerLens prints "Loaded pretrained model ..." to stdout
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
                warnings.simplefilter("ignore", DeprecationWarning)
                from transformer_lens import HookedTransformer

                model = HookedTransformer.from_pretrained(self.name, device="cpu")
        except missing as e:
            raise UserError(
                f"cannot load {self.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} -- "
                f"it needs the network or a local Hugging Face cache (run once with network access, or set "
                f"HF_HOME to a cache holding it)"
            ) from e
        finally:
            if printed.getvalue().strip():
                logger.debug(printed.getvalue().strip())
        model.eval()
        saes = {}
        from sae_lens import SAE

        for hook_name, sae_id in self.sae_ids.items():
            try:
                with warnings.catch_warnings():
                    # The release asks for from_pretrained's default weight processing, which is what we did.
                    warnings.filterwarnings("ignore", message="(?s).*model_from_pretrained_kwargs")
                    saes[hook_name] = SAE.from_pretrained(self.sae_release, sae_id, device="cpu")
            except missing as e:
                raise UserError(
                    f"cannot load SAE {self.sae_release}/{sae_id} for {self.name}: {type(e).__name__} -- it needs "
                    f"the network or a local Hugging Face cache holding the SAELens release {self.sae_release}"
                ) from e
            saes[hook_name].eval()
        card = {"source": f"transformer_lens.from_pretrained({self.name!r})", "sae_release": self.sae_release,
                **self.card}  # fmt: skip
        return Subject(name=self.name, model=model, saes=saes, card=card)


GPT2_SMALL = PretrainedModel(
    name="gpt2-small",
    description="GPT-2 small (TransformerLens) with the SAELens release gpt2-small-res-jb; needs network or HF cache",
    sae_release="gpt2-small-res-jb",
    sae_ids={f"blocks.{layer}.hook_resid_pre": f"blocks.{layer}.hook_resid_pre" for layer in (6, 8)},
    card={"circuits": {"ioi": "wang2022"}},  # Wang et al. 2022 found GPT-2 small's IOI circuit
)


def load_subject(name: str) -> Subject:
    """Load the model registered as ``name`` (zoo or pretrained).

    Raises:
        UserError: unknown name (with the available names), or a model that cannot be loaded here.
    """
    from deeprobe_bench import registry

    spec = registry.get_model_spec(name)
    logger.info("loading model %s", name)
    return spec.load()

