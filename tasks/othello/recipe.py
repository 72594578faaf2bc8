"""Recipe of ``othello-mini`` v2 on the zoo kit: its data stream and its numbers, nothing else.

The model is the 6x6 Othello-GPT of alfredclwong/othello-gpt (8 layers, d_model 256, 8 heads of 32,
d_mlp 1024), trained with next-move cross-entropy on uniformly random pass-free games, fresh games at
every step (``engine.random_games`` seeded by ``(seed, chunk of steps)``: no game is seen twice and a
step's games depend on its index only), under warmup-stable-decay (:class:`deeprobe_bench.zoo.lm.Schedule`).
That recipe reached 0.03% illegal moves and more than 98% probe accuracy after 2M games; ours plans
``steps * batch`` = 4.61M games (planned at 2.05M, extended twice: README). On the 2-core CPU machine it runs for hours in the background and resumes
from its checkpoint (``python -m deeprobe_bench.tasks.othello.recipe --lm-only``).

Monitoring (every ``eval_every`` steps, on held-out games of another seed): ``legal_top1`` (top-1
prediction legal where the player to move has a move) and ``ridge_mine_theirs`` (per layer: accuracy of a
per-square least-squares linear readout of mine vs theirs on occupied squares, fitted on
``monitor_train_games`` games, scored on ``monitor_test_games`` others; a cheap stand-in for the card's
logistic-regression figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deeprobe_bench.tasks.othello import data, engine
from deeprobe_bench.zoo.recipe import ZooRecipe, recipe_args

logger = logging.getLogger(__name__)

NAME = "othello-mini"
RANDOM_NAME = "othello-mini-random"
VERSION = 2


@dataclass(frozen=True)
class Recipe(ZooRecipe):
    """Everything that fixes an othello-mini run besides the seed (model, run and SAE stage:
    :class:`ZooRecipe`; ``batch`` counts games)."""

    size: int = 6
    chunk_steps: int = 20  # games of this many steps are generated at once
    autocast: str | None = "bf16"  # forward in bfloat16 (measured 1.4 vs 2.3 CPU-s per step at one thread)
    checkpoint_every_s: float = 240.0
    eval_every: int = 1000
    n_eval_games: int = 500
    monitor_train_games: int = 400
    monitor_test_games: int = 200


FULL = Recipe(
    n_layers=8, d_model=256, n_heads=8, d_head=32, d_mlp=1024, batch=128, steps=36000,  # 4.61M games
    lr=1e-3, warmup_steps=500, decay_steps=6000, min_lr=1e-5, weight_decay=0.05, threads=2,  # decay: the last 1/6
    # SAEs: 8 x d_model latents (the paper: 8x-16x), TopK k = 48 (L0 <= 64), L1 / initial alpha 2.0
    d_sae=2048, k=48, l1=2.0, sae_steps=3000, sae_batch=1024, sae_lr=3e-4, weights_dtype="float16",
)  # fmt: skip
TINY = dataclasses.replace(
    FULL, n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, batch=16, steps=12, warmup_steps=2,
    decay_steps=4, chunk_steps=5, eval_every=0, n_eval_games=32, monitor_train_games=32, monitor_test_games=16, d_sae=64, k=4,
    sae_steps=20, sae_batch=256,
)  # fmt: skip

TRAIN_SEED_BASE = 2_000_000  # training games: seed TRAIN_SEED_BASE * (seed + 1) + chunk
EVAL_SEED_BASE = 7_000_000  # held-out games: EVAL_SEED_BASE + offset + seed (never a training seed)


def model_config(recipe: Recipe, name: str = NAME, seed: int = 0) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments (part of the run's key: keep them stable)."""
    return recipe.transformer_config(name, n_ctx=data.context(recipe.size), d_vocab=data.vocab_size(recipe.size),
                                     default_prepend_bos=False, seed=seed)  # fmt: skip


