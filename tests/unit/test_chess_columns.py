"""The chess task's game-specific parts (no model): BSP columns, measured positions, labels."""

from __future__ import annotations

import numpy as np
import torch

from deeprobe_bench.tasks.chess import data
from deeprobe_bench.tasks.chess.task import ChessTask, piece_columns


def test_columns_and_masked_family():
    task = ChessTask()
    bsps = {b.name: b for b in task.bsps()}
    assert len(bsps["piece"].concepts) == 768 and bsps["piece"].primary and not bsps["piece"].masked
    assert len(bsps["piece_initial"].concepts) == 64 and bsps["piece_initial"].masked
    assert not bsps["legal"].primary and not bsps["check"].primary and not bsps["castling"].primary
    assert len(task.concepts()) == 768 + 64 + 1 + 4 + 64
    assert "e4:P" in bsps["piece"].concepts and "e2:empty" in bsps["piece"].concepts
    assert "e2:P" in bsps["piece_initial"].concepts and "e4:empty" in bsps["piece_initial"].concepts
    scored, masked = task.primary_columns()
    assert len(scored) == 768 and len(masked) == 64
    assert len(set(piece_columns()[0]) | set(piece_columns()[1])) == 64 * 13


def test_measured_rows_match_labels_and_board():
    task = ChessTask()
    games = data.generate_games(4, 0, "task", cache=False)
    tokens, measured = task.encode(None, games)
    labels = task.labels(games)
    assert tokens.shape == (4, data.N_CHARS) and measured.dtype == torch.bool
    assert labels.shape == (int(measured.sum()), len(task.concepts()))
    # every measured position is a '.' and the first row of each game is the start position
    assert (tokens[measured] == data.DOT_ID).all()
    per_game = measured.sum(1)
    assert (per_game <= data.MAX_POSITIONS).all()
    cols = task.columns()
    first_rows = torch.cumsum(per_game, 0) - per_game
    assert not labels[first_rows][:, cols["piece"]].any()  # start position: nothing moved yet
    assert not labels[:, cols["piece_initial"]].any()  # masked family is never positive
    # legal moves at the start: 20 moves to 16 distinct squares (a3..h4); castling rights all held
    assert labels[first_rows][:, cols["legal"]].sum(1).tolist() == [16] * 4
    assert labels[first_rows][:, cols["castling"]].all()


def test_piece_labels_agree_with_board_states():
    task = ChessTask()
    games = data.generate_games(3, 5, "task", cache=False)
    labels = task.labels(games).numpy()
    states = data.board_states(list(games["text"]), list(games["moves"]))
    masked = data.piece_bsp(states.pieces)  # rows 64 13
    scored, _ = piece_columns()
    cols = task.columns()["piece"]
    for j, (s, c) in zip(cols, scored, strict=True):
        assert np.array_equal(labels[:, j], masked[:, s, c])
