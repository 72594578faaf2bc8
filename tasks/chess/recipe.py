"""Recipe of ``chess-mini`` (trained) and ``chess-mini-random`` (random init) on the zoo kit.

The language model is a character-level GPT in the format of Chess-GPT (adamkarvonen/
chess_llm_interpretability: vocab 32, ``";1.e4 e5 2.Nf3 ..."``), trained from scratch with next-character
loss on uniformly random legal games cut to ``n_ctx`` characters (:mod:`deeprobe_bench.tasks.chess.data`).
Training game ``i`` of the run is game ``i`` of the ``train`` stream of the seed; step ``s`` reads games
``s * batch .. (s + 1) * batch - 1``, generated on the fly: no game is seen twice and a resumed run reads
exactly what an uninterrupted one would.

What the kit does (:mod:`deeprobe_bench.zoo`): the training loop (``zoo.lm.train_lm``: AdamW,
warmup-stable-decay, resumable safetensors checkpoints), the fast CPU model (``zoo.gpt.FastGPT``, copied
into a ``HookedTransformer`` after training, logits checked equal), the SAE stage (``zoo.sae.sae_stage``)
and the card (``zoo.card``). What this recipe supplies: the data stream, the numbers, and the chess
quality figures (Chess-GPT's linear piece-on-square probe, legal-move rate of greedy continuations).

Run as ``python -m deeprobe_bench.tasks.chess.recipe --out DIR --seed 0 [--tiny] [--lm-only] [--random]``
or ``deeprobe-bench zoo train chess-mini``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deeprobe_bench.tasks.chess import data
from deeprobe_bench.zoo.recipe import ZooRecipe, recipe_args

logger = logging.getLogger(__name__)

NAME = "chess-mini"
RANDOM_NAME = "chess-mini-random"
VERSION = 2


@dataclass(frozen=True)
class Recipe(ZooRecipe):
    """Everything that fixes a chess-mini run besides the seed (model, run and SAE stage: :class:`ZooRecipe`)."""

    n_ctx: int  # = the cut of a game's text (about 11 full moves; the paper's window is 256)
    checkpoint_every_s: float = 180.0
    eval_every: int = 250
    n_eval_games: int = 128  # learning-curve games (eval stream)
    n_quality_games: int = 800  # probes: the first n_probe_train_games train them, the rest test them
    n_probe_train_games: int = 600
    n_legal_games: int = 20  # legal-move rate of greedy continuations at their '.' positions
    n_sae_games: int = 1000  # the SAE stage's activations: every character of this many games


FULL = Recipe(
    n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=128, steps=3600, batch=64, lr=2e-3, min_lr=1e-4,
    warmup_steps=100, decay_steps=900, weight_decay=0.1, threads=2, d_sae=512, k=32, l1=5.0, sae_steps=1000,
    sae_batch=1024, sae_lr=3e-4,
)  # fmt: skip
TINY = dataclasses.replace(
    FULL, n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64, steps=12, batch=4, warmup_steps=2, decay_steps=3,
    checkpoint_every_s=0.0, eval_every=0, n_eval_games=8, n_quality_games=24, n_probe_train_games=16,
    n_legal_games=2, d_sae=64, k=4, sae_steps=10, sae_batch=64, n_sae_games=8,
)  # fmt: skip
BAR_METRIC = "moved_piece_accuracy"
BAR_POINTS = 0.15


def model_config(recipe: Recipe, name: str = NAME) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (plain JSON types)."""
    return recipe.transformer_config(name, n_ctx=recipe.n_ctx, d_vocab=len(data.VOCAB),
                                     default_prepend_bos=False,  # texts start with ';' themselves
                                     tokenizer_prepends_bos=False, original_architecture="chess-mini", init_weights=True)  # fmt: skip