def run_key(recipe: Recipe, seed: int) -> dict[str, Any]:
    """What fixes the LM trajectory (the work directory's key): config, data stream, stable schedule."""
    return {"version": VERSION, "config": model_config(recipe, NAME, seed), "batch": recipe.batch,
            "chunk_steps": recipe.chunk_steps, "train_seed_base": TRAIN_SEED_BASE, "schedule": recipe.schedule().key(),
            "autocast": recipe.autocast}  # fmt: skip


def batch_stream(recipe: Recipe, seed: int) -> Any:
    """``step -> Int[Tensor, "batch n_moves"]`` token ids of that step's fresh games (pure in ``step``)."""
    import torch

    cache: dict[int, Any] = {}

    def batch_at(step: int) -> Any:
        c = step // recipe.chunk_steps
        if c not in cache:
            cache.clear()
            n = recipe.chunk_steps * recipe.batch
            moves = engine.random_games(n, recipe.size, seed=TRAIN_SEED_BASE * (seed + 1) + c, batch=max(n, 256))
            cache[c] = torch.from_numpy(data.moves_to_tokens(moves, recipe.size))
        j = (step % recipe.chunk_steps) * recipe.batch
        return cache[c][j : j + recipe.batch]

    return batch_at


def heldout(n: int, size: int, seed: int) -> dict[str, Any]:
    """Held-out games: ``tokens`` (inputs), ``legal`` next-move tokens, ``has_move``, per-row ``board``,
    ``measured`` mask (move played)."""
    import torch

    moves = engine.random_games(n, size, seed=seed)
    ctx = data.context(size)
    props = data.bsp(moves[:, :ctx], size)
    legal_tok = np.zeros(props["legal"].shape[:2] + (data.vocab_size(size),), dtype=bool)
    legal_tok[..., 1:] = props["legal"][..., engine.playable_squares(size)]
    return {
        "tokens": torch.from_numpy(data.moves_to_tokens(moves, size)[:, :ctx]),
        "legal": torch.from_numpy(legal_tok),
        "has_move": torch.from_numpy(legal_tok.any(-1) & props["valid"]),
        "measured": torch.from_numpy(props["valid"]),
        "board": props["board"][props["valid"]],
    }


def legal_top1(model: Any, ev: dict[str, Any], batch: int = 250) -> float:
    """Fraction of positions (player to move has a legal move) whose top-1 prediction is legal."""
    import torch

    hits = total = 0
    with torch.no_grad():
        for i in range(0, len(ev["tokens"]), batch):
            top = model(ev["tokens"][i : i + batch]).argmax(-1)
            ok = ev["legal"][i : i + batch].gather(-1, top[..., None])[..., 0]
            m = ev["has_move"][i : i + batch]
            hits, total = hits + int((ok & m).sum()), total + int(m.sum())
    return hits / max(1, total)


def resid_rows(model: Any, ev: dict[str, Any], hooks: list[str], batch: int = 250) -> dict[str, Any]:
    """``{hook: Float[Tensor, "rows d_model"]}`` at the measured positions of ``ev``."""
    import torch

    out: dict[str, list] = {h: [] for h in hooks}
    with torch.no_grad():
        for i in range(0, len(ev["tokens"]), batch):
            _, cache = model.run_with_cache(ev["tokens"][i : i + batch], names_filter=lambda n: n in out)
            for h in hooks:
                out[h].append(cache[h][ev["measured"][i : i + batch]].float())
    return {h: torch.cat(v) for h, v in out.items()}


