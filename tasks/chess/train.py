"""Recipe of the zoo models ``chess-mini`` (trained) and ``chess-mini-random`` (same architecture, random init).

The language model is a character-level GPT in the format of Chess-GPT (adamkarvonen/
chess_llm_interpretability: vocab 32, ``";1.e4 e5 2.Nf3 ..."``), 4 layers, d_model 128, trained from
scratch with next-character loss on uniformly random legal games cut to 128 characters
(:mod:`deeprobe_bench.tasks.chess.data`). Training game ``i`` of the run is game ``i`` of the ``train``
stream of the seed; step ``s`` reads games ``s * batch .. (s + 1) * batch - 1``, generated on the fly, so
no game is seen twice and a resumed run reads exactly what an uninterrupted one would.

Speed: training runs a plain PyTorch module (:class:`FastGPT`, ``scaled_dot_product_attention``), about
twice as fast on CPU as ``HookedTransformer`` with its hooks; its weights are then copied into a
``HookedTransformer`` of the same architecture (:func:`to_hooked`, checked to give the same logits), which
is what is shipped and studied.

Schedule: linear warmup, constant learning rate, then linear decay to ``min_lr`` over the last
``decay_frac`` of the steps (warmup-stable-decay). Every step before the decay does not depend on the
total number of steps, so a run can be extended or shortened while in its stable phase.

Resumable: a checkpoint (model, optimiser, step, losses) is written every ``checkpoint_every`` steps to
``$DEEPROBE_CACHE/chess/lm-<key>/`` (:func:`checkpoint_dir`); rerunning continues from it.

Run as ``python -m deeprobe_bench.tasks.chess.train --out DIR --seed 0 [--tiny] [--stage lm]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.tasks.chess import data

logger = logging.getLogger(__name__)

NAME = "chess-mini"
RANDOM_NAME = "chess-mini-random"
VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """Everything that fixes a training run besides the seed (defaults: the shipped chess-mini)."""

    # model
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 128  # = the cut of a game's text (about 11 full moves; the paper's window is 256)
    # language-model training
    steps: int = 3600
    batch: int = 64  # games per step (batch * n_ctx characters)
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    decay_frac: float = 0.25
    weight_decay: float = 0.1
    checkpoint_every: int = 50
    eval_every: int = 250
    n_eval_games: int = 128  # learning-curve games (eval stream)
    # quality (held-out games of the eval stream)
    n_quality_games: int = 800  # probes: the first 600 train them, the last 200 test them
    n_probe_train_games: int = 600
    n_legal_games: int = 20  # legal-move rate of greedy continuations at their '.' positions
    # SAEs (deeprobe_bench.sae_training.train_sae) on all positions of n_sae_games games
    d_sae: int = 512  # 4 x d_model (Karvonen et al.: 8x or 16x; smaller for the CPU budget)
    k: int = 32
    l1: float = 5.0
    sae_steps: int = 1000
    sae_batch: int = 1024
    sae_lr: float = 3e-4
    n_sae_games: int = 1000
    # One thread: deterministic for a fixed thread count, and the machine's other core is busy.
    threads: int = 1

    def lm_key(self, seed: int) -> str:
        """Hash of what fixes the language-model run up to the decay phase (not ``steps``)."""
        lm_fields = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "batch", "lr", "min_lr",
                     "warmup_steps", "decay_frac", "weight_decay", "n_eval_games", "threads")  # fmt: skip
        fields = {k: v for k, v in asdict(self).items() if k in lm_fields}
        fields["seed"] = seed
        fields["data_version"] = data.DATA_VERSION
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


FULL = Recipe()
TINY = dataclasses.replace(
    FULL,
    n_layers=2,
    d_model=32,
    n_heads=2,
    d_head=16,
    d_mlp=64,
    n_ctx=64,
    steps=12,
    batch=4,
    warmup_steps=2,
    checkpoint_every=5,
    eval_every=0,
    n_eval_games=8,
    n_quality_games=24,
    n_probe_train_games=16,
    n_legal_games=2,
    d_sae=64,
    k=4,
    sae_steps=10,
    sae_batch=64,
    n_sae_games=8,
)


# --------------------------------------------------------------------------- model


def model_config(recipe: Recipe, name: str = NAME) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (plain JSON types)."""
    return {
        "n_layers": recipe.n_layers,
        "d_model": recipe.d_model,
        "n_heads": recipe.n_heads,
        "d_head": recipe.d_head,
        "d_mlp": recipe.d_mlp,
        "n_ctx": recipe.n_ctx,
        "d_vocab": len(data.VOCAB),
        "act_fn": "gelu",
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "default_prepend_bos": False,  # texts start with ';' themselves
        "tokenizer_prepends_bos": False,
        "original_architecture": "chess-mini",
        "model_name": name,
        "init_weights": True,
        "device": "cpu",
    }


