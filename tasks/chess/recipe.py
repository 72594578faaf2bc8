"""Recipe of ``chess-mini`` v3 (trained) and ``chess-mini-random`` (random init) on the zoo kit.

**Format: one token per move (``uci-moves``), a deviation from Chess-GPT.** Chess-GPT (adamkarvonen/
chess_llm_interpretability) reads PGN characters, ``";1.e4 e5 2.Nf3 ..."``. So does the shipped ``chess-mini``
(card version 1; recipe version 2 was the same recipe on the kit: 4 layers, d_model 128, 3,600 steps on
128-character cuts), and its linear piece-on-square probe stayed near the per-square prior (0.818 against
0.742 on all squares; moved pieces 0.251); its probe reconstruction was 0.216. A character model spends its
compute on spelling moves (about six characters each) before it can track a board; on two CPU cores that
budget runs out first. v3 reads ``<bos> e2e4 e7e5 g1f3 ...`` (:data:`data.MOVE_VOCAB`, 1,968 UCI moves), so
each token is a move and the same compute sees six times as many moves, as Othello-GPT reads one token per
move (Li et al. 2023). The board-state properties are those of the paper, measured at the
same 20 White-to-move positions per game (:func:`data.measured_positions`).

The model has Othello-mini's shape (8 layers, d_model 256, 8 heads of 32, d_mlp 1024): next-move
cross-entropy on uniformly random legal games of ``n_plies`` moves, fresh games at every step (game ``i`` of
the ``train`` stream of the seed; step ``s`` reads games ``s * batch ..``: no game is seen twice, and a resumed
run reads what an uninterrupted one would), warmup-stable-decay, forward in bfloat16. On the 2-core machine
it runs for hours in the background and resumes from its checkpoint (``--lm-only``).

Monitoring (every ``eval_every`` steps, held-out games of the eval stream): ``legal_top1`` (the top-1 move is
legal, every position) and ``ridge_moved_piece`` per layer (a least-squares piece-on-square readout fitted
on ``n_eval_games // 2`` games, its accuracy on squares holding a piece that is not the start position's, on
the others; a cheap stand-in for the card's probe). The card's figures (:func:`quality_report`): held-out
loss, ``legal_top1``, Chess-GPT's linear probe at every layer for the trained and the random-init model; the
SAEs are trained at the best layer on the rows the task measures.

Run as ``python -m deeprobe_bench.tasks.chess.recipe --out DIR --seed 0 [--tiny] [--lm-only] [--random]``
or ``deeprobe-bench zoo train chess-mini``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deeprobe_bench.tasks.chess import data
from deeprobe_bench.zoo.recipe import ZooRecipe, recipe_args

logger = logging.getLogger(__name__)

NAME, RANDOM_NAME = "chess-mini", "chess-mini-random"
VERSION = 3  # 3: one token per move (uci-moves), Othello-mini's shape; 2: Chess-GPT characters, 4 layers
FORMAT = "uci-moves"


@dataclass(frozen=True)
class Recipe(ZooRecipe):
    """Everything that fixes a chess-mini run besides the seed (model, run and SAE stage:
    :class:`ZooRecipe`; ``batch`` counts games, each of ``n_plies`` moves and ``<bos>``)."""

    n_plies: int = 2 * data.MAX_POSITIONS  # the context: <bos> and 40 moves hold the 20 measured positions
    autocast: str | None = "bf16"
    checkpoint_every_s: float = 240.0
    eval_every: int = 1000
    n_eval_games: int = 400
    n_quality_games: int = 1000  # card probes: the first n_probe_train_games train them, the rest test them
    n_probe_train_games: int = 750
    n_sae_games: int = 5000  # the SAE stage's rows: the measured positions of this many games


FULL = Recipe(
    n_layers=8, d_model=256, n_heads=8, d_head=32, d_mlp=1024, batch=128, steps=24000,  # 3.1M games
    lr=1e-3, warmup_steps=500, decay_steps=3000, min_lr=1e-5, weight_decay=0.05, threads=2,
    d_sae=2048, k=48, l1=2.0, sae_steps=3000, sae_batch=1024, sae_lr=3e-4, weights_dtype="float16",  # as othello-mini's SAEs
)  # fmt: skip
TINY = dataclasses.replace(
    FULL, n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, batch=8, steps=12, warmup_steps=2, decay_steps=4,
    eval_every=0, n_eval_games=8, n_quality_games=24, n_probe_train_games=16, n_sae_games=16, d_sae=64, k=4,
    sae_steps=10, sae_batch=64,
)  # fmt: skip
BAR_METRIC = "moved_piece_accuracy"
BAR_POINTS = 0.15


def model_config(recipe: Recipe, name: str = NAME, seed: int = 0) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (part of the run's key: keep them stable)."""
    return recipe.transformer_config(name, n_ctx=recipe.n_plies + 1, d_vocab=len(data.MOVE_VOCAB),
                                     default_prepend_bos=True, original_architecture="chess-mini", seed=seed)  # fmt: skip