def ridge_mine_theirs(x_tr: Any, b_tr: np.ndarray, x_te: Any, b_te: np.ndarray, ridge: float = 1e-2) -> float:
    """Accuracy of per-square least-squares readouts of mine (+1) vs theirs (-1) on occupied squares.

    Args:
        x_tr, x_te: ``Float[Tensor, "rows d"]`` activations; b_tr, b_te: ``Int8[ndarray, "rows squares"]``
            boards (``data.EMPTY/MINE/THEIRS``).
    """
    import torch

    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.cat([(x_tr - mu) / sd, torch.ones(len(x_tr), 1)], 1).double()
    xe = torch.cat([(x_te - mu) / sd, torch.ones(len(x_te), 1)], 1).double()
    correct = total = 0
    for sq in range(b_tr.shape[1]):
        occ = torch.from_numpy(b_tr[:, sq] != data.EMPTY)
        if occ.sum() < 2:
            continue
        a = xt[occ]
        y = torch.from_numpy(np.where(b_tr[:, sq] == data.MINE, 1.0, -1.0))[occ].double()
        w = torch.linalg.solve(a.T @ a + ridge * len(a) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y)
        occ_te = b_te[:, sq] != data.EMPTY
        pred = (xe[torch.from_numpy(occ_te)] @ w > 0).numpy()
        correct += int((pred == (b_te[occ_te, sq] == data.MINE)).sum())
        total += int(occ_te.sum())
    return correct / max(1, total)


def monitor(recipe: Recipe, seed: int) -> Any:
    """The trainer's ``eval_fn``: ``legal_top1`` and ``ridge_mine_theirs`` at every layer's resid_post."""
    games: dict[str, Any] = {}

    def eval_fn(model: Any) -> dict[str, Any]:
        if not games:  # generated at the first evaluation, not before training starts
            games["ev"] = heldout(recipe.n_eval_games, recipe.size, EVAL_SEED_BASE + 50 + seed)
            games["tr"] = heldout(recipe.monitor_train_games, recipe.size, EVAL_SEED_BASE + 100 + seed)
            games["te"] = heldout(recipe.monitor_test_games, recipe.size, EVAL_SEED_BASE + 200 + seed)
        ev, tr, te = games["ev"], games["tr"], games["te"]
        hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
        a, b = resid_rows(model, tr, hooks), resid_rows(model, te, hooks)
        per_layer = {h.split(".")[1]: round(ridge_mine_theirs(a[h], tr["board"], b[h], te["board"]), 4) for h in hooks}
        return {"legal_top1": round(legal_top1(model, ev), 5), "ridge_mine_theirs": per_layer}

    return eval_fn


def tokenizer_for(size: int) -> Any:
    """A word-level Hugging Face tokenizer whose ids are the Othello-GPT tokens (``"<pad>"`` = 0, ``"a1"`` ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(data.token_names(size))}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<pad>", eos_token="<pad>", pad_token="<pad>",
                                   unk_token="<pad>")  # fmt: skip


def build_model(config: dict[str, Any], size: int) -> Any:
    """A fresh HookedTransformer (initialised from ``config["seed"]``) with the Othello tokenizer."""
    from deeprobe_bench.zoo.lm import hooked_transformer

    return hooked_transformer(config, tokenizer_for(size))


def train_lm(recipe: Recipe, seed: int, stop_after_s: float | None = None, keep_steps: bool = True,
             stop_at_step: int | None = None) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Build and train (or resume) othello-mini's LM in its work directory; returns ``(model, stats)``.
    ``stop_after_s``, ``stop_at_step``: as :func:`deeprobe_bench.zoo.lm.train_lm`'s.

    With ``keep_steps``, a run already started keeps the total number of steps it was last given (``--steps``
    of an earlier call, recorded in the work directory), so ``zoo train`` finishes what the background run
    planned; ``stats["steps"]`` is the total used.
    """
    import torch

    from deeprobe_bench.zoo import lm

    torch.set_num_threads(recipe.threads)
    work = lm.work_dir(NAME, run_key(recipe, seed))
    lm.ensure_free(work)
    model = build_model(model_config(recipe, NAME, seed), recipe.size)
    progress = work / lm.PROGRESS
    if keep_steps and progress.is_file():
        recipe = dataclasses.replace(recipe, steps=int(json.loads(progress.read_text())["steps"]))
    logger.info("work directory %s (%d steps)", work, recipe.steps)
    stats = lm.train_lm(model, batch_stream(recipe, seed), recipe.schedule(), work, pad=data.PAD,
                        eval_fn=monitor(recipe, seed) if recipe.eval_every else None, eval_every=recipe.eval_every,
                        checkpoint_every_s=recipe.checkpoint_every_s, stop_after_s=stop_after_s,
                        stop_at_step=stop_at_step, autocast=recipe.autocast)  # fmt: skip
    return model, {**stats, "steps": recipe.steps}


