"""``--model gpt2-small`` offline: the real ``PretrainedModel.load`` path against a tiny Hugging Face cache.

``GPT2_SMALL.load()`` calls ``HookedTransformer.from_pretrained("gpt2-small")`` and
``SAE.from_pretrained("gpt2-small-res-jb", "blocks.{6,8}.hook_resid_pre")``. What those fetch (checked in
transformer-lens 3.9 / sae-lens 6.54 / transformers 5):

- TransformerLens maps the alias ``gpt2-small`` to the hub repo ``gpt2`` and reads its ``config.json``
  with ``AutoConfig`` (the dimensions come from that file, including its legacy ``n_ctx`` key), the
  weights with ``AutoModelForCausalLM`` (``model.safetensors``) and the tokenizer with ``AutoTokenizer``.
- SAELens maps the release to the repo ``jbloom/GPT2-Small-SAEs-Reformatted`` and reads
  ``<sae_id>/cfg.json`` (a pre-6.0 SAELens config), ``<sae_id>/sae_weights.safetensors`` and, if present,
  ``<sae_id>/sparsity.safetensors``; the sae_id is the hook name.

So a cache holding a tiny GPT-2-architecture checkpoint under ``models--gpt2`` and tiny SAEs under
``models--jbloom--GPT2-Small-SAEs-Reformatted`` drives the whole real path. The model has 9 layers
(``blocks.8`` must exist for the release's hooks) of width 32, a byte-level BPE vocabulary of 256 bytes +
``<|endoftext|>`` (BOS, EOS and unknown token, as in GPT-2) + the merges that make `` Yes`` and `` No``
single tokens (the persona task's answers), a context of 192 (the longest persona prompt, 166 bytes) and 64-latent
SAEs.

The cache is laid out as ``huggingface_hub`` writes it (``blobs/`` + symlinked ``snapshots/<commit>/``
+ ``refs/main``). huggingface_hub reads ``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` into
``huggingface_hub.constants`` at import, and every download and HTTP request reads them from there at
call time, so the in-process tests set the environment *and* patch those two constants; the CLI test
runs in a subprocess with the environment alone. Offline mode also makes the HTTP layer refuse any
request, so nothing here can reach the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, task_context

from deeprobe_bench.api import UserError
from deeprobe_bench.subject import GPT2_SMALL, Subject

MODEL_REPO = "gpt2"  # what TransformerLens resolves "gpt2-small" to
SAE_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"  # the repo_id of the SAELens release gpt2-small-res-jb
HOOKS = ("blocks.6.hook_resid_pre", "blocks.8.hook_resid_pre")
N_LAYERS, D_MODEL, N_HEADS, N_CTX, D_SAE = 9, 32, 2, 192, 64
MERGES = [("Ġ", "Y"), ("ĠY", "e"), ("ĠYe", "s"), ("Ġ", "N"), ("ĠN", "o")]  # " Yes", " No"
D_VOCAB = 257 + len(MERGES)
EOT = "<|endoftext|>"


# --------------------------------------------------------------------------- a tiny hub cache


def _put_in_cache(src: Path, cache: Path, repo_id: str, commit: str) -> Path:
    """Move the files under ``src`` into ``cache`` as huggingface_hub stores a downloaded repo; return the snapshot."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        blob = repo_dir / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.move(str(f), blob)
        link = snapshot / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def _tiny_gpt2(out: Path) -> None:
    """A GPT-2-architecture checkpoint + byte-level BPE tokenizer in the files the ``gpt2`` repo has."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab[EOT] = len(vocab)
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    GPT2TokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT, unk_token=EOT).save_pretrained(out)
    # n_ctx: gpt2's real config.json carries this legacy key and TransformerLens reads it.
    cfg = GPT2Config(n_layer=N_LAYERS, n_embd=D_MODEL, n_head=N_HEADS, n_positions=N_CTX, n_ctx=N_CTX,
                     vocab_size=len(vocab), bos_token_id=vocab[EOT], eos_token_id=vocab[EOT])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(cfg).save_pretrained(out)


def _tiny_saes(out: Path) -> None:
    """One SAE per hook in the release's on-disk format (a pre-6.0 SAELens ``cfg.json``, as jbloom's are)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for hook in HOOKS:
        d = out / hook
        d.mkdir(parents=True)
        cfg = {
            "model_name": "gpt2-small", "hook_point": hook, "hook_point_layer": int(hook.split(".")[1]),
            "hook_point_head_index": None, "d_in": D_MODEL, "d_sae": D_SAE, "expansion_factor": D_SAE // D_MODEL,
            "dtype": "torch.float32", "device": "cpu", "context_size": 128, "dataset_path": "Skylion007/openwebtext",
            "b_dec_init_method": "geometric_median", "l1_coefficient": 8e-05,
        }
        (d / "cfg.json").write_text(json.dumps(cfg))
        weights = {"W_enc": torch.randn(D_MODEL, D_SAE, generator=g) / D_MODEL**0.5, "b_enc": torch.zeros(D_SAE),
                   "W_dec": torch.randn(D_SAE, D_MODEL, generator=g) / D_SAE**0.5, "b_dec": torch.zeros(D_MODEL)}
        save_file(weights, str(d / "sae_weights.safetensors"))
        save_file({"sparsity": torch.full((D_SAE,), -2.0)}, str(d / "sparsity.safetensors"))


