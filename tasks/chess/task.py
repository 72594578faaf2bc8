"""The ``chess`` task: chess board state (Karvonen et al. 2024, arXiv 2408.00113). Definitions: README.md."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deeprobe_bench.api import TaskData, UserError
from deeprobe_bench.kits.boardgame import BSP, BoardGameConfig, BoardGameTask

logger = logging.getLogger(__name__)


@dataclass
class ChessConfig(BoardGameConfig):
    """Options of the ``chess`` task (``-T key=value``); the shared ones are :class:`BoardGameConfig`'s.

    Attributes:
        n_train: train games (5,000 rows: a game gives 20 positions); the ``probe`` method fits one
            logistic regression per concept (900) on them, so this bounds its run time.
        n_label, n_test: games of the label and test splits; 500 each (10,000 rows each), half the
            paper's 1000 to fit the CPU budget (README).
        n_chars: characters per game text (the cut) of a ``pgn-chars`` model; default the model's context up
            to 256. A ``uci-moves`` model reads 40 plies (its 20 positions), or what its context holds.
    """

    n_train: int = 250
    n_label: int = 500
    n_test: int = 500
    n_chars: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_chars is not None and self.n_chars < 8:
            raise ValueError("n_chars must be at least 8")


def piece_columns() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(scored, masked)`` (square, class) elements of the piece-on-square BSP.

    ``masked`` are the 64 elements of the start position (always False under the paper's masking:
    :func:`deeprobe_bench.tasks.chess.data.initial_mask`); ``scored`` the other 768.
    """
    from deeprobe_bench.tasks.chess import data

    init = data.initial_mask()
    scored = [(s, c) for s in range(64) for c in range(data.N_PIECE_CLASSES) if not init[s, c]]
    masked = [(s, c) for s in range(64) for c in range(data.N_PIECE_CLASSES) if init[s, c]]
    return scored, masked


def _piece_name(s: int, c: int) -> str:
    from deeprobe_bench.tasks.chess import data

    return f"{data.SQUARE_NAMES[s]}:{'empty' if c == 0 else data.PIECE_SYMBOLS[c]}"


