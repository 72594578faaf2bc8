"""The ``othello`` task: Othello board state (Karvonen et al. 2024; Li et al. 2023). Definitions: README.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import FeatureSet, Metric, TaskData, UserError
from deeprobe_bench.kits.boardgame import BSP, BoardGameConfig, BoardGameTask, EvalContext

logger = logging.getLogger(__name__)


@dataclass
class OthelloConfig(BoardGameConfig):
    """Options of the ``othello`` task (``-T key=value``); the shared ones are :class:`BoardGameConfig`'s.

    Attributes:
        n_causal: interventions of the causal metric (one per test game, the first ``n_causal`` games).
        causal_min_move: earliest move index (0-based) at which an intervention is made.
    """

    n_causal: int = 500
    causal_min_move: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_causal < 0 or self.causal_min_move < 0:
            raise ValueError("n_causal and causal_min_move must be >= 0")


class OthelloTask(BoardGameTask):
    """Othello board state after each move (Li et al. 2023; Karvonen et al. 2024): mine / theirs / empty
    per square, the legal moves and the other board-state properties (BSPs).

    Scores board ``reconstruction`` and ``coverage`` (range [0, 1]) as the chess task does, plus
    ``causal_success``: the fraction of edits (a stone's owner flipped along the features tagged for its
    square, Makelov et al. 2024's mean-difference edit) after which every newly legal move gains and every
    newly illegal move loses log-probability. Definitions and the zoo model: this folder's README.
    """

    name = "othello"
    description = "Othello board state (Karvonen et al. 2024): board reconstruction, coverage, causal edits"
    version = "1"
    Config = OthelloConfig
    default_model = "othello-mini"

    size: int = 8
    """The board's side: :meth:`prepare` sets it from the subject's card (``task.board_size``; 8, the
    paper's board, for a card that does not say)."""

    # ------------------------------------------------------------------ game

    def bsps(self) -> list[BSP]:
        from deeprobe_bench.tasks.othello import engine

        names = engine.square_names(self.size)
        playable = engine.playable_squares(self.size)
        return [
            BSP("mine", tuple(f"{n}:mine" for n in names)),
            BSP("theirs", tuple(f"{n}:theirs" for n in names)),
            BSP("empty", tuple(f"{n}:empty" for n in names), masked=True),
            BSP("legal", tuple(f"{names[s]}:legal" for s in playable), primary=False),
        ]

    def make_games(self, n: int, seed: int) -> Any:
        import numpy as np

        from deeprobe_bench.tasks.othello import data

        return np.asarray(data.games(n, self.size, seed)["moves"], dtype=np.int64)

    def encode(self, subject: Any, games: Any) -> tuple[Any, Any]:
        import torch

        from deeprobe_bench.tasks.othello import data

        ctx = data.context(self.size)
        tokens = torch.from_numpy(data.moves_to_tokens(games, self.size)[:, :ctx])
        return tokens, torch.from_numpy(games[:, :ctx] >= 0)

    def labels(self, games: Any) -> Any:
        import numpy as np
        import torch

        from deeprobe_bench.tasks.othello import data, engine

        ctx = data.context(self.size)
        props = data.bsp(games[:, :ctx], self.size)
        valid = props["valid"]
        board = props["board"][valid]  # rows sq
        legal = props["legal"][valid][:, engine.playable_squares(self.size)]
        out = np.concatenate([board == data.MINE, board == data.THEIRS, board == data.EMPTY, legal], axis=1)
        return torch.from_numpy(out)

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        from deeprobe_bench.tasks.othello import data

        size = int(subject.card.get("task", {}).get("board_size", 8))
        cfg = subject.model.cfg
        if cfg.d_vocab != data.vocab_size(size) or cfg.n_ctx < data.context(size):
            raise UserError(
                f"model {subject.name} (vocab {cfg.d_vocab}, context {cfg.n_ctx}) is not an Othello-GPT model for a "
                f"{size}x{size} board (vocab {data.vocab_size(size)}, context {data.context(size)})"
            )
        self.size = size
        out = super().prepare(subject, seed, limit)
        out.info["board_size"] = size
        out.info["positions"] = "every move (after move i, the player to move plays move i + 1)"
        return out

    # ------------------------------------------------------------------ causal metric

    def extra_metrics(self, data: TaskData, features: FeatureSet, ctx: EvalContext) -> dict[str, Any]:
        """The causal metric (README, "Causal metric"): fraction of successful board edits."""
        if self.config.n_causal == 0:
            return {}
        res = causal_edits(self, data, features, ctx, self.config.n_causal, self.config.causal_min_move)
        if res is None:
            return {"_details": {"causal": {"skipped": "feature directions do not live in the hook's space"}}}
        return {"causal_success": Metric(res["success"], stderr=res["success_stderr"]), "_details": {"causal": res}}


def _basis(features: FeatureSet, idx: list[int], d_hook: int) -> Any:
    """Orthonormal rows spanning the features ``idx`` in the hook's activation space (``k x d_hook``)."""
    import torch

    coords = features.coordinates
    if coords is not None:
        out = torch.zeros(len(idx), d_hook)
        out[torch.arange(len(idx)), torch.as_tensor([coords[i] for i in idx], dtype=torch.long)] = 1.0
        return out
    d = features.directions[torch.as_tensor(idx, dtype=torch.long)].float()
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    return vh[s > 1e-5 * s.max()] if len(s) else d[:0]


def causal_edits(
    task: OthelloTask, data: TaskData, features: FeatureSet, ctx: EvalContext, n: int, min_move: int
) -> dict[str, Any] | None:
    """Flip one stone's owner along the method's features and check the model's legal-move logits.

    Candidates: for every test game, two move indices ``p >= min_move`` and, at each, a stone on square
    ``s`` whose flip (mine <-> theirs) changes the set of legal next moves (L0 -> L1, non-empty) are
    drawn (seeded); the first ``n`` are used. With ``P_s`` the projector onto the span of the features
    tagged (reconstruction tagging, label split, best threshold) ``s:mine`` or ``s:theirs``, and ``mu_X``
    the mean activation at the hook of label-split positions where ``s`` is ``X``, the activation at
    position ``p`` becomes ``x + P_s (mu_Y - mu_X)`` (X the current owner, Y the other). The edit
    succeeds iff the log-probability of every newly legal move (L1 - L0) goes up and that of every newly
    illegal move (L0 - L1) goes down. A method without a feature tagged for ``s`` changes nothing: fail.

    Returns:
        ``success`` (fraction), its stderr, the mean log-probability changes of newly legal / illegal
        moves, ``exact_after_edit`` / ``exact_without_edit`` (top-|L1| moves == L1 with / without the
        edit), counts; or None when the feature directions do not live in the hook's activation space.
    """
    import numpy as np
    import torch

    from deeprobe_bench.tasks.othello import data as odata
    from deeprobe_bench.tasks.othello import engine

    size = task.size
    nsq = size * size
    split = data.extra["splits"]["test"]
    subject = data.extra["subject"]
    hook = features.hook_name
    raw_label = task.acts(data, "label", hook)  # rows d_hook
    d_hook = raw_label.shape[1]
    if features.coordinates is None and features.directions.shape[1] != d_hook:
        return None
    ctxlen = odata.context(size)
    games = split.games[:, :ctxlen]
    rep = engine.replay(games, size)
    rng = np.random.default_rng(12345)
    # two random move indices per game among the played ones >= min_move
    valid = rep["valid"].copy()
    valid[:, :min_move] = False
    g_all = np.repeat(np.arange(len(games)), 2)
    score = np.where(valid[g_all], rng.random((len(g_all), ctxlen)), -1.0)
    p_all = score.argmax(1)
    ok_p = valid[g_all, p_all]
    g_all, p_all = g_all[ok_p], p_all[ok_p]
    black, white = rep["black"][g_all, p_all], rep["white"][g_all, p_all]
    white_to_move = p_all % 2 == 0
    own, opp = np.where(white_to_move, white, black), np.where(white_to_move, black, white)
    legal0 = engine.legal_moves(own, opp, size)
    bits = np.uint64(1) << np.arange(nsq, dtype=np.uint64)  # sq
    stone = ((own | opp)[:, None] & bits[None, :]) != 0  # c sq
    mine = (own[:, None] & bits[None, :]) != 0
    own1 = np.where(mine, own[:, None] & ~bits[None, :], own[:, None] | bits[None, :])
    opp1 = np.where(mine, opp[:, None] | bits[None, :], opp[:, None] & ~bits[None, :])
    legal1 = engine.legal_moves(own1.ravel(), opp1.ravel(), size).reshape(own1.shape)
    good = stone & (legal1 != legal0[:, None]) & (legal1 != 0)
    pick = np.where(good, rng.random(good.shape), -1.0).argmax(1)
    has = good.any(1)
    cand = np.flatnonzero(has)
    if len(cand) == 0:
        return {"success": 0.0, "success_stderr": None, "n": 0}
    g_c, p_c, s_c = g_all[cand], p_all[cand], pick[cand]
    was_mine = mine[cand, s_c]
    l0_c, l1_c = legal0[cand], legal1[cand, s_c]
    tokens = split.tokens[torch.from_numpy(g_c)]
    p_t = torch.from_numpy(p_c)
    sq_of_tok = torch.from_numpy(odata.token_to_square(size))

    def exact(logits: Any, legal_bits: np.ndarray) -> Any:
        """Top-|L| predicted moves == L, per row (``logits: "r vocab"``)."""
        legal = torch.from_numpy(engine.bits_to_bool(legal_bits, size))  # r sq
        logits = logits.clone()
        logits[:, 0] = float("-inf")  # pad is never a move
        k = legal.sum(1)
        order = sq_of_tok[logits.argsort(dim=1, descending=True)]  # r vocab: squares by rank (-1 = pad)
        in_legal = legal.gather(1, order.clamp(min=0)) & (order >= 0)
        rank = torch.arange(order.shape[1]).unsqueeze(0)
        return ((in_legal & (rank < k.unsqueeze(1))).sum(1) == k).cpu()

    keep = np.arange(min(n, len(cand)))
    # class means per square (label split) and the tagged subspace per square
    lab = data.extra["splits"]["label"].labels.float()
    cols = task.columns()
    mine_cols, theirs_cols = cols["mine"], cols["theirs"]
    mu_mine = (lab[:, mine_cols].T @ raw_label) / lab[:, mine_cols].sum(0).clamp(min=1).unsqueeze(1)  # sq d
    mu_theirs = (lab[:, theirs_cols].T @ raw_label) / lab[:, theirs_cols].sum(0).clamp(min=1).unsqueeze(1)
    tags = ctx.tags  # f c
    bases: dict[int, Any] = {}
    for s in range(nsq):
        idx = torch.nonzero(tags[:, mine_cols[s]] | tags[:, theirs_cols[s]]).flatten().tolist()
        if idx:
            bases[s] = _basis(features, idx, d_hook)
    deltas = torch.zeros(len(keep), d_hook)
    for r, c in enumerate(keep):
        s = int(s_c[c])
        if s in bases:
            diff = (mu_theirs[s] - mu_mine[s]) if was_mine[c] else (mu_mine[s] - mu_theirs[s])
            deltas[r] = (diff @ bases[s].T) @ bases[s]
    kt = torch.from_numpy(keep)
    tok_k, p_k = tokens[kt], p_t[kt]
    ar_k = torch.arange(len(keep))

    def edit(act, hook):  # act: batch pos d
        act = act.clone()
        act[ar_k, p_k] += deltas.to(act.dtype)
        return act

    with torch.no_grad():
        clean_logits = subject.model(tok_k)[ar_k, p_k]
        edit_logits = subject.model.run_with_hooks(tok_k, fwd_hooks=[(hook, edit)])[ar_k, p_k]
    tok_of_sq = torch.from_numpy(odata.square_to_token(size))
    playable = tok_of_sq >= 0

    def move_mask(bits_: np.ndarray) -> Any:  # r vocab: the legal moves as tokens
        sq = torch.from_numpy(engine.bits_to_bool(bits_, size))
        out = torch.zeros(len(bits_), clean_logits.shape[1], dtype=torch.bool)
        out[:, tok_of_sq[playable]] = sq[:, playable]
        return out

    l0, l1 = move_mask(l0_c[keep]), move_mask(l1_c[keep])
    added, removed = l1 & ~l0, l0 & ~l1
    lp_clean = torch.log_softmax(clean_logits[:, 1:], -1)
    lp_edit = torch.log_softmax(edit_logits[:, 1:], -1)
    change = lp_edit - lp_clean  # r moves
    added, removed = added[:, 1:], removed[:, 1:]
    right = torch.where(added, change > 0, True).all(1) & torch.where(removed, change < 0, True).all(1)
    success = right.float()
    n_rows = len(keep)
    return {
        "success": float(success.mean()),
        "success_stderr": float(success.std(unbiased=True) / n_rows**0.5) if n_rows > 1 else None,
        "mean_logprob_change_newly_legal": float(change[added].mean()) if added.any() else None,
        "mean_logprob_change_newly_illegal": float(change[removed].mean()) if removed.any() else None,
        "exact_after_edit": float(exact(edit_logits, l1_c[keep]).float().mean()),
        "exact_without_edit": float(exact(clean_logits, l1_c[keep]).float().mean()),
        "n": n_rows,
        "n_candidates": len(cand),
        "squares_with_features": len(bases),
        "edited_with_features": int(sum(1 for c in keep if int(s_c[c]) in bases)),
        "hook_name": hook,
        "edit": "x + P_s (mu_Y - mu_X) at one position; success = newly legal moves up and newly illegal moves down",
    }
