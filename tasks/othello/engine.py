"""Othello on bitboards, vectorised with numpy over a batch of games.

A position of a batch is two ``uint64`` arrays (``black``, ``white``: one bit per square, bit
``r * size + c`` for row ``r`` and column ``c`` counted from the top left). Every operation (legal
moves, flips, a random move) acts on the whole batch at once: the only Python loops are over the 8
directions and the ``size - 2`` steps of a ray, never over games. The board size is a parameter
(``size`` even, 4 <= size <= 8; 8 is standard Othello, 6 the 6x6 variant of alfredclwong/othello-gpt).

Rules (standard Othello): black moves first from the four centre stones (white on d4/e5, black on
d5/e4 in the 8x8 naming of :func:`square_names`); a move must flip at least one line of opponent stones;
a player without a legal move passes; the game ends when neither player can move.

Games containing a pass are rejected by :func:`random_games` (Othello-GPT's no-pass setting, which keeps
the player to move a function of the move number, so "mine / theirs" is exact from the move index):
a game is kept iff every move until the end of the game is played by the alternating player. Games that
end early (neither player can move before the board is full) are kept and padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U64 = np.uint64
# (row step, column step) of the 8 directions.
DIRECTIONS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _check_size(size: int) -> None:
    if size % 2 or not 4 <= size <= 8:
        raise ValueError(f"board size must be even and in 4..8, got {size}")


def centre_squares(size: int) -> tuple[int, ...]:
    """Indices (``r * size + c``) of the 4 centre squares, sorted."""
    h = size // 2
    return tuple(sorted((h - 1) * size + c for c in (h - 1, h)) + sorted(h * size + c for c in (h - 1, h)))


def playable_squares(size: int) -> np.ndarray:
    """Square indices that can be played (all but the 4 centre ones), ascending: the token order.

    Token ``t`` (1..size*size-4) is the square ``playable_squares(size)[t - 1]``; token 0 is padding.
    """
    _check_size(size)
    centre = set(centre_squares(size))
    return np.array([s for s in range(size * size) if s not in centre], dtype=np.int64)


def square_names(size: int) -> list[str]:
    """Names of all squares in index order: column letter + row number from the top (``a1`` .. ``h8``)."""
    return [f"{chr(ord('a') + c)}{r + 1}" for r in range(size) for c in range(size)]


@dataclass(frozen=True)
class _Geometry:
    size: int
    full: np.uint64
    shifts: tuple[tuple[int, np.uint64], ...]  # (signed bit shift, mask of squares a shift may land on)


_GEOMETRY: dict[int, _Geometry] = {}


def _geometry(size: int) -> _Geometry:
    if size not in _GEOMETRY:
        _check_size(size)
        n = size * size
        full = (1 << n) - 1
        shifts = []
        for dr, dc in DIRECTIONS:
            mask = 0
            for r in range(size):
                for c in range(size):
                    # square (r, c) can be reached from (r - dr, c - dc) if that square is on the board
                    if 0 <= r - dr < size and 0 <= c - dc < size:
                        mask |= 1 << (r * size + c)
            shifts.append((dr * size + dc, U64(mask & full)))
        _GEOMETRY[size] = _Geometry(size, U64(full), tuple(shifts))
    return _GEOMETRY[size]


def _shift(x: np.ndarray, s: int, mask: np.uint64) -> np.ndarray:
    return ((x << U64(s)) if s > 0 else (x >> U64(-s))) & mask


def initial_boards(n: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` start positions as ``(black, white)`` bitboards, each ``UInt64[ndarray, "n"]``."""
    h = size // 2
    white = (1 << ((h - 1) * size + h - 1)) | (1 << (h * size + h))
    black = (1 << ((h - 1) * size + h)) | (1 << (h * size + h - 1))
    return np.full(n, black, dtype=U64), np.full(n, white, dtype=U64)


def legal_moves(own: np.ndarray, opp: np.ndarray, size: int = 8) -> np.ndarray:
    """Legal moves of the player owning ``own``, as bitboards ``UInt64[ndarray, "n"]``.

    Args:
        own, opp: ``UInt64[ndarray, "n"]`` stones of the player to move and of the opponent.
    """
    g = _geometry(size)
    empty = ~(own | opp) & g.full
    legal = np.zeros_like(own)
    for s, mask in g.shifts:
        x = _shift(own, s, mask) & opp
        for _ in range(size - 3):
            x |= _shift(x, s, mask) & opp
        legal |= _shift(x, s, mask) & empty
    return legal


def flips(own: np.ndarray, opp: np.ndarray, move: np.ndarray, size: int = 8) -> np.ndarray:
    """Stones flipped by playing ``move`` (one bit per game, ``UInt64[ndarray, "n"]``; 0 = no move)."""
    g = _geometry(size)
    out = np.zeros_like(own)
    for s, mask in g.shifts:
        x = _shift(move, s, mask) & opp
        for _ in range(size - 3):
            x |= _shift(x, s, mask) & opp
        closed = (_shift(x, s, mask) & own) != 0
        out |= np.where(closed, x, U64(0))
    return out


