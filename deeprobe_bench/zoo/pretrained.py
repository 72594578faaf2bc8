"""The board-game paper's own models: ``--model othello-gpt`` and ``--model chess-gpt``.

Karvonen et al. 2024 ("Measuring Progress in Dictionary Learning for Language Model Interpretability
with Board Game Models", NeurIPS 2024; code: adamkarvonen/SAE_BoardGameEval, ``circuits/utils.py``)
study two 8-layer, d_model 512 GPTs, loaded there as follows, and so here:

- **othello-gpt**: the synthetic-data Othello-GPT of Li et al. 2023 in TransformerLens format, Hugging
  Face repo ``Baidicoot/Othello-GPT-Transformer-Lens`` (TransformerLens' official ``othello-gpt``): a
  ``config.json`` in Neel Nanda's HookedTransformer format (``d_model``, ``n_layers``, ``d_mlp``, ``d_head``,
  ``n_heads``, ``n_ctx``, ``d_vocab``, ``act_fn``, ``normalization`` or ``normalization_type``,
  ``attn_only``) and a state dict whose file name ends in ``final.pth`` (what TransformerLens'
  ``from_pretrained`` looks for in that repo). It is processed as ``from_pretrained`` does by default
  (``fold_ln``, ``center_writing_weights``, ``center_unembed``, ``fold_value_biases``), which is how the
  paper's Othello SAEs saw it. Vocabulary: 0 = pass/padding, 1..60 the squares but the four centre ones
  in row-major order (``a1`` ... ``h8`` in this project's naming), context 59: this project's 8x8 Othello
  tokens (:mod:`deeprobe_bench.tasks.othello.data`).
- **chess-gpt**: the 8-layer Chess-GPT of adamkarvonen/chess_llm_interpretability as a Hugging Face
  ``GPT2LMHeadModel``, repo ``adamkarvonen/8LayerChessGPT2`` (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``), converted with TransformerLens' GPT-2 weight conversion and no weight processing,
  so that ``blocks.L.hook_resid_post`` equals the Hugging Face model's ``transformer.h[L]`` output, where
  the paper's chess SAEs were trained. Its 32-character vocabulary is this project's chess vocabulary
  (:data:`deeprobe_bench.tasks.chess.data.VOCAB`).

Weights come through ``huggingface_hub.snapshot_download`` (its cache, ``HF_HOME`` / ``HF_HUB_CACHE``;
``HF_HUB_OFFLINE=1`` uses the cache only). Without the network and without a cached copy, loading stops
with one line saying which repository is missing and how to fetch it. ``.pth`` files are read with
``torch.load(weights_only=True)`` (tensors only).

**SAEs.** The paper's SAEs are dictionary_learning checkpoints (saprmarks/dictionary_learning): a folder
per SAE with ``ae.pt`` (state dict) and ``config.json`` (``trainer.dict_class``, ``activation_dim``,
``dict_size``, ``layer``, ``k``), released as zip archives of whole sweeps in the Hugging Face repos
``adamkarvonen/othello_saes`` and ``adamkarvonen/chess_saes`` (e.g.
``othello-trained_model-layer_5-2024-05-23.zip``; the two layer-5 archives unpack to about 150 GB). They are
not downloaded here: unpack the SAE folders you want under ``<user zoo>/<model>/dictionary_learning/``
(:func:`deeprobe_bench.zoo.card.user_zoo_dir`) and each is converted on load to a sae_lens SAE
(``AutoEncoder``, the standard and p-anneal trainers' class -> ``standard``; ``AutoEncoderTopK`` ->
``topk``; mapping as sae_lens' ``dictionary_learning_sae_huggingface_loader_1``) with the id
``blocks.<layer>.hook_resid_post@<folder name>``. Without them the model loads with no SAE.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SAE_FOLDER = "dictionary_learning"


def _user_error(msg: str) -> Exception:
    from deeprobe_bench.api import UserError

    return UserError(msg)


def snapshot(repo: str, patterns: list[str], model: str) -> Path:
    """The local folder of Hugging Face repo ``repo`` (files matching ``patterns``), downloaded or cached.

    Raises:
        UserError: not cached and the hub cannot be reached (or offline mode), with how to get it.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(repo_id=repo, allow_patterns=patterns))
    except (OSError, HfHubHTTPError, ValueError) as e:
        raise _user_error(
            f"cannot load {model}: the Hugging Face repo {repo} is not in the local cache and the hub cannot be "
            f"reached ({type(e).__name__}) -- run once with network access, or fetch it with "
            f"`huggingface-cli download {repo}` (HF_HOME / HF_HUB_CACHE select the cache)"
        ) from None