# --------------------------------------------------------------------------- probes, SAEs, card

PROBE_TRAIN_GAMES, PROBE_TEST_GAMES, SAE_GAMES = 1000, 500, 6000
TINY_SAE = 256  # an SAE of fewer latents (the TINY recipe's) gets fewer rows: sae_rows, sae_eval_rows
BAR = {"legal_top1": 0.95, "mine_theirs_occupied": 0.97}


def probe_report(model: Any, n_train: int, n_test: int, size: int, seed: int,
                 hooks: list[str] | None = None, n_jobs: int = 1) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per layer (``resid_post``), two linear probes fitted on ``n_train`` games, scored on ``n_test`` others.

    ``mine_theirs_occupied``: per square, a binary logistic regression (scikit-learn, lbfgs, C=1) of mine
    vs theirs on the rows where the square is occupied (the paper's "mine / theirs" decoding);
    ``three_way``: per square, multinomial empty / mine / theirs on every row. Inputs standardised with
    the train rows' mean and std. ``hooks``: the resid_post hooks to probe (default: every layer's);
    ``n_jobs``: squares fitted at once (joblib processes; the figures do not depend on it).
    Returns ``{hook: {probe: accuracy over squares and rows}}``.
    """
    from joblib import Parallel, delayed

    hooks = hooks or [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    tr, te = heldout(n_train, size, EVAL_SEED_BASE + 100 + seed), heldout(n_test, size, EVAL_SEED_BASE + 200 + seed)
    a, b = resid_rows(model, tr, hooks), resid_rows(model, te, hooks)
    out = {}
    for h in hooks:
        mu, sd = a[h].mean(0), a[h].std(0) + 1e-6
        x_tr, x_te = ((a[h] - mu) / sd).numpy(), ((b[h] - mu) / sd).numpy()
        per_square = Parallel(n_jobs=n_jobs)(delayed(_square_probes)(x_tr, x_te, tr["board"][:, sq], te["board"][:, sq])
                                             for sq in range(size * size))  # fmt: skip
        out[h] = {k: sum(hits[k][0] for hits in per_square) / max(1, sum(hits[k][1] for hits in per_square))
                  for k in ("mine_theirs_occupied", "three_way")}  # fmt: skip
        logger.info("probes %s: %s", h, json.dumps(out[h]))
    return out


def _square_probes(x_tr: np.ndarray, x_te: np.ndarray, y_tr: np.ndarray, y_te: np.ndarray) -> dict[str, tuple[int, int]]:
    """:func:`probe_report`'s two probes of one square: ``{probe: (right, scored)}`` on the test rows."""
    from sklearn.linear_model import LogisticRegression

    hits = {}
    for probe, rows_tr, rows_te in (("three_way", slice(None), slice(None)),
                                    ("mine_theirs_occupied", y_tr != data.EMPTY, y_te != data.EMPTY)):  # fmt: skip
        yt, ye = y_tr[rows_tr], y_te[rows_te]
        if len(ye) == 0:
            hits[probe] = (0, 0)
            continue
        if len(np.unique(yt)) < 2:
            pred = np.full(len(ye), yt[0] if len(yt) else data.EMPTY)
        else:
            pred = LogisticRegression(C=1.0, max_iter=500).fit(x_tr[rows_tr], yt).predict(x_te[rows_te])
        hits[probe] = (int((pred == ye).sum()), len(ye))
    return hits