def build_hooked(config: dict[str, Any]) -> Any:
    """A ``HookedTransformer`` of ``config`` with the character tokenizer (TransformerLens' init from torch's
    global generator)."""
    import tempfile

    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import load_tokenizer, quiet_hooked_transformer

    with tempfile.TemporaryDirectory() as tmp:
        data.char_tokenizer().save_pretrained(tmp)
        model = quiet_hooked_transformer(HookedTransformerConfig(**config), load_tokenizer(Path(tmp)))
    model.eval()
    return model


def targets_of(tokens: Any, lengths: Any) -> Any:
    """Next-character targets of ``tokens`` (``Int[Tensor, "b n_ctx"]``): -100 past each game's text."""
    import torch

    target = tokens[:, 1:].clone()
    target[torch.arange(tokens.shape[1] - 1)[None, :] >= (lengths[:, None] - 1)] = -100
    return target


def lm_loss(logits: Any, tokens: Any, lengths: Any) -> Any:
    """Mean next-character cross-entropy over the real characters (nats); padding is ignored."""
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets_of(tokens, lengths).reshape(-1),
                           ignore_index=-100)  # fmt: skip


def batch_stream(recipe: Recipe, seed: int) -> Any:
    """``step -> (inputs, targets)``: games ``step * batch ..`` of the seed's train stream (pure in ``step``)."""

    def batch_at(step: int) -> tuple[Any, Any]:
        games = [data.random_game(seed, i, "train", recipe.n_ctx)[0] for i in range(step * recipe.batch, (step + 1) * recipe.batch)]
        tokens, lengths = data.encode(games, recipe.n_ctx)
        return tokens[:, :-1], targets_of(tokens, lengths)

    return batch_at


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


def train_lm(recipe: Recipe, seed: int, stop_after_s: float | None = None) -> tuple[Any, dict[str, Any]]:
    """Train (or resume) the language model on the kit; returns ``(HookedTransformer, stats)``."""
    import torch

    from deeprobe_bench.zoo import gpt, lm

    torch.set_num_threads(recipe.threads)
    config = model_config(recipe, NAME)
    key = {"version": VERSION, "config": config, "seed": seed, "batch": recipe.batch, "data": data.DATA_VERSION,
           "schedule": recipe.schedule().key(), "init": "zoo.gpt.fast_gpt"}  # fmt: skip
    work = lm.work_dir(NAME, key)
    lm.ensure_free(work)
    fast = gpt.fast_gpt(config, seed)
    ev = data.generate_games(recipe.n_eval_games, seed, "eval", recipe.n_ctx, cache=False)
    ev_tokens, ev_lengths = data.encode(list(ev["text"]), recipe.n_ctx)
    stats = lm.train_lm(fast, batch_stream(recipe, seed), recipe.schedule(), work,
                        eval_fn=lambda m: {"eval_loss": eval_loss(m, ev_tokens, ev_lengths)},
                        eval_every=recipe.eval_every, checkpoint_every_s=recipe.checkpoint_every_s,
                        stop_after_s=stop_after_s)  # fmt: skip
    return gpt.to_hooked(fast, build_hooked(config)), {**stats, "work_dir": str(work)}


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


