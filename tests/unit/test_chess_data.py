"""Chess data: Chess-GPT tokens, random games, board states at the '.' positions, the paper's masking."""

from __future__ import annotations

import chess
import numpy as np
import pytest

from deeprobe_bench.tasks.chess import data


def _cls(symbol: str) -> int:
    return data.PIECE_SYMBOLS.index(symbol)


def _sq(name: str) -> int:
    return chess.parse_square(name)


def _game(text: str) -> tuple[str, list[str]]:
    """A hand-written game: its text and UCI moves (replayed from the SAN in the text)."""
    board, moves = chess.Board(), []
    for token in text[1:].split():
        san = token.split(".")[-1]
        if san:
            moves.append(board.push_san(san).uci())
    return text, moves


def test_tokens_are_chess_gpt_ids():
    tokens, lengths = data.encode([";1.e4 e5", ";1.Nf3"])
    assert tokens[0].tolist() == [15, 6, 4, 27, 9, 0, 27, 10]
    assert tokens[1].tolist() == [15, 6, 4, 19, 28, 8, data.PAD_ID, data.PAD_ID]
    assert lengths.tolist() == [8, 6]
    assert data.decode(tokens[0]) == ";1.e4 e5"
    assert len(data.VOCAB) == 32 and len(set(data.VOCAB)) == 32


def test_unknown_character_raises():
    with pytest.raises(ValueError, match="vocabulary"):
        data.encode([";1.e4 e5 {comment}"])


def test_hf_tokenizer_matches_encode():
    tok = data.char_tokenizer()
    assert len(tok) == 32 and tok.bos_token_id == data.BOS_ID and tok.pad_token_id == data.PAD_ID
    ids = tok(["1.e4 e5 2.Nf3 Nc6"], add_special_tokens=False)["input_ids"][0]
    assert [data.BOS_ID] + ids == data.encode([";1.e4 e5 2.Nf3 Nc6"])[0][0].tolist()


def test_random_games_are_deterministic_legal_and_cut():
    a = data.random_game(3, 7)
    assert a == data.random_game(3, 7)
    assert a != data.random_game(3, 8) and a != data.random_game(4, 7) and a != data.random_game(3, 7, "eval")
    text, moves = a
    assert text.startswith(";1.") and len(text) <= data.N_CHARS
    # replaying the UCI moves with python-chess writes the same movetext
    board, parts = chess.Board(), []
    for uci in moves:
        move = chess.Move.from_uci(uci)
        assert move in board.legal_moves
        san = board.san(move)
        parts.append(f"{board.fullmove_number}.{san}" if board.turn == chess.WHITE else san)
        board.push(move)
    assert (";" + " ".join(parts))[: len(text)] == text
    short, _ = data.random_game(3, 7, n_chars=40)
    assert short == text[:40]


def test_dot_positions():
    assert data.dot_positions(";1.e4 e5 2.Nf3 Nc6 3.") == [2, 10, 20]
    text = ";" + " ".join(f"{k}.a3 a6" for k in range(1, 40))
    dots = data.dot_positions(text)
    assert len(dots) == data.MAX_POSITIONS and all(text[i] == "." for i in dots)
    assert all(i < 256 for i in data.dot_positions(text, max_positions=100))


def test_known_game_board_at_dots():
    text, moves = _game(";1.e4 e5 2.Nf3 Nc6 3.")
    s = data.board_states([text], [moves])
    assert s.pos.tolist() == [2, 10, 20] and s.move_number.tolist() == [1, 2, 3]
    assert (s.pieces[0] == data.INITIAL_BOARD).all()  # before White's first move
    last = s.pieces[2]
    assert last[_sq("e4")] == _cls("P") and last[_sq("e5")] == _cls("p")
    assert last[_sq("f3")] == _cls("N") and last[_sq("c6")] == _cls("n")
    assert last[_sq("e2")] == 0 and last[_sq("g1")] == 0 and last[_sq("b8")] == 0
    assert (last != 0).sum() == 32
    assert not s.check.any() and s.castling.all()
    legal = s.legal_to[2]
    assert legal[_sq("e5")]  # Nf3xe5
    assert legal[_sq("g1")] and legal[_sq("e2")] and legal[_sq("a3")]
    assert not legal[_sq("e4")] and not legal[_sq("a5")]


def test_check_and_castling_rights():
    text, moves = _game(";1.f3 e5 2.Kf2 Qh4+ 3.")
    s = data.board_states([text], [moves])
    assert s.check.tolist() == [False, False, True]
    assert s.castling[2].tolist() == [False, False, True, True]  # the white king moved


def test_masking_start_position_has_no_positive():
    bsp = data.piece_bsp(data.INITIAL_BOARD[None])
    assert bsp.shape == (1, 64, 13) and not bsp.any()
    unmasked = data.piece_bsp(data.INITIAL_BOARD[None], masked=False)
    assert unmasked.sum() == 64 and unmasked[0, _sq("e4"), 0]
    assert data.initial_mask().sum() == 64