def build_model(config: dict[str, Any]) -> Any:
    """A fresh HookedTransformer (initialised from ``config["seed"]``) with the UCI-move tokenizer."""
    from deeprobe_bench.zoo.lm import hooked_transformer

    return hooked_transformer(config, data.move_tokenizer())


def run_key(recipe: Recipe, seed: int) -> dict[str, Any]:
    """What fixes the LM trajectory (the work directory's key): config, data stream, stable schedule."""
    return {"version": VERSION, "format": FORMAT, "config": model_config(recipe, NAME, seed), "batch": recipe.batch,
            "n_plies": recipe.n_plies, "data": data.DATA_VERSION, "schedule": recipe.schedule().key(),
            "autocast": recipe.autocast}  # fmt: skip


def batch_stream(recipe: Recipe, seed: int) -> Any:
    """``step -> Int[Tensor, "batch n_plies+1"]``: games ``step * batch ..`` of the seed's train stream."""

    def batch_at(step: int) -> Any:
        games = [data.random_game(seed, i, "train", n_plies=recipe.n_plies, text=False)[1]
                 for i in range(step * recipe.batch, (step + 1) * recipe.batch)]  # fmt: skip
        return data.encode_moves(games, recipe.n_plies + 1)[0]

    return batch_at


# --------------------------------------------------------------------------- held-out games and figures


def heldout(n: int, seed: int, n_plies: int, legal: bool = True) -> dict[str, Any]:
    """``n`` games of the eval stream of ``seed``: ``tokens``, their :class:`data.BoardStates` at the measured
    positions and, with ``legal``, ``legal`` (``Bool[Tensor, "n n_plies vocab"]``, the legal next moves at each
    token) with ``has_move`` (the side to move has one): what :func:`legal_top1` reads (about 8 MB a hundred
    games)."""
    import chess
    import torch

    games = data.generate_games(n, seed, "eval", n_plies=n_plies)
    moves = list(games["moves"])
    out = {"tokens": data.encode_moves(moves, n_plies + 1)[0],
           "states": data.board_states(list(games["text"]), moves, n_plies + 1, fmt=FORMAT)}  # fmt: skip
    if legal:
        mask = torch.zeros(n, n_plies, len(data.MOVE_VOCAB), dtype=torch.bool)
        for g, game in enumerate(moves):
            board = chess.Board()
            for t in range(min(len(game) + 1, n_plies)):
                mask[g, t, [data.MOVE_ID[m.uci()] for m in board.legal_moves]] = True
                if t < len(game):
                    board.push_uci(game[t])
        out.update(legal=mask, has_move=mask.any(-1))
    return out


def legal_top1(model: Any, ev: dict[str, Any], batch: int = 200) -> float:
    """Fraction of positions (the side to move has a legal move) whose top-1 predicted move is legal."""
    import torch

    hits = total = 0
    with torch.no_grad():
        for i in range(0, len(ev["tokens"]), batch):
            top = model(ev["tokens"][i : i + batch, :-1]).argmax(-1)
            ok = ev["legal"][i : i + batch].gather(-1, top[..., None])[..., 0]
            m = ev["has_move"][i : i + batch]
            hits, total = hits + int((ok & m).sum()), total + int(m.sum())
    return hits / max(1, total)


