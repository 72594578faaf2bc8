"""``--model othello-gpt`` / ``--model chess-gpt`` offline: the real loading path against a Hugging Face cache
the tests write themselves, holding tiny checkpoints in the public repositories' layouts
(:mod:`deeprobe_bench.zoo.pretrained` states them), and dictionary_learning SAE folders in the user's zoo.

What is known by construction: the loaded HookedTransformer gives the log-probabilities of the model the
test saved (TransformerLens' weight processing keeps them), its residual stream equals the Hugging Face
GPT-2's hidden states (no processing for chess-gpt), and a converted SAE encodes and decodes as the
dictionary_learning formulas say.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from deeprobe_bench.api import UserError  # noqa: E402
from deeprobe_bench.zoo import pretrained  # noqa: E402

COMMIT = "0" * 40


def _snapshot_dir(cache: Path, repo: str) -> Path:
    """An empty snapshot folder of ``repo`` in ``cache``, laid out as huggingface_hub writes it."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snap = repo_dir / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An offline Hugging Face cache in ``tmp_path`` (environment and huggingface_hub's constants) and a
    user zoo; returns the cache folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("DEEPROBE_ZOO", str(tmp_path / "zoo"))
    return cache


def _dl_sae(folder: Path, d_in: int, d_sae: int, layer: int, topk: int | None = None, seed: int = 0) -> dict:
    """A dictionary_learning SAE folder (ae.pt + config.json) with random weights; returns its state dict."""
    g = torch.Generator().manual_seed(seed)
    w = {"encoder.weight": torch.randn(d_sae, d_in, generator=g), "encoder.bias": torch.randn(d_sae, generator=g),
         "decoder.weight": torch.randn(d_in, d_sae, generator=g)}  # fmt: skip
    w["b_dec" if topk else "bias"] = torch.randn(d_in, generator=g)
    trainer = {"dict_class": "AutoEncoderTopK" if topk else "AutoEncoder", "activation_dim": d_in, "dict_size": d_sae,
               "layer": layer, "lm_name": "test"}  # fmt: skip
    if topk:
        trainer["k"] = topk
        w["k"] = torch.tensor(topk)
    folder.mkdir(parents=True)
    torch.save(w, folder / "ae.pt")  # the public layout is a torch .pt state dict
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 59}}))
    return w


def test_othello_gpt_loads_offline_with_its_saes(hub):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    neel = {"d_model": 16, "n_layers": 6, "d_mlp": 32, "d_head": 8, "n_heads": 2, "n_ctx": 59, "d_vocab": 61,
            "act_fn": "gelu", "attn_only": False, "normalization": "LN"}  # fmt: skip
    ref = HookedTransformer(HookedTransformerConfig(**{k: v for k, v in neel.items() if k != "normalization"},
                                                    normalization_type="LN", seed=3))  # fmt: skip
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that folding them matters
        for n, p in ref.named_parameters():
            if ".ln" in n or n.startswith("ln_final"):
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    snap = _snapshot_dir(hub, pretrained.OTHELLO_GPT.repo)
    (snap / "config.json").write_text(json.dumps(neel))
    torch.save(ref.state_dict(), snap / "synthetic_model_final.pth")
    w = _dl_sae(Path(os.environ["DEEPROBE_ZOO"]) / "othello-gpt" / "dictionary_learning" / "trainer0", 16, 32, layer=5)

    subject = pretrained.OTHELLO_GPT.load()
    x = torch.randint(0, 61, (3, 59), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(subject.model(x).log_softmax(-1), ref(x).log_softmax(-1), atol=1e-4)
    tok = subject.tokenizer
    assert tok.convert_tokens_to_ids("a1") == 1 and tok.convert_tokens_to_ids("h8") == 60
    assert tok.convert_tokens_to_ids("d4") == tok.convert_tokens_to_ids("<pad>") == 0  # d4 is a centre square
    assert subject.card["task"] == {"hook_name": "blocks.5.hook_resid_post", "board_size": 8}
    sae = subject.sae_for("blocks.5.hook_resid_post")
    assert set(subject.saes) == {"blocks.5.hook_resid_post@trainer0"} and sae is not None
    a = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    f = torch.relu((a - w["bias"]) @ w["encoder.weight"].T + w["encoder.bias"])
    with torch.no_grad():
        assert torch.allclose(sae.encode(a), f, atol=1e-4)
        assert torch.allclose(sae.decode(f), f @ w["decoder.weight"].T + w["bias"], atol=1e-4)
    # the othello task runs on it: 8x8 games, the card's hook
    from deeprobe_bench.tasks.othello.task import OthelloConfig, OthelloTask

    data = OthelloTask(OthelloConfig(n_train=10, n_label=20, n_test=20, objective_games=10, n_causal=20)).prepare(subject, seed=0)
    assert data.train_acts.shape[1] == 16


def test_chess_gpt_loads_offline_unprocessed(hub):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=32, n_positions=64)).eval()
    hf.save_pretrained(_snapshot_dir(hub, pretrained.CHESS_GPT.repo))
    w = _dl_sae(Path(os.environ["DEEPROBE_ZOO"]) / "chess-gpt" / "dictionary_learning" / "top", 16, 32, layer=0, topk=3)

    subject = pretrained.CHESS_GPT.load()
    x = torch.randint(0, 32, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf(x, output_hidden_states=True)
        logits, cache = subject.model.run_with_cache(x)
    assert torch.allclose(logits, out.logits, atol=1e-4)
    for layer in range(2):  # HF's last hidden state has ln_f applied; the others are the blocks' outputs
        assert torch.allclose(cache[f"blocks.{layer}.hook_resid_post"], out.hidden_states[layer + 1], atol=1e-4)
    assert subject.tokenizer.convert_tokens_to_ids(";") == 15  # Chess-GPT's vocabulary order: ' ' is 0
    sae = subject.saes["blocks.0.hook_resid_post@top"]
    a = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    pre = torch.relu((a - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    with torch.no_grad():
        codes = sae.encode(a)
    assert ((codes != 0).sum(-1) <= 3).all()
    top = pre.topk(3, dim=-1)
    assert torch.allclose(codes.gather(-1, top.indices), top.values, atol=1e-4)


def test_missing_weights_offline_say_what_and_how(hub):
    with pytest.raises(UserError, match=r"Baidicoot/Othello-GPT-Transformer-Lens is not in the local cache.*huggingface-cli download"):
        pretrained.OTHELLO_GPT.load()
    with pytest.raises(UserError, match=r"adamkarvonen/8LayerChessGPT2"):
        pretrained.CHESS_GPT.load()


def test_unsupported_sae_class_is_refused(tmp_path):
    folder = tmp_path / "g"
    _dl_sae(folder, 8, 16, layer=2)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["trainer"]["dict_class"] = "GatedAutoEncoder"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="GatedAutoEncoder is not supported"):
        pretrained.convert_dictionary_learning(folder)
    with pytest.raises(UserError, match="not a dictionary_learning SAE folder"):
        pretrained.convert_dictionary_learning(tmp_path)