def probe_checkpoint(path: Any, recipe: Recipe, seed: int = 0, n_train: int = PROBE_TRAIN_GAMES) -> dict[str, dict[str, float]]:
    """The card's probes (:func:`probe_report`, every layer, ``n_train`` train games) of the model in a work
    directory's checkpoint (``lm.safetensors``, float32 as trained): how a run is measured before it ends.

    Raises:
        UserError: the file is not a checkpoint of the kit.
    """
    from pathlib import Path

    from deeprobe_bench.zoo import lm

    model = build_model(model_config(recipe, NAME, seed), recipe.size)
    lm.load_checkpoint(Path(path), model)
    model.eval()
    return probe_report(model, n_train, PROBE_TEST_GAMES, recipe.size, seed, n_jobs=recipe.threads)


def choose_hook(report: dict[str, dict[str, float]]) -> str:
    """The resid_post hook with the best mine/theirs decoding (ties: the earliest layer)."""
    return max(report, key=lambda h: (round(report[h]["mine_theirs_occupied"], 4), -int(h.split(".")[1])))


def sae_rows(model: Any, hook: str, d_sae: int, size: int, seed: int) -> tuple[Any, Any]:
    """The SAE stage's rows at ``hook``: every position of ``SAE_GAMES`` fresh games (training) and
    :func:`sae_eval_rows` (held out); a tiny SAE (< ``TINY_SAE`` latents) gets fewer."""
    tiny = d_sae < TINY_SAE
    acts = resid_rows(model, heldout(1024 if tiny else SAE_GAMES, size, TRAIN_SEED_BASE * 1000 + seed), [hook])[hook]
    return acts, sae_eval_rows(model, hook, d_sae, size, seed)


def sae_eval_rows(model: Any, hook: str, d_sae: int, size: int, seed: int) -> Any:
    """``Float[Tensor, "rows d_model"]``: the measured positions of ``PROBE_TEST_GAMES`` held-out games (a tenth
    for a tiny SAE, as in :func:`sae_rows`), where the card's SAE figures (variance explained, L0) are measured."""
    games = PROBE_TEST_GAMES // (10 if d_sae < TINY_SAE else 1)
    return resid_rows(model, heldout(games, size, EVAL_SEED_BASE + 300 + seed), [hook])[hook]


def saes_at(model: Any, hook: str, spec: Any, size: int, seed: int, work: Any) -> tuple[dict, dict]:
    """The kit's SAE stage at ``hook`` on :func:`sae_rows`."""
    from deeprobe_bench.zoo.sae import sae_stage

    acts, ev = sae_rows(model, hook, spec.d_sae, size, seed)
    return sae_stage(acts, ev, hook, spec, seed, work, model.cfg.model_name)


def sanity_saes(out_dir: Any, seed: int = 0) -> dict[str, Any]:
    """Add the random-SAE sanity baselines (:mod:`deeprobe_bench.zoo.sanity`) to the othello model in
    ``out_dir``, with the recipe of its default SAE, on :func:`sae_rows`; returns the card's entry."""
    from pathlib import Path

    from deeprobe_bench.subject import load_zoo_dir
    from deeprobe_bench.zoo.sanity import add_sanity_saes

    subject = load_zoo_dir(Path(out_dir))
    card = subject.card
    hook, size, base = card["task"]["hook_name"], card["task"]["board_size"], card["default_sae_variant"]
    r = FULL.from_card(card["recipe"])  # v1 cards have no sae_lr: they trained at FULL's 3e-4
    acts, ev = sae_rows(subject.model, hook, r.d_sae, size, seed)
    return add_sanity_saes(Path(out_dir), subject, acts, ev, base, r.d_sae, r.sae_kwargs(), seed, source=f"{len(acts)} rows of fresh random games "
                           f"(seed {TRAIN_SEED_BASE * 1000 + seed}, every measured position); held out: the probe test games")  # fmt: skip


def _data_card(recipe: Recipe, games_seen: int | None) -> dict[str, Any]:
    return {"games": "uniformly random legal games without a pass (engine.random_games), fresh every step",
            "board_size": recipe.size, "games_seen": games_seen, "vocab": data.vocab_size(recipe.size),
            "context": data.context(recipe.size), "train_seeds": f"{TRAIN_SEED_BASE} * (seed + 1) + step // chunk_steps",
            "heldout_seeds": f"{EVAL_SEED_BASE} + 50/100/200/300 + seed", "why_6x6": WHY_6X6}  # fmt: skip