def measured_rows(model: Any, ev: dict[str, Any], hooks: list[str], batch: int = 200) -> tuple[dict[str, Any], float]:
    """Activations at the measured positions of ``ev`` (rows in the order of its states) and the mean
    next-move loss (nats) over its real tokens, in one pass: ``({hook: Float[Tensor, "rows d_model"]}, loss)``."""
    import torch
    import torch.nn.functional as F

    states = ev["states"]
    game, pos = torch.as_tensor(states.game), torch.as_tensor(states.pos)
    out: dict[str, list] = {h: [] for h in hooks}
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ev["tokens"]), batch):
            t = ev["tokens"][i : i + batch]
            logits, cache = model.run_with_cache(t, names_filter=lambda name: name in out)
            target = t[:, 1:].reshape(-1)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target, reduction="sum",
                                   ignore_index=data.MOVE_PAD_ID)  # fmt: skip
            total, count = total + float(loss), count + int((target != data.MOVE_PAD_ID).sum())
            sel = (game >= i) & (game < i + batch)
            for h in hooks:
                out[h].append(cache[h][game[sel] - i, pos[sel]].float())
    return {h: torch.cat(v) for h, v in out.items()}, total / max(1, count)


def moved_piece_mask(pieces: np.ndarray) -> np.ndarray:
    """``Bool[ndarray, "rows 64"]``: squares holding a piece that is not the start position's there (the
    squares where the paper's masked piece BSP has a positive that the move number cannot tell)."""
    return (pieces != data.INITIAL_BOARD[None, :]) & (pieces != 0)


def ridge_moved_piece(x_tr: Any, p_tr: np.ndarray, x_te: Any, p_te: np.ndarray, ridge: float = 1e-2) -> float:
    """Accuracy on moved-piece squares of a least-squares one-hot readout of the 13 piece classes per square.

    Args:
        x_tr, x_te: ``Float[Tensor, "rows d"]``; p_tr, p_te: ``Int8[ndarray, "rows 64"]`` piece classes.
    """
    import torch

    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.cat([(x_tr - mu) / sd, torch.ones(len(x_tr), 1)], 1).double()
    xe = torch.cat([(x_te - mu) / sd, torch.ones(len(x_te), 1)], 1).double()
    y = torch.nn.functional.one_hot(torch.as_tensor(p_tr, dtype=torch.int64), data.N_PIECE_CLASSES).reshape(len(p_tr), -1)
    w = torch.linalg.solve(xt.T @ xt + ridge * len(xt) * torch.eye(xt.shape[1], dtype=xt.dtype), xt.T @ y.double())
    pred = (xe @ w).reshape(len(x_te), 64, data.N_PIECE_CLASSES).argmax(-1).numpy()
    moved = moved_piece_mask(p_te)
    return float((pred == p_te)[moved].mean()) if moved.any() else float("nan")


def monitor(recipe: Recipe, seed: int) -> Any:
    """The trainer's ``eval_fn``: ``legal_top1`` and ``ridge_moved_piece`` at every layer's resid_post."""
    games: dict[str, Any] = {}

    def eval_fn(model: Any) -> dict[str, Any]:
        if not games:  # generated at the first evaluation, not before training starts
            games["ev"] = heldout(recipe.n_eval_games, seed + 10, recipe.n_plies)
        ev = games["ev"]
        hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
        rows, loss = measured_rows(model, ev, hooks)
        tr = ev["states"].game < recipe.n_eval_games // 2
        p = ev["states"].pieces
        per_layer = {h.split(".")[1]: round(ridge_moved_piece(rows[h][tr], p[tr], rows[h][~tr], p[~tr]), 4) for h in hooks}
        return {"legal_top1": round(legal_top1(model, ev), 5), "heldout_loss": round(loss, 5), "ridge_moved_piece": per_layer}

    return eval_fn


def train_lm(recipe: Recipe, seed: int, stop_after_s: float | None = None,
             stop_at_step: int | None = None) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Build and train (or resume) chess-mini's LM in its work directory; returns ``(model, stats)``.
    ``stop_after_s``, ``stop_at_step``: as :func:`deeprobe_bench.zoo.lm.train_lm`'s."""
    import torch

    from deeprobe_bench.zoo import lm

    torch.set_num_threads(recipe.threads)
    work = lm.work_dir(NAME, run_key(recipe, seed))
    lm.ensure_free(work)
    model = build_model(model_config(recipe, NAME, seed))
    stats = lm.train_lm(model, batch_stream(recipe, seed), recipe.schedule(), work, pad=data.MOVE_PAD_ID,
                        eval_fn=monitor(recipe, seed) if recipe.eval_every else None, eval_every=recipe.eval_every,
                        checkpoint_every_s=recipe.checkpoint_every_s, stop_after_s=stop_after_s,
                        stop_at_step=stop_at_step, autocast=recipe.autocast)  # fmt: skip
    model.eval()
    return model, {**stats, "work_dir": str(work)}