def _make_cache(root: Path, saes: bool = True) -> Path:
    cache = root / "hub"
    _tiny_gpt2(root / "src-model")
    _put_in_cache(root / "src-model", cache, MODEL_REPO, "1" * 40)
    if saes:
        _tiny_saes(root / "src-saes")
        _put_in_cache(root / "src-saes", cache, SAE_REPO, "2" * 40)
    return cache


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """``use(cache)``: offline mode with ``cache`` as the Hugging Face hub cache, for this test only."""
    from huggingface_hub import constants

    def use(cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    return use


# --------------------------------------------------------------------------- tests


def test_gpt2_small_loads_from_a_local_hf_cache(tmp_path, offline_hub):
    import torch
    from huggingface_hub import scan_cache_dir
    from transformers import GPT2LMHeadModel

    cache = _make_cache(tmp_path)
    info = scan_cache_dir(cache)  # the layout is one huggingface_hub itself recognises
    assert not info.warnings and {r.repo_id for r in info.repos} == {MODEL_REPO, SAE_REPO}
    offline_hub(cache)

    subject = GPT2_SMALL.load()

    assert isinstance(subject, Subject) and subject.name == "gpt2-small"
    cfg = subject.model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_vocab, cfg.n_ctx) == (N_LAYERS, D_MODEL, N_HEADS, D_VOCAB, N_CTX)
    assert cfg.original_architecture == "GPT2LMHeadModel" and not subject.model.training
    assert subject.card["sae_release"] == "gpt2-small-res-jb"

    assert set(subject.saes) == set(HOOKS)
    for hook, sae in subject.saes.items():
        assert sae.cfg.metadata.hook_name == hook
        assert (sae.cfg.d_in, sae.cfg.d_sae) == (D_MODEL, D_SAE)

    texts = ["When Mary and John went to the store,", "John gave a drink to"]
    tokens, lengths = subject.to_tokens(texts)  # bytes after a BOS (<|endoftext|>, id 256)
    assert tokens[0, 0].item() == subject.tokenizer.bos_token_id == 256
    assert lengths.tolist() == [len(t.encode()) + 1 for t in texts]
    with torch.no_grad():
        logits, acts = subject.model.run_with_cache(tokens, names_filter=lambda name: name in subject.saes)
        # the checkpoint's own weights were loaded: same log-probs as the Hugging Face model (TransformerLens
        # folds layer norms and centres weights, which leaves log-probs unchanged)
        snapshot = cache / "models--gpt2" / "snapshots" / ("1" * 40)
        hf_logits = GPT2LMHeadModel.from_pretrained(snapshot).eval()(tokens).logits
        torch.testing.assert_close(logits.log_softmax(-1), hf_logits.log_softmax(-1), atol=1e-4, rtol=1e-4)
        for hook, sae in subject.saes.items():
            latents = sae.encode(acts[hook])
            assert latents.shape == (2, tokens.shape[1], D_SAE) and (latents >= 0).all() and latents.any()
            assert sae.decode(latents).shape == acts[hook].shape
    assert subject.info()["saes"] == {h: {"architecture": "standard", "d_sae": D_SAE} for h in HOOKS}


def test_persona_runs_on_gpt2_small_with_its_handwritten_statements(tmp_path, offline_hub):
    from deeprobe_bench.api import parse_config
    from deeprobe_bench.baselines.diffmean import DiffMean
    from deeprobe_bench.baselines.prompt import Prompt
    from deeprobe_bench.tasks.persona import PersonaTask

    offline_hub(_make_cache(tmp_path))
    subject = GPT2_SMALL.load()
    assert subject.tokenizer.unk_token_id == subject.tokenizer.bos_token_id  # as in GPT-2: the unknown token is the BOS
    grid = (-1.0, 0.0, 1.0)
    task = PersonaTask(parse_config(PersonaTask.Config, {"traits": "agreeableness",
                                                         "coefficients": ",".join(map(str, grid))}))
    data = task.prepare(subject, seed=0)
    assert data.info["source"] == "handwritten" and data.hook_name == HOOKS[0]  # the first SAE's hook
    assert data.info["statements"] == {"train": 50, "test": 50}  # 25 pairs per half
    for method, supervision in ((DiffMean(), "labels"), (Prompt(), "none")):
        m = task.evaluate(data, method.discover(task_context(subject, data, supervision)))
        assert -1.0 <= m["steering_success"].value <= 1.0 and m["fluency_cost"].value == m["fluency_cost"].value
        if method.name == "diffmean":
            assert m["coefficient"].value in grid and 0.0 <= m["detection_auroc"].value <= 1.0


def test_gpt2_small_without_a_cache_raises_user_error(tmp_path, offline_hub):
    offline_hub(tmp_path / "empty-hub")

    with pytest.raises(UserError) as exc:
        GPT2_SMALL.load()

    msg = str(exc.value)
    assert "\n" not in msg and "gpt2-small" in msg
    assert "needs the network or a local Hugging Face cache" in msg


def test_gpt2_small_with_the_model_but_not_its_saes_raises_user_error(tmp_path, offline_hub):
    offline_hub(_make_cache(tmp_path, saes=False))

    with pytest.raises(UserError) as exc:
        GPT2_SMALL.load()

    msg = str(exc.value)
    assert "\n" not in msg and "gpt2-small" in msg and "gpt2-small-res-jb" in msg
    assert "network or a local Hugging Face cache" in msg


def test_cli_run_gpt2_small_offline_without_a_cache_is_one_line_exit_2(tmp_path):
    env = dict(os.environ)
    env.pop("HF_TOKEN", None)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), HF_HUB_CACHE=str(tmp_path / "empty-hub"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])

    p = subprocess.run(
        [sys.executable, "-m", "deeprobe_bench.cli", "run", "--task", "ioi", "--method", "random", "--model", "gpt2-small"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )

    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    # progress lines ("INFO: loading model gpt2-small") may precede it; the error itself is one line
    errors = [line for line in p.stderr.splitlines() if not line.startswith("INFO: ")]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith("deeprobe-bench: error: ") and "gpt2-small" in errors[0]
    assert "needs the network or a local Hugging Face cache" in errors[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))