class ChessTask(BoardGameTask):
    """Chess board state at 20 White-to-move positions a game: which piece stands on each square and the
    other board-state properties (BSPs) of Karvonen et al. 2024. A Chess-GPT character model is measured at
    the '.' of each move number; a model reading one token per move (``uci-moves``) at Black's moves.

    Scores board ``reconstruction`` and ``coverage`` (range [0, 1]; the paper's variants beside them) of a
    feature set against the BSP labels of held-out games (``deeprobe_bench.kits.boardgame``). The
    definitions and the zoo model are in this folder's README.
    """

    name = "chess"
    description = "chess board state (Karvonen et al. 2024): board reconstruction and coverage at White-to-move positions"
    version = "1"
    Config = ChessConfig
    default_model = "chess-mini"

    n_chars: int = 256
    """Tokens of each game the model reads (characters of ``pgn-chars``; ``<bos>`` and the plies of
    ``uci-moves``): :meth:`prepare` sets it from ``-T n_chars`` or the model's context."""
    fmt: str = "pgn-chars"
    """The model's format (``data.FORMATS``): :meth:`prepare` reads it from the card (``task.format``), else
    from the vocabulary."""

    # ------------------------------------------------------------------ game

    def bsps(self) -> list[BSP]:
        from deeprobe_bench.tasks.chess import data

        scored, masked = piece_columns()
        return [
            BSP("piece", tuple(_piece_name(s, c) for s, c in scored)),
            BSP("piece_initial", tuple(_piece_name(s, c) for s, c in masked), masked=True),
            BSP("check", ("check",), primary=False),
            BSP("castling", tuple(f"castling:{n}" for n in data.CASTLING_NAMES), primary=False),
            BSP("legal", tuple(f"{n}:legal" for n in data.SQUARE_NAMES), primary=False),
        ]

    def paper_coverage(self) -> tuple[list[int], int]:
        """The paper's coverage (``board_to_piece_masked_blank_and_initial_state`` in
        adamkarvonen/SAE_BoardGameEval): the 12 piece classes of every square, blank channel and pieces on
        their start squares masked (counted as 0), denominator 64 x 12 = 768."""
        from deeprobe_bench.tasks.chess import data

        scored, _ = piece_columns()
        cols = [i for i, (_, c) in enumerate(scored) if c != 0]  # piece columns come first in bsps()
        return cols, 64 * (data.N_PIECE_CLASSES - 1)

    def make_games(self, n: int, seed: int) -> Any:
        from deeprobe_bench.tasks.chess import data

        if self.fmt == "uci-moves":
            return data.generate_games(n, seed, "task", n_plies=self.n_chars - 1)
        return data.generate_games(n, seed, "task", self.n_chars)

    def encode(self, subject: Any, games: Any) -> tuple[Any, Any]:
        import torch

        from deeprobe_bench.tasks.chess import data

        tokens, _ = data.encode_games(games, self.fmt, self.n_chars)
        measured = torch.zeros(tokens.shape, dtype=torch.bool)
        for g, (text, moves) in enumerate(zip(games["text"], games["moves"], strict=True)):
            measured[g, [pos for pos, _ in data.measured_positions(self.fmt, text, len(moves), self.n_chars)]] = True
        return tokens, measured

    def labels(self, games: Any) -> Any:
        import numpy as np
        import torch

        from deeprobe_bench.tasks.chess import data

        states = data.board_states(list(games["text"]), list(games["moves"]), self.n_chars, fmt=self.fmt)
        onehot = data.piece_bsp(states.pieces, masked=False)  # rows 64 13
        scored, masked = piece_columns()
        s_idx, c_idx = (np.asarray(x) for x in zip(*scored, strict=True))
        piece = onehot[:, s_idx, c_idx]
        initial = np.zeros((len(states), len(masked)), dtype=bool)  # masked: never a positive
        out = np.concatenate([piece, initial, states.check[:, None], states.castling, states.legal_to], axis=1)
        return torch.from_numpy(out)

    def prepare(self, subject: Any, seed: int, limit: int | None = None) -> TaskData:
        from deeprobe_bench.tasks.chess import data

        cfg = subject.model.cfg
        vocab = {"pgn-chars": len(data.VOCAB), "uci-moves": len(data.MOVE_VOCAB)}  # each format's d_vocab
        stated = (getattr(subject, "card", None) or {}).get("task", {}).get("format")
        self.fmt = stated or next((fmt for fmt, n in vocab.items() if n == cfg.d_vocab), "")
        if vocab.get(self.fmt) != cfg.d_vocab:
            raise UserError(
                f"model {subject.name} (vocab {cfg.d_vocab}) reads neither Chess-GPT's characters (vocab "
                f"{len(data.VOCAB)}) nor UCI moves (vocab {len(data.MOVE_VOCAB)})"
            )
        if self.fmt == "uci-moves":
            if self.config.n_chars is not None:
                raise UserError(f"-T n_chars applies to character models; {subject.name} reads UCI moves")
            self.n_chars = min(int(cfg.n_ctx), 2 * data.MAX_POSITIONS + 1)
        else:
            self.n_chars = self.config.n_chars or min(int(cfg.n_ctx), data.BSP_WINDOW)
        if self.n_chars > cfg.n_ctx:
            raise UserError(f"-T n_chars={self.n_chars} exceeds model {subject.name}'s context of {cfg.n_ctx}")
        out = super().prepare(subject, seed, limit)
        out.info["format"] = self.fmt
        out.info["n_chars" if self.fmt == "pgn-chars" else "n_tokens"] = self.n_chars
        out.info["positions"] = (
            f"the '.' of each move number (White to move), at most {data.MAX_POSITIONS} per game, "
            f"first {data.BSP_WINDOW} characters" if self.fmt == "pgn-chars" else
            f"the token of Black's k-th move (the board after 2k plies, White to move), k = 1 .. {data.MAX_POSITIONS}"
        )  # fmt: skip
        out.info["masking"] = (
            "piece-on-square elements of the start position are never positive (SAE_BoardGameEval "
            "mask_initial_board_states); they form the masked BSP family piece_initial"
        )
        return out