def sae_rows(model: Any, hook: str, n_games: int, n_ctx: int, seed: int) -> tuple[Any, Any]:
    """The SAE stage's rows at ``hook``: every character of ``n_games`` games (eval stream, seed + 1) and,
    held out, of ``n_games // 10`` others (eval stream, seed + 2)."""
    games = data.generate_games(n_games, seed + 1, "eval", n_ctx)
    held = data.generate_games(max(4, n_games // 10), seed + 2, "eval", n_ctx)
    return sae_activations(model, games, hook, n_ctx), sae_activations(model, held, hook, n_ctx)


def saes_at(model: Any, recipe: Recipe, hook: str, archs: tuple[str, ...], seed: int, work: Any) -> tuple[dict, dict]:
    """The kit's SAE stage at ``hook`` on :func:`sae_rows` of ``n_sae_games`` games."""
    from deeprobe_bench.zoo.sae import sae_stage

    acts, held_acts = sae_rows(model, hook, recipe.n_sae_games, recipe.n_ctx, seed)
    return sae_stage(acts, held_acts, hook, recipe.sae_spec(archs), seed, work, model.cfg.model_name)


def sanity_saes(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Add the random-SAE sanity baselines (:mod:`deeprobe_bench.zoo.sanity`) to the chess model in
    ``out_dir``, with the recipe of its default SAE (from the card), on :func:`sae_rows`; returns the
    card's entry."""
    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.zoo.sanity import add_sanity_saes

    subject = load_zoo_dir(Path(out_dir))
    card, r = subject.card, subject.card["recipe"]
    hook, base = card["task"]["hook_name"], card["default_sae_variant"]
    spec = {"d_sae": r["d_sae"], "steps": r["sae_steps"], "batch": r["sae_batch"], "lr": r["sae_lr"], "k": r["k"], "l1": r["l1"]}
    n_games = r.get("n_sae_games", FULL.n_sae_games)
    acts, held = sae_rows(subject.model, hook, n_games, card["config"]["n_ctx"], seed)
    return add_sanity_saes(Path(out_dir), subject, acts, held, base, spec["d_sae"], spec, seed,
                           source=f"every character of {n_games} games (eval stream, seed {seed + 1}); held out: "
                           f"{max(4, n_games // 10)} games (seed {seed + 2})")  # fmt: skip


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
        **({"train_games": stats["step"] * recipe.batch, "train_characters": stats["step"] * recipe.batch * recipe.n_ctx}
           if stats else {}),  # fmt: skip
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
    """Train (or resume) ``chess-mini`` (LM, probes for the card, SAEs) into ``out_dir``; returns the card."""
    return train_recipe(Path(out_dir), seed, TINY if tiny else FULL, tiny=tiny)


def train_recipe(out_dir: Path, seed: int, recipe: Recipe, tiny: bool = False) -> dict:
    """:func:`train` with an explicit :class:`Recipe`."""
    from deeprobe_bench.zoo import card as cards

    t0 = time.time()
    model, stats = train_lm(recipe, seed)
    games = data.generate_games(recipe.n_quality_games, seed, "eval", recipe.n_ctx)
    trained_q = quality_report(model, games, recipe.n_probe_train_games, seed, recipe.n_ctx)
    legal = legal_move_rate(model, games.select(range(recipe.n_legal_games)), recipe.n_ctx)
    random_q = quality_report(random_model(recipe, seed), games, recipe.n_probe_train_games, seed, recipe.n_ctx)
    summary = _probe_summary(trained_q, random_q)
    hook = summary["trained_best_layer"]
    saes, sae_q = saes_at(model, recipe, hook, ("standard", "topk", "panneal"), seed, stats["work_dir"])
    quality = {
        "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}); probes trained on the "
        f"first {recipe.n_probe_train_games}, tested on the rest, at their '.' positions",
        "heldout_loss": trained_q["heldout_loss"], "random_init_heldout_loss": random_q["heldout_loss"], **legal,
        "legal_move_games": recipe.n_legal_games, "probe": summary,
        "probes": {NAME: trained_q["probes"], RANDOM_NAME: random_q["probes"]}, "n_probe_rows": trained_q["n_probe_rows"],
        "probe_definition": "13-way softmax per square (Chess-GPT's linear probe) on standardised resid_post, "
        "unmasked board; accuracy over all squares, over squares that differ from the start position (changed), "
        "and over squares holding a piece that is not the start position's (moved_piece)",
        "bar_met": summary["bar_met"],
    }  # fmt: skip
    card = cards.make_card(
        NAME, VERSION, seed, tiny, model_config(recipe, NAME),
        recipe={**asdict(recipe), **{k: v for k, v in stats.items() if k != "work_dir"},
                "schedule": asdict(recipe.schedule()), "wall_time_s": round(time.time() - t0, 1),
                "trainer": "deeprobe_bench.zoo.lm.train_lm on zoo.gpt.FastGPT, copied into a HookedTransformer"},
        data=_data_card(recipe, stats), quality=quality, task={"hook_name": hook}, saes=sae_q,
        default_sae_variant="topk", sae_hook={"hook_name": hook, "chosen_by": f"best {BAR_METRIC} probe layer"},
    )  # fmt: skip
    cards.write(out_dir, model, card, saes)
    logger.info("chess-mini: wrote %s in %.0fs", out_dir, time.time() - t0)
    return card


def _trained_hook(out_dir: Path, recipe: Recipe) -> str:
    """chess-mini's hook: from its card beside ``out_dir``, the user's zoo, or the shipped one (else the
    last layer's resid_post)."""
    from importlib.resources import files

    from deeprobe_bench.zoo.card import user_zoo_dir

    for d in (Path(out_dir).parent / NAME, user_zoo_dir() / NAME, Path(str(files("deeprobe_bench.tasks.chess"))) / "zoo" / NAME):
        if (d / "card.json").exists():
            return json.loads((d / "card.json").read_text())["task"]["hook_name"]
    return resid_hooks(recipe.n_layers)[-1]


def train_random(out_dir: Path, seed: int = 0, tiny: bool = False) -> dict:
    """Write ``chess-mini-random`` (random init, seeded; a standard SAE at chess-mini's hook) into
    ``out_dir``; returns the card."""
    import torch

    from deeprobe_bench.zoo import card as cards

    recipe = TINY if tiny else FULL
    torch.set_num_threads(recipe.threads)
    out_dir = Path(out_dir)
    hook = _trained_hook(out_dir, recipe) if not tiny else resid_hooks(recipe.n_layers)[-1]
    model = random_model(recipe, seed)
    games = data.generate_games(recipe.n_quality_games, seed, "eval", recipe.n_ctx)
    q = quality_report(model, games, recipe.n_probe_train_games, seed, recipe.n_ctx)
    saes, sae_q = saes_at(model, recipe, hook, ("standard",), seed, None)
    card = cards.make_card(
        RANDOM_NAME, VERSION, seed, tiny, model_config(recipe, RANDOM_NAME),
        recipe={"init": f"TransformerLens HookedTransformer init after torch.manual_seed({seed}); never trained",
                **{k: v for k, v in asdict(recipe).items() if k.startswith(("n_layers", "d_", "n_", "k", "l1", "sae_"))}},
        data=_data_card(recipe, None),
        quality={"heldout_loss": q["heldout_loss"], "probes": q["probes"], "n_probe_rows": q["n_probe_rows"],
                 "heldout_games": f"{recipe.n_quality_games} games of the eval stream (seed {seed}), as chess-mini's"},
        task={"hook_name": hook}, saes=sae_q, default_sae_variant="standard",
        sae_hook={"hook_name": hook, "chosen_by": "chess-mini's hook (its card)"},
    )  # fmt: skip
    cards.write(out_dir, model, card, saes)
    return card


def main(argv: list[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lm-only", action="store_true", help="only train (resume) the language model")
        parser.add_argument("--stop-after-s", type=float, default=None)
        parser.add_argument("--random", action="store_true", help="write chess-mini-random instead of chess-mini")

    args, recipe, parser = recipe_args("Train the zoo models chess-mini and chess-mini-random.", FULL, TINY, argv,
                                       out_required=False, options=options)  # fmt: skip
    if args.lm_only:
        train_lm(recipe, args.seed, args.stop_after_s)
        return
    if args.out is None:
        parser.error("--out is required unless --lm-only")
    card = train_random(args.out, args.seed, args.tiny) if args.random else train_recipe(args.out, args.seed, recipe, args.tiny)
    logger.info("quality: %s", {k: v for k, v in card["quality"].items() if k != "probes"})


if __name__ == "__main__":
    main()