WHY_6X6 = (
    "budget: a step of 128 6x6 games (36 moves) takes about 1 s on this machine's two cores (bf16 forward); "
    "the paper's 8x8 Othello-GPT (Li et al. 2023) learned from 20M synthetic games of 60 moves, which at this "
    "width would be 156,250 such steps of about 1.7 s, some 74 hours, against 36,000 steps (about 10 hours) "
    "for the 6x6 recipe that reached > 98% probe accuracy with 2M games (alfredclwong/othello-gpt)"
)


def train(out_dir: Any, seed: int = 0, tiny: bool = False, recipe: Recipe | None = None) -> dict[str, Any]:
    """Train (or resume) othello-mini: LM, probes and hook, SAEs, card, into ``out_dir``; returns the card.
    ``recipe``: instead of ``TINY`` / ``FULL``."""
    from pathlib import Path

    from deeprobe_bench.zoo import card as cards
    from deeprobe_bench.zoo import lm

    recipe = recipe or (TINY if tiny else FULL)
    model, stats = train_lm(recipe, seed)
    cards.round_weights(model, recipe.weights_dtype)  # every figure below is the shipped model's
    recipe = dataclasses.replace(recipe, steps=stats["steps"])
    work = lm.work_dir(NAME, run_key(recipe, seed))
    n_tr, n_te = (64, 32) if tiny else (PROBE_TRAIN_GAMES, PROBE_TEST_GAMES)
    report = probe_report(model, n_tr, n_te, recipe.size, seed, n_jobs=recipe.threads)
    hook = choose_hook(report)
    saes, sae_q = saes_at(model, hook, recipe.sae_spec(), recipe.size, seed, work)
    legal = legal_top1(model, heldout(100 if tiny else 1000, recipe.size, EVAL_SEED_BASE + 50 + seed))
    quality = {"legal_top1": legal, "legal_top1_games": 100 if tiny else 1000, **report[hook],
               "probe_games": {"train": n_tr, "test": n_te}, "probes_per_layer": report, "bar": BAR,
               "bar_met": bool(legal >= BAR["legal_top1"] and report[hook]["mine_theirs_occupied"] >= BAR["mine_theirs_occupied"])}  # fmt: skip
    card = cards.make_card(
        NAME, VERSION, seed, tiny, model_config(recipe, NAME, seed),
        recipe={**asdict(recipe), **{k: v for k, v in stats.items() if k != "learning_curve"},
                "learning_curve": stats["learning_curve"], "schedule": asdict(recipe.schedule()),
                "optimizer": "AdamW, grad clip 1.0, no decay on 1-d parameters"},
        data=_data_card(recipe, stats["step"] * recipe.batch), quality=quality,
        task={"hook_name": hook, "board_size": recipe.size}, saes=sae_q, default_sae_variant="topk",
        hook_selection={"rule": "resid_post of the layer with the best mine/theirs decoding (ties: earliest)", "chosen": hook},
    )  # fmt: skip
    cards.write(Path(out_dir), model, card, saes, recipe.weights_dtype)
    return card