def bits_to_bool(x: np.ndarray, size: int = 8) -> np.ndarray:
    """``UInt64[ndarray, "*b"]`` bitboards -> ``Bool[ndarray, "*b size*size"]``."""
    idx = np.arange(size * size, dtype=U64)
    return ((x[..., None] >> idx) & U64(1)).astype(bool)


def _choose(legal: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A uniformly random set bit of each ``legal`` (0 where there is none): ``(square index, bit)``."""
    mat = bits_to_bool(legal, size)
    score = np.where(mat, rng.random(mat.shape), -1.0)
    sq = score.argmax(1)
    bit = np.where(mat.any(1), U64(1) << sq.astype(U64), U64(0))
    return sq, bit


def play_random(n: int, size: int = 8, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Play ``n`` uniformly random legal games (passes allowed here, as in the rules).

    Returns:
        ``moves Int[ndarray, "n size*size-4"]``: the square index of each move, -1 after the game
        ended; ``passed Bool[ndarray, "n"]``: the game contains a pass.
    """
    rng = np.random.default_rng(rng)
    n_moves = size * size - 4
    black, white = initial_boards(n, size)
    moves = np.full((n, n_moves), -1, dtype=np.int64)
    passed = np.zeros(n, dtype=bool)
    black_to_move = np.ones(n, dtype=bool)
    for i in range(n_moves):
        own = np.where(black_to_move, black, white)
        opp = np.where(black_to_move, white, black)
        legal = legal_moves(own, opp, size)
        none = legal == 0
        if none.any():
            # The player to move passes if the opponent can move; else the game is over.
            opp_legal = legal_moves(opp[none], own[none], size)
            can = opp_legal != 0
            idx = np.flatnonzero(none)[can]
            passed[idx] = True
            black_to_move[idx] = ~black_to_move[idx]
            own[idx], opp[idx] = opp[idx], own[idx]
            legal[idx] = opp_legal[can]
        sq, bit = _choose(legal, rng, size)
        f = flips(own, opp, bit, size)
        own = own | bit | f
        opp = opp & ~f
        black = np.where(black_to_move, own, opp)
        white = np.where(black_to_move, opp, own)
        moves[:, i] = np.where(bit != 0, sq, -1)
        black_to_move = ~black_to_move
    return moves, passed


def random_games(n: int, size: int = 8, seed: int = 0, batch: int = 4096) -> np.ndarray:
    """``n`` random legal games without a pass, deterministic in ``(n, size, seed, batch)``.

    Games are played in batches of ``batch`` from ``numpy.random.default_rng(seed)``; those with a pass
    are dropped, until ``n`` are kept.

    Returns:
        ``Int[ndarray, "n size*size-4"]`` square indices (``r * size + c``), -1 after an early end.
    """
    rng = np.random.default_rng(seed)
    out, have = [], 0
    while have < n:
        moves, passed = play_random(batch, size, rng)
        keep = moves[~passed]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)[:n]


def replay(moves: np.ndarray, size: int = 8) -> dict[str, np.ndarray]:
    """Replay pass-free games and return the board after every move, vectorised over games.

    Args:
        moves: ``Int[ndarray, "n m"]`` square indices, -1 after the game ended (no passes).

    Returns:
        dict of ``UInt64[ndarray, "n m"]`` bitboards *after* move ``i``: ``black``, ``white``, ``legal``
        (legal moves of the player to move next, i.e. white after black's move ``i = 0``), and
        ``Bool[ndarray, "n m"]`` ``valid`` (move ``i`` was played). Raises ``ValueError`` if a move is
        illegal (or a pass would be needed).
    """
    n, m = moves.shape
    black, white = initial_boards(n, size)
    out = {k: np.zeros((n, m), dtype=U64) for k in ("black", "white", "legal")}
    valid = moves >= 0
    for i in range(m):
        own, opp = (black, white) if i % 2 == 0 else (white, black)
        bit = np.where(valid[:, i], U64(1) << np.maximum(moves[:, i], 0).astype(U64), U64(0))
        legal = legal_moves(own, opp, size)
        if ((bit & legal) != bit).any():
            bad = int(np.flatnonzero((bit & legal) != bit)[0])
            raise ValueError(f"game {bad}: move {i} (square {moves[bad, i]}) is illegal")
        f = flips(own, opp, bit, size)
        own, opp = own | bit | f, opp & ~f
        black, white = (own, opp) if i % 2 == 0 else (opp, own)
        out["black"][:, i], out["white"][:, i] = black, white
        out["legal"][:, i] = legal_moves(opp, own, size)
    out["valid"] = valid
    return out