def _attach_tokenizer(model: Any, kind: str) -> None:
    """Give ``model`` the project's tokenizer for ``othello`` (8x8) or ``chess`` tokens (TransformerLens
    rebuilds it from its folder, so that is set while the folder exists)."""
    from deeprobe_bench.subject import load_tokenizer

    if kind == "othello":
        from deeprobe_bench.tasks.othello.recipe import tokenizer_for

        tok = tokenizer_for(8)
    else:
        from deeprobe_bench.tasks.chess import data

        tok = data.char_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        model.set_tokenizer(load_tokenizer(Path(tmp)))


def load_tl_neel(folder: Path, model: str) -> Any:
    """A ``HookedTransformer`` from a Neel-format ``config.json`` and ``*final.pth`` state dict in ``folder``,
    processed as ``HookedTransformer.from_pretrained`` does by default.

    Raises:
        UserError: the files are missing or do not fit each other.
    """
    import torch
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import quiet_hooked_transformer

    weights = sorted(folder.glob("*final.pth")) or sorted(folder.glob("*.pth"))
    if not (folder / "config.json").is_file() or not weights:
        raise _user_error(f"cannot load {model}: {folder} lacks config.json or a *final.pth state dict")
    c = json.loads((folder / "config.json").read_text())
    norm = c.get("normalization_type", c.get("normalization"))
    cfg = {k: c[k] for k in ("d_model", "n_layers", "d_mlp", "d_head", "n_heads", "n_ctx", "d_vocab", "act_fn")}
    cfg.update(attn_only=bool(c.get("attn_only", False)), normalization_type="LNPre" if norm == "LN" else norm,
               positional_embedding_type="standard", default_prepend_bos=False, model_name=model,
               original_architecture="neel", device="cpu")  # fmt: skip
    state = torch.load(weights[0], map_location="cpu", weights_only=True)
    m = quiet_hooked_transformer(HookedTransformerConfig(**cfg))
    try:
        m.load_and_process_state_dict(state, fold_ln=norm == "LN", center_writing_weights=norm in ("LN", "LNPre"),
                                      center_unembed=True, fold_value_biases=True)  # fmt: skip
    except (RuntimeError, KeyError) as e:
        raise _user_error(f"cannot load {model}: {weights[0]} does not fit {folder / 'config.json'} ({e})") from None
    return m


def load_hf_gpt2(folder: Path, model: str) -> Any:
    """A ``HookedTransformer`` holding the Hugging Face ``GPT2LMHeadModel`` in ``folder``, unprocessed
    (``blocks.L.hook_resid_post`` = the Hugging Face ``transformer.h[L]`` output).

    Raises:
        UserError: the folder holds no loadable GPT-2 checkpoint.
    """
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    from deeprobe_bench.subject import quiet_hooked_transformer

    try:
        hf = GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise _user_error(f"cannot load {model}: {folder} holds no GPT2LMHeadModel checkpoint ({type(e).__name__})") from None
    hc = hf.config
    cfg = HookedTransformerConfig(
        n_layers=hc.n_layer, d_model=hc.n_embd, n_heads=hc.n_head, d_head=hc.n_embd // hc.n_head,
        d_mlp=hc.n_inner or 4 * hc.n_embd, d_vocab=hc.vocab_size, n_ctx=hc.n_positions,
        act_fn=hc.activation_function, normalization_type="LN", eps=hc.layer_norm_epsilon,
        positional_embedding_type="standard", default_prepend_bos=False, model_name=model,
        original_architecture="GPT2LMHeadModel", device="cpu",
    )  # fmt: skip
    m = quiet_hooked_transformer(cfg)
    m.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                  center_unembed=False, fold_value_biases=False)  # fmt: skip
    return m