def quality_report(model: Any, ev: dict[str, Any], recipe: Recipe, seed: int) -> dict[str, Any]:
    """The card's figures on the held-out games ``ev`` (:func:`heldout` of ``n_quality_games``): next-move loss,
    ``legal_top1`` and :func:`probe_accuracy` at every layer's resid_post (trained on the first
    ``n_probe_train_games``)."""
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    rows, loss = measured_rows(model, ev, hooks)
    states = ev["states"]
    tr = states.game < recipe.n_probe_train_games
    probes = {}
    for h in hooks:
        probes[h] = probe_accuracy(rows[h][tr], states.pieces[tr], rows[h][~tr], states.pieces[~tr], seed)
        logger.info("chess probe %s: %s", h, {k: round(v, 4) for k, v in probes[h].items()})
    return {"heldout_loss": loss, "legal_top1": legal_top1(model, ev), "probes": probes,
            "n_probe_rows": {"train": int(tr.sum()), "test": int((~tr).sum())}}  # fmt: skip


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
    moved = torch.as_tensor(moved_piece_mask(np.asarray(test_pieces)))
    correct = pred == yte
    moved_tr = F.one_hot(ytr, k) * torch.as_tensor(moved_piece_mask(np.asarray(train_pieces)))[..., None]
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


# --------------------------------------------------------------------------- zoo


def random_model(recipe: Recipe, seed: int) -> Any:
    """``chess-mini-random``: the recipe's HookedTransformer at TransformerLens' random init (``cfg.seed = seed``)."""
    return build_model(model_config(recipe, RANDOM_NAME, seed))


def best_layer(probes: dict[str, dict[str, float]], metric: str = BAR_METRIC) -> str:
    """The hook whose probe scores highest on ``metric`` (the earliest on ties)."""
    return max(probes, key=lambda h: (probes[h][metric], -list(probes).index(h)))