def _fast_gpt_class() -> type:
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, r: Recipe) -> None:
            super().__init__()
            self.r = r
            self.ln1 = nn.LayerNorm(r.d_model)
            self.qkv = nn.Linear(r.d_model, 3 * r.n_heads * r.d_head)
            self.o = nn.Linear(r.n_heads * r.d_head, r.d_model)
            self.ln2 = nn.LayerNorm(r.d_model)
            self.fc = nn.Linear(r.d_model, r.d_mlp)
            self.proj = nn.Linear(r.d_mlp, r.d_model)

        def forward(self, x: Any) -> Any:
            b, t, _ = x.shape
            h, dh = self.r.n_heads, self.r.d_head
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, h * dh)
            x = x + self.o(z)
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class FastGPT(nn.Module):
        """Pre-LN GPT with the layout of a TransformerLens ``HookedTransformer`` (LN, GELU, learned
        positions, untied unembedding); see :func:`to_hooked`."""

        def __init__(self, r: Recipe) -> None:
            super().__init__()
            self.embed = nn.Embedding(len(data.VOCAB), r.d_model)
            self.pos = nn.Embedding(r.n_ctx, r.d_model)
            self.blocks = nn.ModuleList([Block(r) for _ in range(r.n_layers)])
            self.ln_final = nn.LayerNorm(r.d_model)
            self.unembed = nn.Linear(r.d_model, len(data.VOCAB))
            for name, p in self.named_parameters():
                if p.ndim >= 2:
                    std = 0.02 / math.sqrt(2 * r.n_layers) if name.endswith(("o.weight", "proj.weight")) else 0.02
                    nn.init.normal_(p, std=std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

        def forward(self, tokens: Any) -> Any:
            x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.unembed(self.ln_final(x))

    return FastGPT


def fast_gpt(recipe: Recipe) -> Any:
    """A fresh :class:`FastGPT` (initialised from torch's global generator)."""
    return _fast_gpt_class()(recipe)


def hooked_state_dict(fast: Any, recipe: Recipe) -> dict[str, Any]:
    """The weights of a :class:`FastGPT` in ``HookedTransformer`` names and shapes."""
    h, dh, d = recipe.n_heads, recipe.d_head, recipe.d_model
    sd = {k: v.detach() for k, v in fast.state_dict().items()}
    out = {"embed.W_E": sd["embed.weight"], "pos_embed.W_pos": sd["pos.weight"]}
    for i in range(recipe.n_layers):
        p = f"blocks.{i}."
        w, b = sd[p + "qkv.weight"], sd[p + "qkv.bias"]
        for j, name in enumerate("QKV"):
            out[p + f"attn.W_{name}"] = w[j * h * dh : (j + 1) * h * dh].view(h, dh, d).transpose(1, 2)
            out[p + f"attn.b_{name}"] = b[j * h * dh : (j + 1) * h * dh].view(h, dh)
        out[p + "attn.W_O"] = sd[p + "o.weight"].T.reshape(h, dh, d)
        out[p + "attn.b_O"] = sd[p + "o.bias"]
        out[p + "ln1.w"], out[p + "ln1.b"] = sd[p + "ln1.weight"], sd[p + "ln1.bias"]
        out[p + "ln2.w"], out[p + "ln2.b"] = sd[p + "ln2.weight"], sd[p + "ln2.bias"]
        out[p + "mlp.W_in"], out[p + "mlp.b_in"] = sd[p + "fc.weight"].T, sd[p + "fc.bias"]
        out[p + "mlp.W_out"], out[p + "mlp.b_out"] = sd[p + "proj.weight"].T, sd[p + "proj.bias"]
    out["ln_final.w"], out["ln_final.b"] = sd["ln_final.weight"], sd["ln_final.bias"]
    out["unembed.W_U"], out["unembed.b_U"] = sd["unembed.weight"].T, sd["unembed.bias"]
    return {k: v.contiguous().clone() for k, v in out.items()}


def build_hooked(config: dict[str, Any]) -> Any:
    """A ``HookedTransformer`` of ``config`` with the character tokenizer (initialised by TransformerLens
    from torch's global generator)."""
    import tempfile

    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import load_tokenizer, quiet_hooked_transformer

    with tempfile.TemporaryDirectory() as tmp:
        data.char_tokenizer().save_pretrained(tmp)
        tokenizer = load_tokenizer(Path(tmp))
        model = quiet_hooked_transformer(HookedTransformerConfig(**config), tokenizer)
    model.eval()
    return model


def to_hooked(fast: Any, recipe: Recipe, name: str = NAME) -> Any:
    """A ``HookedTransformer`` holding the weights of ``fast``.

    Raises:
        RuntimeError: the two models' logits differ by more than 1e-4 on a random batch.
    """
    import torch

    model = build_hooked(model_config(recipe, name))
    state = model.state_dict()
    new = hooked_state_dict(fast, recipe)
    missing = [k for k in new if k not in state]
    if missing:
        raise RuntimeError(f"HookedTransformer has no parameters {missing}")
    state.update(new)
    model.load_state_dict(state)
    model.eval()
    fast.eval()
    x = torch.randint(0, len(data.VOCAB), (2, recipe.n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((model(x) - fast(x)).abs().max())
    if diff > 1e-4:
        raise RuntimeError(f"HookedTransformer and FastGPT logits differ by {diff}")
    return model


# --------------------------------------------------------------------------- language-model training


def lr_at(step: int, recipe: Recipe) -> float:
    """Warmup-stable-decay: linear warmup, constant ``lr``, linear decay to ``min_lr`` over the last
    ``decay_frac`` of the steps."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    decay_start = int(recipe.steps * (1 - recipe.decay_frac))
    if step < decay_start:
        return recipe.lr
    frac = (step - decay_start) / max(1, recipe.steps - decay_start)
    return recipe.lr + (recipe.min_lr - recipe.lr) * frac


def checkpoint_dir(recipe: Recipe, seed: int) -> Path | None:
    root = data.cache_root()
    return root / f"lm-{recipe.lm_key(seed)}" if root else None


def batch_tokens(step: int, recipe: Recipe, seed: int) -> tuple[Any, Any]:
    """Tokens and lengths of the games of training step ``step``."""
    games = [
        data.random_game(seed, i, "train", recipe.n_ctx)[0]
        for i in range(step * recipe.batch, (step + 1) * recipe.batch)
    ]
    return data.encode(games, recipe.n_ctx)


def lm_loss(logits: Any, tokens: Any, lengths: Any) -> Any:
    """Mean next-character cross-entropy over the real characters (nats); padding is ignored."""
    import torch
    import torch.nn.functional as F

    target = tokens[:, 1:].clone()
    target[torch.arange(tokens.shape[1] - 1)[None, :] >= (lengths[:, None] - 1)] = -100
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)


def eval_loss(model: Any, tokens: Any, lengths: Any, chunk: int = 64) -> float:
    """Mean next-character loss of ``model`` (FastGPT or HookedTransformer) over the real characters."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(tokens), chunk):
            t, n = tokens[i : i + chunk], lengths[i : i + chunk]
            k = int((n - 1).clamp(min=0).sum())
            total += float(lm_loss(model(t), t, n)) * k
            count += k
    return total / max(1, count)


def train_lm(recipe: Recipe, seed: int) -> tuple[Any, dict[str, Any]]:
    """Train (or resume, or load finished) the language model; returns ``(FastGPT, stats)``."""
    import torch

    from deeprobe_bench.progress import progress

    ckdir = checkpoint_dir(recipe, seed)
    torch.manual_seed(seed)
    model = fast_gpt(recipe)
    params = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": recipe.weight_decay},
            {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=recipe.lr,
        betas=(0.9, 0.98),
    )
    state: dict[str, Any] = {"step": 0, "losses": [], "curve": [], "wall_time_s": 0.0}
    ckpt = ckdir / "checkpoint.pt" if ckdir else None
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        logger.info("chess-mini: resuming from step %d (%s)", state["step"], ckpt)

    def save() -> None:
        if ckpt is None:
            return
        ckdir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
        tmp.replace(ckpt)

    ev = data.generate_games(recipe.n_eval_games, seed, "eval", recipe.n_ctx, cache=False)
    ev_tokens, ev_lengths = data.encode(list(ev["text"]), recipe.n_ctx)
    model.train()
    t_last = time.time()
    bar = progress(range(state["step"], recipe.steps), desc="chess-mini LM", mininterval=10.0)
    for step in bar:
        tokens, lengths = batch_tokens(step, recipe, seed)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, recipe)
        loss = lm_loss(model(tokens), tokens, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["losses"].append(loss.item())
        state["step"] = step + 1
        if recipe.eval_every and (step + 1) % recipe.eval_every == 0:
            model.eval()
            point = {
                "step": step + 1,
                "train_loss": sum(state["losses"][-50:]) / len(state["losses"][-50:]),
                "eval_loss": eval_loss(model, ev_tokens, ev_lengths),
            }
            model.train()
            state["curve"].append(point)
            logger.info("chess-mini: %s", point)
        if (step + 1) % recipe.checkpoint_every == 0 or step + 1 == recipe.steps:
            now = time.time()
            state["wall_time_s"] += now - t_last
            t_last = now
            save()
            logger.info(
                "chess-mini: step %d/%d loss %.4f (%.0fs)",
                step + 1,
                recipe.steps,
                sum(state["losses"][-50:]) / len(state["losses"][-50:]),
                state["wall_time_s"],
            )
    model.eval()
    tail = state["losses"][-max(1, len(state["losses"]) // 20) :]
    stats = {
        "steps_done": state["step"],
        "games_seen": state["step"] * recipe.batch,
        "first_loss": state["losses"][0] if state["losses"] else None,
        "final_train_loss": sum(tail) / len(tail) if tail else None,
        "learning_curve": state["curve"],
        "lm_wall_time_s": round(state["wall_time_s"], 1),
        "checkpoint": str(ckpt) if ckpt else None,
    }
    return model, stats


# --------------------------------------------------------------------------- quality


def resid_hooks(n_layers: int) -> list[str]:
    """``blocks.{i}.hook_resid_post`` for every layer."""
    return [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def dot_activations(
    model: Any, tokens: Any, lengths: Any, states: data.BoardStates, hooks: list[str], chunk: int = 64
) -> tuple[dict[str, Any], float]:
    """Activations at the ``.`` positions of ``states`` and the next-character loss, in one pass.

    Returns:
        ``({hook: Float[Tensor, "rows d_model"]}, loss)``: rows in the order of ``states``; ``loss`` the mean
        next-character cross-entropy (nats) over the real characters of ``tokens``.
    """
    import torch

    out: dict[str, list] = {h: [] for h in hooks}
    game = torch.as_tensor(states.game)
    pos = torch.as_tensor(states.pos)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(tokens), chunk):
            t, n = tokens[i : i + chunk], lengths[i : i + chunk]
            logits, cache = model.run_with_cache(t, names_filter=lambda name: name in hooks)
            k = int((n - 1).clamp(min=0).sum())
            total += float(lm_loss(logits, t, n)) * k
            count += k
            sel = (game >= i) & (game < i + chunk)
            for h in hooks:
                out[h].append(cache[h][game[sel] - i, pos[sel]].float())
    return {h: torch.cat(v) for h, v in out.items()}, total / max(1, count)


def probe_accuracy(
    train_x: Any,
    train_pieces: Any,
    test_x: Any,
    test_pieces: Any,
    seed: int,
    epochs: int = 20,
    batch: int = 512,
    lr: float = 1e-2,
) -> dict[str, float]:
    """Linear piece-on-square probe: a 13-way softmax per square on the residual stream (Chess-GPT's probe,
    adamkarvonen/chess_llm_interpretability), trained with AdamW (lr 1e-2 decaying to 0, weight decay
    1e-3) on standardised activations.

    Args:
        train_x, test_x: ``Float[Tensor, "n d_model"]``.
        train_pieces, test_pieces: ``Int8[ndarray, "n 64"]`` unmasked piece classes.

    Returns:
        ``accuracy``: per-square accuracy over all 64 squares (Chess-GPT's figure);
        ``changed_accuracy``: per-square accuracy over the squares whose content differs from the
        start position (the squares where the paper's masked BSP has its positive; the other squares are
        predictable from the move number alone, so ``accuracy`` saturates on short games);
        ``changed_fraction``: the share of such squares among all;
        ``majority_changed_accuracy``: the best constant prediction per square on the changed squares
        (from the train split).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    ytr = torch.as_tensor(np.asarray(train_pieces, dtype=np.int64))
    yte = torch.as_tensor(np.asarray(test_pieces, dtype=np.int64))
    k = data.N_PIECE_CLASSES
    prior = F.one_hot(ytr, k).float().mean(0)  # 64 x 13 class frequencies per square
    probe = torch.nn.Linear(xtr.shape[1], 64 * k)
    torch.nn.init.zeros_(probe.weight)
    with torch.no_grad():
        probe.bias.copy_(torch.log(prior + 1e-4).reshape(-1))  # start from the per-square prior
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-3)
    per_epoch = max(1, len(xtr) // batch)
    n_steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / n_steps)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for j in range(per_epoch):
            idx = perm[j * batch : (j + 1) * batch]
            logits = probe(xtr[idx]).view(-1, k)
            loss = F.cross_entropy(logits, ytr[idx].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = probe(xte).view(-1, 64, k).argmax(-1)
    initial = torch.as_tensor(data.INITIAL_BOARD.astype(np.int64))
    changed = yte != initial
    moved = changed & (yte != 0)
    correct = pred == yte
    moved_tr = F.one_hot(ytr, k) * ((ytr != initial) & (ytr != 0))[..., None]
    majority = moved_tr.sum(0).argmax(-1)  # most common piece per square among moved-piece train squares

    def acc(mask: Any) -> float:
        return float(correct[mask].float().mean()) if mask.any() else float("nan")

    return {
        "accuracy": float(correct.float().mean()),
        "changed_accuracy": acc(changed),
        "moved_piece_accuracy": acc(moved),
        "changed_fraction": float(changed.float().mean()),
        "moved_piece_fraction": float(moved.float().mean()),
        "prior_accuracy": float((prior.argmax(-1)[None, :] == yte).float().mean()),
        "majority_moved_piece_accuracy": float((yte == majority)[moved].float().mean())
        if moved.any()
        else float("nan"),
    }


def quality_report(model: Any, games: Any, n_train: int, seed: int, n_ctx: int) -> dict[str, Any]:
    """Held-out next-character loss and :func:`probe_accuracy` at every layer's resid_post (probes trained
    on the first ``n_train`` games, tested on the rest)."""
    texts, moves = list(games["text"]), list(games["moves"])
    tokens, lengths = data.encode(texts, n_ctx)
    states = data.board_states(texts, moves)
    hooks = resid_hooks(model.cfg.n_layers)
    acts, loss = dot_activations(model, tokens, lengths, states, hooks)
    tr = states.game < n_train
    probes = {}
    for h in hooks:
        probes[h] = probe_accuracy(acts[h][tr], states.pieces[tr], acts[h][~tr], states.pieces[~tr], seed)
        logger.info("chess probe %s: %s", h, {k: round(v, 4) for k, v in probes[h].items()})
    return {
        "heldout_loss": loss,
        "probes": probes,
        "n_probe_rows": {"train": int(tr.sum()), "test": int((~tr).sum())},
    }


def legal_move_rate(model: Any, games: Any, n_ctx: int, max_new: int = 8, chunk: int = 128) -> dict[str, float]:
    """Share of the model's greedy continuations at the ``.`` positions that are legal White moves.

    At each ``.`` (at most 20 per game, first 256 characters), the model continues the text greedily
    (argmax) for up to ``max_new`` characters; the characters up to the first space are parsed as SAN in
    the game's position with python-chess (``Board.parse_san``; check marks ``+``/``#`` are accepted
    either way; null moves are not legal moves). Continuations that run past ``n_ctx`` are cut there.
    """
    import chess
    import torch

    texts, moves = list(games["text"]), list(games["moves"])
    prefixes, boards = [], []
    for text, game_moves in zip(texts, moves, strict=True):
        board = chess.Board()
        played = 0
        for k, pos in enumerate(data.dot_positions(text), start=1):
            while played < 2 * (k - 1):
                board.push_uci(game_moves[played])
                played += 1
            if pos + 1 + max_new > n_ctx:
                break
            prefixes.append(text[: pos + 1])
            boards.append(board.copy(stack=False))
    legal = 0
    with torch.no_grad():
        for i in range(0, len(prefixes), chunk):
            batch = prefixes[i : i + chunk]
            tokens, lengths = data.encode(batch, max(len(p) for p in batch) + max_new)
            cur = lengths.clone()
            rows = torch.arange(len(batch))
            for _ in range(max_new):
                logits = model(tokens[:, : int(cur.max())])
                nxt = logits[rows, cur - 1].argmax(-1)
                tokens[rows, cur] = nxt
                cur = cur + 1
            for j, board in enumerate(boards[i : i + chunk]):
                new = data.decode(tokens[j, lengths[j] : cur[j]]).split(" ")[0]
                try:
                    move = board.parse_san(new)
                except ValueError:
                    continue
                legal += bool(move) and board.is_legal(move)  # python-chess reads "--", "0000", "Z0" as null moves
    return {"legal_move_rate": legal / max(1, len(prefixes)), "n_positions": len(prefixes)}


# --------------------------------------------------------------------------- zoo


BAR_METRIC = "moved_piece_accuracy"
BAR_POINTS = 0.15
SAE_ARCHS = ("standard", "topk", "panneal")


def random_model(recipe: Recipe, seed: int) -> Any:
    """``chess-mini-random``: the HookedTransformer of the recipe at TransformerLens' random init after
    ``torch.manual_seed(seed)``."""
    import torch

    torch.manual_seed(seed)
    return build_hooked(model_config(recipe, RANDOM_NAME))


def best_layer(probes: dict[str, dict[str, float]], metric: str = BAR_METRIC) -> str:
    """The hook whose probe scores highest on ``metric`` (the earliest on ties)."""
    return max(probes, key=lambda h: (probes[h][metric], -list(probes).index(h)))


def sae_activations(model: Any, games: Any, hook: str, n_ctx: int, chunk: int = 64) -> Any:
    """``Float[Tensor, "rows d_model"]`` activations at ``hook`` at every real character of ``games``."""
    import torch

    tokens, lengths = data.encode(list(games["text"]), n_ctx)
    layer = int(hook.split(".")[1])
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), chunk):
            t, n = tokens[i : i + chunk], lengths[i : i + chunk]
            _, cache = model.run_with_cache(t, names_filter=hook, stop_at_layer=layer + 1, return_type=None)
            out.append(cache[hook][torch.arange(t.shape[1])[None, :] < n[:, None]].float())
    return torch.cat(out)


def train_saes(
    model: Any, recipe: Recipe, hook: str, archs: tuple[str, ...], seed: int, model_name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """SAEs of ``archs`` at ``hook`` on all positions of ``n_sae_games`` games (eval stream, seed + 1),
    scored by ``sae_quality`` on 100 other games (eval stream, seed + 2).

    Returns:
        ``({"<hook>@<arch>": SAE}, {arch: quality and training facts})``.
    """
    from deeprobe_bench.sae_training import sae_quality, train_sae

    games = data.generate_games(recipe.n_sae_games, seed + 1, "eval", recipe.n_ctx)
    held = data.generate_games(max(4, recipe.n_sae_games // 10), seed + 2, "eval", recipe.n_ctx)
    acts = sae_activations(model, games, hook, recipe.n_ctx)
    held_acts = sae_activations(model, held, hook, recipe.n_ctx)
    saes, quality = {}, {}
    for arch in archs:
        t0 = time.time()
        sae = train_sae(
            acts, hook, arch, recipe.d_sae, seed, steps=recipe.sae_steps, batch=recipe.sae_batch, lr=recipe.sae_lr,
            k=recipe.k, l1=recipe.l1, model_name=model_name,
        )  # fmt: skip
        q = {k: float(v) for k, v in sae_quality(sae, held_acts).items()}
        q.update(
            {
                "architecture": arch,
                "d_sae": recipe.d_sae,
                "steps": recipe.sae_steps,
                "batch": recipe.sae_batch,
                "lr": recipe.sae_lr,
                **({"k": recipe.k} if arch == "topk" else {"l1": recipe.l1}),
                "n_activations": len(acts),
                "activation_games": f"{recipe.n_sae_games} games (eval stream, seed {seed + 1}), every character",
                "heldout_games": f"{len(held)} games (eval stream, seed {seed + 2})",
                "wall_time_s": round(time.time() - t0, 1),
            }
        )
        if arch == "panneal" and getattr(sae, "training_history", None):
            q["p_anneal_history"] = [list(map(float, h)) for h in sae.training_history]
        saes[f"{hook}@{arch}"] = sae
        quality[arch] = q
        logger.info("%s SAE %s: %s", model_name, arch, {k: v for k, v in q.items() if isinstance(v, float)})
    return saes, quality


def _versions() -> dict[str, str]:
    import importlib.metadata

    import sae_lens
    import torch

    return {
        "torch": torch.__version__,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "sae_lens": sae_lens.__version__,
        "chess": importlib.metadata.version("chess"),
    }


def _data_card(recipe: Recipe, stats: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": "Chess-GPT character PGN ';1.e4 e5 2.Nf3 ...' (adamkarvonen/chess_llm_interpretability)",
        "vocab": "".join(data.VOCAB),
        "games": "uniformly random legal moves (python-chess), game i of stream 'train' from "
        "numpy.random.default_rng([0, seed, i])",
        "cut_chars": recipe.n_ctx,
        "why_cut": "random-game chess needs far more data than Othello for legal play (REFERENCE.md section 2); on "
        "2 shared CPU cores the budget is ~10M characters, spent on the first ~20 moves, the window where "
        "the BSPs are measured (first 256 characters, at most 20 '.' positions)",
        **(
            {"train_games": stats["games_seen"], "train_characters": stats["games_seen"] * recipe.n_ctx}
            if stats
            else {}
        ),
    }


def _probe_summary(trained: dict[str, Any], random: dict[str, Any]) -> dict[str, Any]:
    tb, rb = best_layer(trained["probes"]), best_layer(random["probes"])
    t_val, r_val = trained["probes"][tb][BAR_METRIC], random["probes"][rb][BAR_METRIC]
    return {
        "bar_metric": BAR_METRIC,
        "bar": f"{BAR_METRIC} of chess-mini at its best layer - that of chess-mini-random at its best layer "
        f">= {BAR_POINTS}",
        "trained_best_layer": tb,
        "random_best_layer": rb,
        "trained": t_val,
        "random": r_val,
        "difference": t_val - r_val,
        "bar_met": bool(t_val - r_val >= BAR_POINTS),
        "accuracy_trained_at_best": trained["probes"][tb]["accuracy"],
        "accuracy_random_at_best": random["probes"][rb]["accuracy"],
    }


def train(out_dir: Path, seed: int = 0, tiny: bool = False) -> dict:
    """Train ``chess-mini`` (model, probes for the card, SAEs) into ``out_dir``; returns the card."""
    return train_recipe(Path(out_dir), seed, TINY if tiny else FULL, tiny=tiny)


def train_recipe(out_dir: Path, seed: int, recipe: Recipe, tiny: bool = False) -> dict:
    """:func:`train` with an explicit :class:`Recipe`."""

    import torch

    from deeprobe_bench.subject import save_zoo_dir

    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        fast, stats = train_lm(recipe, seed)
        model = to_hooked(fast, recipe, NAME)
        games = data.generate_games(recipe.n_quality_games, seed, "eval", recipe.n_ctx)
        trained_q = quality_report(model, games, recipe.n_probe_train_games, seed, recipe.n_ctx)
        legal = legal_move_rate(model, games.select(range(recipe.n_legal_games)), recipe.n_ctx)
        random_q = quality_report(random_model(recipe, seed), games, recipe.n_probe_train_games, seed, recipe.n_ctx)
        summary = _probe_summary(trained_q, random_q)
        hook = summary["trained_best_layer"]
        logger.info("chess-mini: probes %s, legal %s", summary, legal)
        saes, sae_q = train_saes(model, recipe, hook, SAE_ARCHS, seed, NAME)
        card = {
            "name": NAME,
            "version": VERSION,
            "seed": seed,
            "tiny": tiny,
            "config": model_config(recipe, NAME),
            "recipe": {
                **asdict(recipe),
                "optimizer": "AdamW(betas=(0.9, 0.98)), grad clip 1.0, no weight decay on biases/LN",
                "schedule": f"linear warmup {recipe.warmup_steps} steps, constant {recipe.lr}, linear decay to "
                f"{recipe.min_lr} over the last {recipe.decay_frac} of the steps",
                "loss": "next-character cross-entropy over the real characters (padding ignored)",
                "trainer": "FastGPT (torch scaled_dot_product_attention) copied into a HookedTransformer "
                "(logits equal within 1e-4)",
                **{k: v for k, v in stats.items() if k != "checkpoint"},
                "wall_time_s": round(time.time() - t0, 1),
            },
            "data": _data_card(recipe, stats),
            "quality": {
                "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}); probes trained "
                f"on the first {recipe.n_probe_train_games}, tested on the rest, at their '.' positions",
                "heldout_loss": trained_q["heldout_loss"],
                "random_init_heldout_loss": random_q["heldout_loss"],
                **legal,
                "legal_move_games": recipe.n_legal_games,
                "probe": summary,
                "probes": {"chess-mini": trained_q["probes"], "chess-mini-random": random_q["probes"]},
                "n_probe_rows": trained_q["n_probe_rows"],
                "probe_definition": "13-way softmax per square (Chess-GPT's linear probe) on standardised resid_post, "
                "unmasked board; accuracy over all squares, over squares that differ from the start position "
                "(changed), and over squares holding a piece that is not the start position's (moved_piece)",
                "bar_met": summary["bar_met"],
            },
            "default_sae_variant": "topk",
            "sae": {"hook_name": hook, "chosen_by": f"best {BAR_METRIC} probe layer", **sae_q},
            "task": {"hook_name": hook},
            "versions": _versions(),
        }
        save_zoo_dir(out_dir, model, card, saes)
        logger.info("chess-mini: wrote %s in %.0fs", out_dir, time.time() - t0)
        return card
    finally:
        torch.set_num_threads(threads)


def _trained_card(out_dir: Path) -> dict[str, Any] | None:
    """chess-mini's card: beside ``out_dir`` if there is one, else the shipped one."""
    from importlib.resources import files

    for d in (Path(out_dir).parent / NAME, Path(str(files("deeprobe_bench.tasks.chess"))) / "zoo" / NAME):
        if (d / "card.json").exists():
            return json.loads((d / "card.json").read_text())
    return None


def train_random(out_dir: Path, seed: int = 0, tiny: bool = False) -> dict:
    """Write ``chess-mini-random`` (random init, seeded; a standard SAE) into ``out_dir``; returns the card.

    The SAE sits at chess-mini's hook (read from its card beside ``out_dir`` or the shipped one; the last
    layer's resid_post when there is none).
    """

    import torch

    from deeprobe_bench.subject import save_zoo_dir

    recipe = TINY if tiny else FULL
    out_dir = Path(out_dir)
    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        trained_card = _trained_card(out_dir)
        hook = (trained_card or {}).get("task", {}).get("hook_name") or resid_hooks(recipe.n_layers)[-1]
        model = random_model(recipe, seed)
        games = data.generate_games(recipe.n_quality_games, seed, "eval", recipe.n_ctx)
        q = quality_report(model, games, recipe.n_probe_train_games, seed, recipe.n_ctx)
        saes, sae_q = train_saes(model, recipe, hook, ("standard",), seed, RANDOM_NAME)
        card = {
            "name": RANDOM_NAME,
            "version": VERSION,
            "seed": seed,
            "tiny": tiny,
            "config": model_config(recipe, RANDOM_NAME),
            "recipe": {
                "init": f"TransformerLens HookedTransformer init after torch.manual_seed({seed}); never trained",
                **{
                    k: v for k, v in asdict(recipe).items() if k.startswith(("n_layers", "d_", "n_", "k", "l1", "sae_"))
                },
                "wall_time_s": round(time.time() - t0, 1),
            },
            "quality": {
                "heldout_loss": q["heldout_loss"],
                "probes": q["probes"],
                "n_probe_rows": q["n_probe_rows"],
                "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}), as chess-mini's",
            },
            "default_sae_variant": "standard",
            "sae": {"hook_name": hook, "chosen_by": "chess-mini's hook (its card)", **sae_q},
            "task": {"hook_name": hook},
            "versions": _versions(),
        }
        save_zoo_dir(out_dir, model, card, saes)
        logger.info("chess-mini-random: wrote %s in %.0fs", out_dir, time.time() - t0)
        return card
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the zoo models chess-mini and chess-mini-random.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny configuration (for tests)")
    parser.add_argument("--stage", choices=("lm", "all"), default="all", help="lm: only train the language model")
    parser.add_argument("--random", action="store_true", help="write chess-mini-random instead of chess-mini")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    recipe = TINY if args.tiny else FULL
    torch.set_num_threads(recipe.threads)
    if args.stage == "lm":
        train_lm(recipe, args.seed)
        return
    if args.random:
        card = train_random(args.out, seed=args.seed, tiny=args.tiny)
    else:
        card = train(args.out, seed=args.seed, tiny=args.tiny)
    logger.info("quality: %s", {k: v for k, v in card["quality"].items() if k != "probes"})


if __name__ == "__main__":
    main()
