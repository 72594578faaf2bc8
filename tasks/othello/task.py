"""The ``othello`` task: Othello board state (Karvonen et al. 2024; Li et al. 2023). Definitions: README.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import FeatureSet, Metric, TaskData, UserError
from deeprobe_bench.tasks.boardgame import BSP, BoardGameConfig, BoardGameTask, EvalContext

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
    name = "othello"
    description = "Othello board state (Karvonen et al. 2024): board reconstruction, coverage, causal edits"
    version = "1"
    Config = OthelloConfig
    primary_metric = "reconstruction"
    default_model = "othello-mini"

    size: int = 8

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

    coords = features.meta.get("hook_coordinates")
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
    """Flip one stone's owner along the method's features and check the model's legal-move predictions.

    For test game ``g`` (the first ``n``), a move index ``p >= min_move`` and a stone on square ``s`` are
    drawn (seeded) among those whose flip (mine <-> theirs) changes the set of legal next moves and
    leaves it non-empty. With ``P_s`` the projector onto the span of the features tagged (reconstruction
    tagging, label split, best threshold) ``s:mine`` or ``s:theirs``, and ``mu_X`` the mean activation at
    the hook of label-split positions where ``s`` is ``X``, the activation at position ``p`` becomes
    ``x + P_s (mu_Y - mu_X)`` (X the current owner, Y the other). The edit succeeds iff the model's top-n
    next moves (n = number of legal moves of the edited board) are exactly the edited board's legal moves.

    Returns:
        ``success`` (fraction), its stderr, ``clean`` (unedited model vs the original board: the ceiling),
        ``null`` (unedited model vs the edited board: the floor), ``squares_with_features`` (of 64), or
        None when the feature directions do not live in the hook's activation space.
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
    if features.meta.get("hook_coordinates") is None and features.directions.shape[1] != d_hook:
        return None
    label_lab = data.extra["splits"]["label"].labels
    games = split.games[: min(n, split.n_games)]
    ctxlen = odata.context(size)
    rep = engine.replay(games[:, :ctxlen], size)
    rng = np.random.default_rng(12345)
    rows = []  # (game, p, square, edited own, edited opp, original legal)
    for g in range(len(games)):
        valid_p = np.flatnonzero(rep["valid"][g])
        valid_p = valid_p[valid_p >= min_move]
        rng.shuffle(valid_p)
        for p in valid_p[:8]:
            black, white = rep["black"][g, p], rep["white"][g, p]
            own, opp = (white, black) if p % 2 == 0 else (black, white)
            stones = np.flatnonzero(engine.bits_to_bool(np.array([own | opp], dtype=np.uint64), size)[0])
            bits = np.uint64(1) << stones.astype(np.uint64)
            mine = (bits & own) != 0
            new_own = np.where(mine, own & ~bits, own | bits)
            new_opp = np.where(mine, opp | bits, opp & ~bits)
            legal0 = engine.legal_moves(np.array([own], dtype=np.uint64), np.array([opp], dtype=np.uint64), size)[0]
            legal1 = engine.legal_moves(new_own, new_opp, size)
            ok = np.flatnonzero((legal1 != legal0) & (legal1 != 0))
            if len(ok):
                j = ok[rng.integers(len(ok))]
                rows.append((g, int(p), int(stones[j]), bool(mine[j]), int(legal0), int(legal1[j])))
                break
    if not rows:
        return {"success": 0.0, "success_stderr": None, "n": 0}
    tags = ctx.tags  # f c
    cols = task.columns()
    mine_cols, theirs_cols = cols["mine"], cols["theirs"]
    bases: dict[int, Any] = {}
    for s in range(nsq):
        idx = torch.nonzero(tags[:, mine_cols[s]] | tags[:, theirs_cols[s]]).flatten().tolist()
        if idx:
            bases[s] = _basis(features, idx, d_hook)
    deltas = torch.zeros(len(rows), d_hook)
    for r, (_, _, s, was_mine, _, _) in enumerate(rows):
        if s not in bases:
            continue
        m_mine = label_lab[:, mine_cols[s]]
        m_theirs = label_lab[:, theirs_cols[s]]
        if not m_mine.any() or not m_theirs.any():
            continue
        mu_mine, mu_theirs = raw_label[m_mine].mean(0), raw_label[m_theirs].mean(0)
        diff = (mu_theirs - mu_mine) if was_mine else (mu_mine - mu_theirs)
        b = bases[s]
        deltas[r] = (diff @ b.T) @ b
    g_idx = torch.tensor([r[0] for r in rows])
    p_idx = torch.tensor([r[1] for r in rows])
    tokens = split.tokens[g_idx]

    def edit(act, hook):  # act: batch pos d
        act = act.clone()
        act[torch.arange(len(rows)), p_idx] += deltas.to(act.dtype)
        return act

    sq_of_tok = torch.from_numpy(odata.token_to_square(size))
    with torch.no_grad():
        clean_logits = subject.model(tokens)[torch.arange(len(rows)), p_idx]
        edit_logits = subject.model.run_with_hooks(tokens, fwd_hooks=[(hook, edit)])[torch.arange(len(rows)), p_idx]

    def exact(logits: Any, legal_bits: list[int]) -> Any:
        legal = torch.from_numpy(engine.bits_to_bool(np.array(legal_bits, dtype=np.uint64), size))  # r sq
        out = torch.zeros(len(rows), dtype=torch.bool)
        logits = logits.clone()
        logits[:, 0] = float("-inf")  # pad is never a move
        for i in range(len(rows)):
            k = int(legal[i].sum())
            top = sq_of_tok[logits[i].topk(k).indices]
            out[i] = bool(legal[i][top].all())
        return out

    success = exact(edit_logits, [r[5] for r in rows]).float()
    clean = exact(clean_logits, [r[4] for r in rows]).float()
    null = exact(clean_logits, [r[5] for r in rows]).float()
    n_rows = len(rows)
    return {
        "success": float(success.mean()),
        "success_stderr": float(success.std(unbiased=True) / n_rows**0.5) if n_rows > 1 else None,
        "clean": float(clean.mean()),
        "null": float(null.mean()),
        "n": n_rows,
        "squares_with_features": len(bases),
        "edited_with_features": int(sum(1 for r in rows if r[2] in bases)),
        "hook_name": hook,
        "edit": "x + P_s (mu_Y - mu_X) at one position; success = top-n moves equal the edited board's legal moves",
    }