def train_random(out_dir: Any, seed: int = 0, tiny: bool = False, hook: str | None = None,
                 recipe: Recipe | None = None) -> dict[str, Any]:  # fmt: skip
    """``othello-mini-random``: othello-mini's architecture at random init (``cfg.seed = seed``), its probes,
    and a ``standard`` SAE at ``hook`` (default: the trained othello-mini's, from its card); returns the card.
    ``recipe``: instead of ``TINY`` / ``FULL``."""
    import dataclasses as dc
    from pathlib import Path

    from deeprobe_bench.zoo import card as cards

    recipe = recipe or (TINY if tiny else FULL)
    if hook is None:
        hook = f"blocks.{recipe.n_layers - 1}.hook_resid_post" if tiny else _trained_hook()
    model = cards.round_weights(build_model(model_config(recipe, RANDOM_NAME, seed), recipe.size), recipe.weights_dtype)
    model.eval()
    n_tr, n_te = (64, 32) if tiny else (PROBE_TRAIN_GAMES, PROBE_TEST_GAMES)
    report = probe_report(model, n_tr, n_te, recipe.size, seed, n_jobs=recipe.threads)
    spec = dc.replace(recipe.sae_spec(), archs=("standard",))
    saes, sae_q = saes_at(model, hook, spec, recipe.size, seed, None)
    legal = legal_top1(model, heldout(100 if tiny else 1000, recipe.size, EVAL_SEED_BASE + 50 + seed))
    card = cards.make_card(
        RANDOM_NAME, VERSION, seed, tiny, model_config(recipe, RANDOM_NAME, seed),
        recipe={"init": "HookedTransformer default initialisation with cfg.seed = seed; never trained", "sae": asdict(spec)},
        data=_data_card(recipe, 0), quality={"legal_top1": legal, **report[hook], "probes_per_layer": report},
        task={"hook_name": hook, "board_size": recipe.size}, saes=sae_q, default_sae_variant="standard",
    )  # fmt: skip
    cards.write(Path(out_dir), model, card, saes, recipe.weights_dtype)
    return card


def _trained_hook() -> str:
    """othello-mini's hook, from the user's trained copy or the shipped one.

    Raises:
        UserError: neither has a card.
    """
    from deeprobe_bench.api import UserError
    from deeprobe_bench.tasks.othello.zoo import OTHELLO_MINI
    from deeprobe_bench.zoo.card import user_zoo_dir

    for path in (user_zoo_dir() / NAME / "card.json", OTHELLO_MINI.path() / "card.json"):
        if path.exists():
            return json.loads(path.read_text())["task"]["hook_name"]
    raise UserError("othello-mini-random uses othello-mini's hook: run `deeprobe-bench zoo train othello-mini` first")


def main(argv: list[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lm-only", action="store_true", help="train (resume) the language model only")
        parser.add_argument("--steps", type=int, default=None, help="change the total (before the decay began)")
        parser.add_argument("--stop-after-s", type=float, default=None)
        parser.add_argument("--stop-at-step", type=int, default=None,
                            help="stop (after a checkpoint) at this step: the decay's branch point is the total - decay_steps")
        parser.add_argument("--threads", type=int, default=None,
                            help="torch threads (default: the recipe's 2; 1 is faster on a loaded machine); not part of the run's key")
        parser.add_argument("--model", default=NAME, choices=[NAME, RANDOM_NAME])
        parser.add_argument("--probe-checkpoint", default=None, metavar="LM_SAFETENSORS",
                            help="print the card's probes of every layer for a work directory's checkpoint, as JSON")
        parser.add_argument("--probe-train-games", type=int, default=PROBE_TRAIN_GAMES)

    args, recipe, parser = recipe_args(__doc__.splitlines()[0], FULL, TINY, argv, out_required=False, options=options)
    if args.steps:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    if args.threads:
        recipe = dataclasses.replace(recipe, threads=args.threads)
    if args.probe_checkpoint:
        sys.stdout.write(json.dumps(probe_checkpoint(args.probe_checkpoint, recipe, args.seed, args.probe_train_games)) + "\n")
    elif args.lm_only:
        _, stats = train_lm(recipe, args.seed, args.stop_after_s, keep_steps=not args.steps, stop_at_step=args.stop_at_step)
        logger.info("done: %s", json.dumps({k: v for k, v in stats.items() if k != "learning_curve"}))
        logger.info("recipe %s", json.dumps(asdict(recipe)))
    elif args.out is None:
        parser.error("--out is required unless --lm-only")
    elif args.model == RANDOM_NAME:
        train_random(args.out, args.seed, args.tiny, recipe=recipe)
    else:
        train(args.out, args.seed, args.tiny, recipe=recipe)


if __name__ == "__main__":
    main()