def sae_rows(model: Any, hook: str, n_games: int, n_plies: int, seed: int) -> tuple[Any, Any]:
    """The SAE stage's rows at ``hook``, the positions the task measures: those of ``n_games`` games (eval
    stream, seed + 1) and, held out, of ``max(4, n_games // 10)`` others (seed + 2)."""
    train = measured_rows(model, heldout(n_games, seed + 1, n_plies, legal=False), [hook])[0][hook]
    held = measured_rows(model, heldout(max(4, n_games // 10), seed + 2, n_plies, legal=False), [hook])[0][hook]
    return train, held


def saes_at(model: Any, recipe: Recipe, hook: str, archs: tuple[str, ...], seed: int, work: Any) -> tuple[dict, dict]:
    """The kit's SAE stage at ``hook`` on :func:`sae_rows` of ``n_sae_games`` games."""
    from deeprobe_bench.zoo.sae import sae_stage

    acts, held_acts = sae_rows(model, hook, recipe.n_sae_games, recipe.n_plies, seed)
    return sae_stage(acts, held_acts, hook, recipe.sae_spec(archs, len(acts)), seed, work, model.cfg.model_name)


def sanity_saes(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Add the random-SAE sanity baselines (:mod:`deeprobe_bench.zoo.sanity`) to the chess model in
    ``out_dir``, with the recipe of its default SAE (from the card), on :func:`sae_rows`; returns the
    card's entry. Raises UserError (one line, exit 2) for a card of another format (the character model's: retrain it)."""
    from deeprobe_bench.api import UserError
    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.zoo.sanity import add_sanity_saes

    subject = load_zoo_dir(Path(out_dir))
    card = subject.card
    if card["task"].get("format") != FORMAT:
        raise UserError(f"{out_dir} holds a chess-mini of another format (version {card['version']}); retrain it: zoo train chess-mini")
    hook, base, r = card["task"]["hook_name"], card["default_sae_variant"], FULL.from_card(card["recipe"])
    acts, held = sae_rows(subject.model, hook, r.n_sae_games, r.n_plies, seed)
    return add_sanity_saes(Path(out_dir), subject, acts, held, base, r.d_sae, r.sae_kwargs(), seed,
                           source=f"the measured positions of {r.n_sae_games} games (eval stream, seed {seed + 1}); "
                           f"held out: {max(4, r.n_sae_games // 10)} games (seed {seed + 2})")  # fmt: skip


def _data_card(recipe: Recipe, stats: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": "uci-moves: <bos> then one token per move, 1,968 UCI moves (a deviation from Chess-GPT's PGN "
        "characters; README, 'Zoo models')",
        "games": "uniformly random legal moves (python-chess), game i of stream 'train' from "
        "numpy.random.default_rng([0, seed, i]), the first n_plies moves",
        "n_plies": recipe.n_plies,
        "positions": f"the token of Black's k-th move (the board after 2k plies, White to move), k = 1 .. "
        f"{data.MAX_POSITIONS}",
        **({"train_games": stats["step"] * recipe.batch, "train_moves": stats["step"] * recipe.batch * recipe.n_plies}
           if stats else {}),  # fmt: skip
    }


def _probe_summary(trained: dict[str, Any], random: dict[str, Any]) -> dict[str, Any]:
    tb, rb = best_layer(trained["probes"]), best_layer(random["probes"])
    t_val, r_val = trained["probes"][tb][BAR_METRIC], random["probes"][rb][BAR_METRIC]
    return {
        "bar_metric": BAR_METRIC,
        "bar": f"{BAR_METRIC} of chess-mini at its best layer - that of chess-mini-random at its best layer "
        f">= {BAR_POINTS}",
        "trained_best_layer": tb, "random_best_layer": rb, "trained": t_val, "random": r_val,
        "difference": t_val - r_val, "bar_met": bool(t_val - r_val >= BAR_POINTS),
        "accuracy_trained_at_best": trained["probes"][tb]["accuracy"],
        "prior_accuracy_at_best": trained["probes"][tb]["prior_accuracy"],
        "accuracy_random_at_best": random["probes"][rb]["accuracy"],
    }  # fmt: skip


def train(out_dir: Path, seed: int = 0, tiny: bool = False, recipe: Recipe | None = None) -> dict:
    """Train (or resume) ``chess-mini`` (LM, probes for the card, SAEs) into ``out_dir``; returns the card.
    ``recipe``: instead of ``TINY`` / ``FULL``."""
    from deeprobe_bench.zoo import card as cards

    recipe = recipe or (TINY if tiny else FULL)
    t0 = time.time()
    model, stats = train_lm(recipe, seed)
    cards.round_weights(model, recipe.weights_dtype)  # every figure below is the shipped model's
    ev = heldout(recipe.n_quality_games, seed, recipe.n_plies)  # the same games for both models
    trained_q = quality_report(model, ev, recipe, seed)
    random_q = quality_report(cards.round_weights(random_model(recipe, seed), recipe.weights_dtype), ev, recipe, seed)
    summary = _probe_summary(trained_q, random_q)
    hook = summary["trained_best_layer"]
    saes, sae_q = saes_at(model, recipe, hook, ("standard", "topk", "panneal"), seed, stats["work_dir"])
    quality = {
        "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}); probes trained on the "
        f"first {recipe.n_probe_train_games}, tested on the rest, at the measured positions",
        "heldout_loss": trained_q["heldout_loss"], "random_init_heldout_loss": random_q["heldout_loss"],
        "legal_top1": trained_q["legal_top1"], "random_init_legal_top1": random_q["legal_top1"], "probe": summary,
        "probes": {NAME: trained_q["probes"], RANDOM_NAME: random_q["probes"]}, "n_probe_rows": trained_q["n_probe_rows"],
        "probe_definition": "13-way softmax per square (Chess-GPT's linear probe) on standardised resid_post, "
        "unmasked board; accuracy over all squares, over squares that differ from the start position (changed), "
        "and over squares holding a piece that is not the start position's (moved_piece)",
        "bar_met": summary["bar_met"],
    }  # fmt: skip
    card = cards.make_card(
        NAME, VERSION, seed, tiny, model_config(recipe, NAME, seed),
        recipe={**asdict(recipe), **{k: v for k, v in stats.items() if k != "work_dir"},
                "schedule": asdict(recipe.schedule()), "wall_time_s": round(time.time() - t0, 1),
                "optimizer": "AdamW, grad clip 1.0, no decay on 1-d parameters"},
        data=_data_card(recipe, stats), quality=quality, task={"hook_name": hook, "format": FORMAT}, saes=sae_q,
        default_sae_variant="topk", sae_hook={"hook_name": hook, "chosen_by": f"best {BAR_METRIC} probe layer"},
    )  # fmt: skip
    cards.write(Path(out_dir), model, card, saes, recipe.weights_dtype)
    logger.info("chess-mini: wrote %s in %.0fs", out_dir, time.time() - t0)
    return card


def _trained_hook(out_dir: Path, recipe: Recipe) -> str:
    """chess-mini's hook: from its card beside ``out_dir``, the user's zoo, or the shipped one, if it reads
    this recipe's format (else the last layer's resid_post)."""
    import json
    from importlib.resources import files

    from deeprobe_bench.zoo.card import user_zoo_dir

    for d in (Path(out_dir).parent / NAME, user_zoo_dir() / NAME, Path(str(files("deeprobe_bench.tasks.chess"))) / "zoo" / NAME):
        card = json.loads((d / "card.json").read_text()) if (d / "card.json").exists() else {}
        if card.get("task", {}).get("format") == FORMAT:
            return card["task"]["hook_name"]
    return f"blocks.{recipe.n_layers - 1}.hook_resid_post"


def train_random(out_dir: Path, seed: int = 0, tiny: bool = False, recipe: Recipe | None = None) -> dict:
    """Write ``chess-mini-random`` (random init, seeded; a standard SAE at chess-mini's hook) into
    ``out_dir``; returns the card. ``recipe``: instead of ``TINY`` / ``FULL``."""
    import torch

    from deeprobe_bench.zoo import card as cards

    recipe = recipe or (TINY if tiny else FULL)
    torch.set_num_threads(recipe.threads)
    hook = _trained_hook(Path(out_dir), recipe)
    model = cards.round_weights(random_model(recipe, seed), recipe.weights_dtype)
    q = quality_report(model, heldout(recipe.n_quality_games, seed, recipe.n_plies), recipe, seed)
    saes, sae_q = saes_at(model, recipe, hook, ("standard",), seed, None)
    card = cards.make_card(
        RANDOM_NAME, VERSION, seed, tiny, model_config(recipe, RANDOM_NAME, seed),
        recipe={"init": "HookedTransformer default initialisation with cfg.seed = seed; never trained",
                "sae": asdict(recipe.sae_spec(("standard",))), "n_sae_games": recipe.n_sae_games,
                "n_plies": recipe.n_plies},
        data=_data_card(recipe, None),
        quality={"heldout_loss": q["heldout_loss"], "legal_top1": q["legal_top1"], "probes": q["probes"],
                 "n_probe_rows": q["n_probe_rows"],
                 "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}), as chess-mini's"},
        task={"hook_name": hook, "format": FORMAT}, saes=sae_q, default_sae_variant="standard",
        sae_hook={"hook_name": hook, "chosen_by": "chess-mini's hook (its card)"},
    )  # fmt: skip
    cards.write(Path(out_dir), model, card, saes, recipe.weights_dtype)
    return card


def main(argv: list[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lm-only", action="store_true", help="only train (resume) the language model")
        parser.add_argument("--stop-after-s", type=float, default=None)
        parser.add_argument("--stop-at-step", type=int, default=None, help="stop (after a checkpoint) at this step")
        parser.add_argument("--random", action="store_true", help="write chess-mini-random instead of chess-mini")

    args, recipe, parser = recipe_args("Train the zoo models chess-mini and chess-mini-random.", FULL, TINY, argv,
                                       out_required=False, options=options)  # fmt: skip
    if args.lm_only:
        _, stats = train_lm(recipe, args.seed, args.stop_after_s, args.stop_at_step)
        logger.info("done: step %s of %s", stats.get("step"), recipe.steps)
        return
    if args.out is None:
        parser.error("--out is required unless --lm-only")
    train_fn = train_random if args.random else train
    card = train_fn(args.out, args.seed, args.tiny, recipe=recipe)
    logger.info("quality: %s", {k: v for k, v in card["quality"].items() if k != "probes"})


if __name__ == "__main__":
    main()