def convert_dictionary_learning(folder: Path, model_name: str = "") -> tuple[str, Any]:
    """A sae_lens SAE from a dictionary_learning SAE folder (``ae.pt`` + ``config.json``); returns
    ``(hook_name, sae)``.

    ``AutoEncoder`` (``bias``, ``encoder.weight`` ``[d_sae, d_in]``, ``encoder.bias``, ``decoder.weight``
    ``[d_in, d_sae]``: ``f = relu(W_e (x - bias) + b_e)``, ``x_hat = W_d f + bias``) -> sae_lens
    ``standard`` with ``apply_b_dec_to_input``; ``AutoEncoderTopK`` (``b_dec`` instead of ``bias``, ``k``)
    -> ``topk``. The hook is ``blocks.<trainer.layer>.hook_resid_post``.

    Raises:
        UserError: missing files, or a dictionary class other than those two.
    """
    import torch
    from sae_lens import SAE

    if not (folder / "ae.pt").is_file() or not (folder / "config.json").is_file():
        raise _user_error(f"{folder} is not a dictionary_learning SAE folder (needs ae.pt and config.json)")
    trainer = json.loads((folder / "config.json").read_text())["trainer"]
    cls = trainer.get("dict_class", "AutoEncoder")
    if cls not in ("AutoEncoder", "AutoEncoderTopK"):
        raise _user_error(f"{folder}: dictionary class {cls} is not supported here (AutoEncoder, AutoEncoderTopK)")
    w = torch.load(folder / "ae.pt", map_location="cpu", weights_only=True)
    hook = f"blocks.{trainer['layer']}.hook_resid_post"
    state = {"W_enc": w["encoder.weight"].T.contiguous(), "b_enc": w["encoder.bias"],
             "W_dec": w["decoder.weight"].T.contiguous(), "b_dec": w["bias"] if "bias" in w else w["b_dec"]}  # fmt: skip
    cfg: dict[str, Any] = {
        "architecture": "topk" if cls == "AutoEncoderTopK" else "standard",
        "d_in": int(trainer["activation_dim"]), "d_sae": int(trainer["dict_size"]), "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
        "metadata": {"model_name": model_name, "hook_name": hook},
    }  # fmt: skip
    if cls == "AutoEncoderTopK":
        cfg["k"] = int(trainer.get("k", int(w["k"]) if "k" in w else 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae = SAE.from_dict(cfg)
    sae.load_state_dict(state)
    sae.eval()
    return hook, sae


@dataclass
class PaperModel:
    """One of the paper's models (entry-point group ``deeprobe_bench.models``); see the module docstring.

    Attributes:
        name: registry name; description: for ``ls models``; repo: the Hugging Face repository;
        layout: ``tl-neel`` or ``hf-gpt2``; tokens: ``othello`` or ``chess``; task: the card's ``task``.
    """

    name: str
    description: str
    repo: str
    layout: str
    tokens: str
    task: dict[str, Any] = field(default_factory=dict)
    kind: str = "pretrained"

    def sae_dir(self) -> Path:
        """Where this model's dictionary_learning SAE folders are looked for."""
        from deeprobe_bench.zoo.card import user_zoo_dir

        return user_zoo_dir() / self.name / SAE_FOLDER

    def load(self) -> Any:
        """The :class:`deeprobe_bench.subject.Subject` (SAEs from :meth:`sae_dir` when present).

        Raises:
            UserError: the weights are neither cached nor reachable, or do not load.
        """
        from deeprobe_bench.subject import Subject

        patterns = ["config.json", "*.pth"] if self.layout == "tl-neel" else ["config.json", "*.safetensors", "*.bin"]
        folder = snapshot(self.repo, patterns, self.name)
        model = load_tl_neel(folder, self.name) if self.layout == "tl-neel" else load_hf_gpt2(folder, self.name)
        _attach_tokenizer(model, self.tokens)
        model.eval()
        saes = {}
        sae_root = self.sae_dir()
        folders = sorted(p.parent for p in sae_root.rglob("ae.pt")) if sae_root.is_dir() else []
        for f in folders:
            hook, sae = convert_dictionary_learning(f, self.name)
            saes[f"{hook}@{f.name}"] = sae
        if not folders:
            logger.info("%s: no SAEs under %s (see deeprobe_bench.zoo.pretrained for the paper's)", self.name, sae_root)
        card = {"source": f"huggingface {self.repo} ({folder.name})", "task": dict(self.task),
                "saes_from": str(sae_root), "layout": self.layout}  # fmt: skip
        if saes:
            card["default_sae_variant"] = next(iter(saes)).split("@", 1)[1]
        return Subject(name=self.name, model=model, saes=saes, card=card)


OTHELLO_GPT = PaperModel(
    name="othello-gpt",
    description="the paper's Othello-GPT (Baidicoot/Othello-GPT-Transformer-Lens, 8x8); SAEs from dictionary_learning folders; needs network or HF cache",
    repo="Baidicoot/Othello-GPT-Transformer-Lens",
    layout="tl-neel",
    tokens="othello",
    task={"hook_name": "blocks.5.hook_resid_post", "board_size": 8},
)

CHESS_GPT = PaperModel(
    name="chess-gpt",
    description="the paper's 8-layer Chess-GPT (adamkarvonen/8LayerChessGPT2); SAEs from dictionary_learning folders; needs network or HF cache",
    repo="adamkarvonen/8LayerChessGPT2",
    layout="hf-gpt2",
    tokens="chess",
    task={"hook_name": "blocks.5.hook_resid_post"},
)
