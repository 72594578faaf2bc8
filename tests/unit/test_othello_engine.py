"""The vectorised Othello engine against a plain reference implementation, and the data layer."""

from __future__ import annotations

import numpy as np
import pytest

from deeprobe_bench.tasks.othello import data, engine


def _ref_legal(board: list[list[int]], player: int, size: int) -> set[int]:
    out = set()
    for r in range(size):
        for c in range(size):
            if board[r][c]:
                continue
            for dr, dc in engine.DIRECTIONS:
                rr, cc, n = r + dr, c + dc, 0
                while 0 <= rr < size and 0 <= cc < size and board[rr][cc] == -player:
                    rr, cc, n = rr + dr, cc + dc, n + 1
                if n and 0 <= rr < size and 0 <= cc < size and board[rr][cc] == player:
                    out.add(r * size + c)
                    break
    return out


def _ref_play(board: list[list[int]], player: int, sq: int, size: int) -> None:
    r, c = divmod(sq, size)
    board[r][c] = player
    for dr, dc in engine.DIRECTIONS:
        rr, cc, run = r + dr, c + dc, []
        while 0 <= rr < size and 0 <= cc < size and board[rr][cc] == -player:
            run.append((rr, cc))
            rr, cc = rr + dr, cc + dc
        if run and 0 <= rr < size and 0 <= cc < size and board[rr][cc] == player:
            for a, b in run:
                board[a][b] = player


@pytest.mark.parametrize("size", [6, 8])
def test_games_are_legal_pass_free_and_boards_match_reference(size):
    moves = engine.random_games(40, size, seed=3, batch=64)
    props = data.bsp(moves, size)
    h = size // 2
    for g in range(len(moves)):
        board = [[0] * size for _ in range(size)]
        board[h - 1][h - 1] = board[h][h] = -1  # white
        board[h - 1][h] = board[h][h - 1] = 1  # black
        player = 1
        for i, sq in enumerate(moves[g]):
            if sq < 0:  # early end: nobody can move
                assert not _ref_legal(board, player, size) and not _ref_legal(board, -player, size)
                assert (moves[g, i:] < 0).all()
                break
            assert sq in _ref_legal(board, player, size), "a pass or an illegal move"
            _ref_play(board, player, int(sq), size)
            player = -player
            flat = np.array(board).ravel()
            # relative to the player to move next (`player`)
            assert (props["board"][g, i] == data.MINE).tolist() == (flat == player).tolist()
            assert (props["board"][g, i] == data.THEIRS).tolist() == (flat == -player).tolist()
            assert set(np.flatnonzero(props["legal"][g, i])) == _ref_legal(board, player, size)


def test_passes_are_rejected_and_generation_is_deterministic():
    moves, passed = engine.play_random(512, 8, rng=0)
    assert passed.any() and not passed.all()  # random games do contain passes ...
    kept = engine.random_games(100, 8, seed=0, batch=512)
    assert np.array_equal(kept, moves[~passed][:100])  # ... and exactly those are dropped
    assert np.array_equal(kept, engine.random_games(100, 8, seed=0, batch=512))
    assert not np.array_equal(kept, engine.random_games(100, 8, seed=1, batch=512))


def test_replay_rejects_an_illegal_move():
    moves = engine.random_games(2, 8, seed=0, batch=16)
    moves[1, 0] = 0  # a1 is never legal on the first move
    with pytest.raises(ValueError, match="illegal"):
        engine.replay(moves, 8)


def test_tokens_follow_othello_gpt():
    assert (data.vocab_size(8), data.context(8), data.n_moves(8)) == (61, 59, 60)
    assert (data.vocab_size(6), data.context(6)) == (33, 31)
    table = data.square_to_token(8)
    assert (table[[27, 28, 35, 36]] == -1).all()  # the 4 centre squares have no token
    assert sorted(table[table >= 0]) == list(range(1, 61))
    assert data.token_to_square(8)[table[19]] == 19
    moves = np.array([[19, 18, -1]])
    assert data.moves_to_tokens(moves, 8).tolist() == [[table[19], table[18], 0]]
    assert data.token_names(8)[:2] == ["<pad>", "a1"]


def test_games_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path))
    ds = data.games(20, 6, seed=5)
    assert ds.num_rows == 20 and len(ds[0]["tokens"]) == data.n_moves(6)
    assert any((tmp_path / "othello").iterdir())
    again = data.games(20, 6, seed=5)
    assert again["moves"] == ds["moves"]
    assert np.array_equal(np.asarray(ds["moves"]), engine.random_games(20, 6, seed=5))