def test_masking_after_moves():
    text, moves = _game(";1.e4 e5 2.Nf3 Nc6 3.")
    bsp = data.piece_bsp(data.board_states([text], [moves]).pieces)[2]
    assert bsp[_sq("e4"), _cls("P")] and bsp[_sq("f3"), _cls("N")]  # moved pieces count
    assert bsp[_sq("e2"), 0] and bsp[_sq("g1"), 0]  # squares they left are empty: counted
    assert not bsp[_sq("d2")].any()  # a pawn still on its starting square: no positive at all
    assert not bsp[_sq("d4")].any()  # an empty square that was empty at the start: none either
    assert bsp.sum() == 8  # 4 moved pieces + 4 vacated squares


def test_piece_back_on_its_start_square_is_masked():
    text, moves = _game(";1.Nf3 Nf6 2.Ng1 Ng8 3.")
    s = data.board_states([text], [moves])
    assert (s.pieces[2] == data.INITIAL_BOARD).all()
    assert not data.piece_bsp(s.pieces[2:]).any()
    assert data.piece_bsp(s.pieces[1:2]).sum() == 4  # after 1.Nf3 Nf6: two knights out, two squares left


def test_batch_matches_single_games():
    games = [data.random_game(0, i) for i in range(6)]
    batch = data.board_states([g[0] for g in games], [g[1] for g in games])
    for i, (text, moves) in enumerate(games):
        one = data.board_states([text], [moves])
        rows = batch.game == i
        assert np.array_equal(batch.pieces[rows], one.pieces)
        assert np.array_equal(batch.legal_to[rows], one.legal_to)
        assert np.array_equal(batch.pos[rows], one.pos)


def test_generate_games_dataset_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPROBE_CACHE", str(tmp_path))
    ds = data.generate_games(5, 1, "task", n_chars=64)
    assert ds.column_names == ["text", "moves", "index"] and len(ds) == 5
    assert ds[2]["text"] == data.random_game(1, 2, "task", 64)[0]
    assert any((tmp_path / "chess").iterdir())
    again = data.generate_games(5, 1, "task", n_chars=64)
    assert again["text"] == ds["text"]
    tail = data.generate_games(2, 1, "task", n_chars=64, start=3, cache=False)
    assert tail["text"] == ds["text"][3:]


# --------------------------------------------------------------------------- uci-moves


def test_the_move_vocabulary_holds_every_move_of_random_games_and_nothing_twice():
    assert len(data.UCI_MOVES) == len(set(data.UCI_MOVES)) == 1968  # 1,792 line and knight moves + 176 promotions
    assert data.MOVE_VOCAB[: 3] == ("<pad>", "<bos>", "<unk>") and data.MOVE_ID["e2e4"] >= 3
    vocab = set(data.UCI_MOVES)
    for i in range(60):
        assert set(data.random_game(5, i, n_plies=40, text=False)[1]) <= vocab
    board = chess.Board("8/P7/8/8/8/8/8/k6K w - - 0 1")  # promotions to every piece are moves of the vocabulary
    assert {m.uci() for m in board.legal_moves if m.promotion} == {"a7a8q", "a7a8r", "a7a8b", "a7a8n"} <= vocab


def test_a_game_cut_by_plies_is_the_game_cut_by_characters_and_text_is_optional():
    text, moves = data.random_game(3, 7, n_plies=30)
    assert len(moves) == 30 and data.random_game(3, 7, n_plies=30, text=False) == ("", moves)
    _, by_chars = data.random_game(3, 7)
    n = min(len(moves), len(by_chars))
    assert moves[:n] == by_chars[:n]
    _, board_moves = _game(text)  # the text spells the same 30 moves
    assert board_moves == moves


def test_move_tokens_are_bos_then_one_id_per_move_and_the_tokenizer_agrees():
    tokens, lengths = data.encode_moves([["e2e4", "e7e5"], ["g1f3"]])
    e4, e5, nf3 = (data.MOVE_ID[m] for m in ("e2e4", "e7e5", "g1f3"))
    assert tokens.tolist() == [[data.MOVE_BOS_ID, e4, e5], [data.MOVE_BOS_ID, nf3, data.MOVE_PAD_ID]]
    assert lengths.tolist() == [3, 2]
    assert data.move_tokenizer()("e2e4 e7e5")["input_ids"] == [e4, e5]
    with pytest.raises(ValueError, match="not a UCI move"):
        data.encode_moves([["e2e4", "Nf3"]])


def test_uci_positions_are_black_moves_and_their_boards_are_the_boards_after_those_plies():
    _, moves = data.random_game(2, 1, n_plies=40)
    assert data.measured_positions("uci-moves", "", 40) == [(2 * k, 2 * k) for k in range(1, 21)]
    assert data.measured_positions("uci-moves", "", 40, window=9) == [(2, 2), (4, 4), (6, 6), (8, 8)]
    assert data.measured_positions("uci-moves", "", 5) == [(2, 2), (4, 4)]
    states = data.board_states([""], [moves], fmt="uci-moves")
    assert states.pos.tolist() == list(range(2, 41, 2)) and states.move_number.tolist() == list(range(2, 22))
    board = chess.Board()
    for m in moves[:14]:
        board.push_uci(m)
    row = states.pieces[6]  # after 14 plies: Black's 7th move
    assert all(row[sq] == _cls(p.symbol()) for sq, p in board.piece_map().items())
    assert int((row != 0).sum()) == len(board.piece_map()) and board.turn == chess.WHITE
    with pytest.raises(ValueError, match="unknown chess format"):
        data.measured_positions("san", "", 4)
