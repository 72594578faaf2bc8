"""Chess data: random legal games (python-chess), Chess-GPT character tokens, board-state properties.

Games. A game is a sequence of moves drawn uniformly from the legal moves of each position
(``chess.Board.legal_moves``), with its own generator ``numpy.random.default_rng([stream, seed,
index])``: game ``index`` of a seed is the same whatever the number of games asked for, and the
streams (``train``, ``eval``, ``task``) never share a game generator. Its text is the PGN movetext in the
format of Chess-GPT (adamkarvonen/chess_llm_interpretability): ``";1.e4 e5 2.Nf3 Nc6 ..."`` (no space
after the move number's dot; ``;`` starts the game), cut to ``n_chars`` characters (default 256, about
20 full moves; Chess-GPT uses a context of 1024). Random games rarely end within 20 moves, so almost
every text has exactly ``n_chars`` characters, possibly ending mid-move as Chess-GPT's training blocks
do. Games are cut short because random-game chess needs far more data than Othello for legal play
(REFERENCE.md section 2), and on a 2-core CPU the budget is a few tens of millions of characters:
spending them on the first 20 moves, the same window where the board-state properties are measured
(first 256 characters), is what lets a small model learn the board there.

Formats. A model reads games in one of two formats (:data:`FORMATS`; a zoo model's card says which in
``task.format``, else its vocabulary does): ``pgn-chars`` (Chess-GPT's, below) or ``uci-moves``, one token
per move (:data:`MOVE_VOCAB`: the 1,968 UCI strings a move of any piece can have, after ``<pad>``, ``<bos>``,
``<unk>``), which the zoo's ``chess-mini`` v3 reads: ``<bos> e2e4 e7e5 g1f3 ...``, token ``i`` the ``i``-th
ply. In that format the BSPs are measured at the token of Black's ``k``-th move (the board after ``2k``
plies, White to move) for ``k = 1 .. 20``: the same 20 White-to-move positions per game as the ``.``
positions of moves 2 .. 21.

Tokens (``pgn-chars``). One token per character over Chess-GPT's 32-character vocabulary (``VOCAB``; the ids of its
``meta.pkl``: ``' '`` 0, ``'#'`` 1, ``'+'`` 2, ``'-'`` 3, ``'.'`` 4, ``'0'``-``'9'`` 5-14, ``';'`` 15,
``'='`` 16, ``'B' 'K' 'N' 'O' 'Q' 'R'`` 17-22, ``'a'``-``'h'`` 23-30, ``'x'`` 31). Token ``i`` of a game is
character ``i`` of its text, ``;`` (id 15) acting as the beginning-of-sequence token. Texts shorter than
``n_chars`` (games that ended) are right-padded with ``' '`` (id 0) and their length is kept.

Board-state properties (BSPs, Karvonen et al. 2024, arXiv 2408.00113; code adamkarvonen/
SAE_BoardGameEval) are measured at the ``.`` characters of the text (the position before White's move
``k``, White to move), at most ``MAX_POSITIONS`` (20) per game within the first 256 characters. See
:func:`board_states` and :func:`piece_bsp`.

Games are kept as ``datasets.Dataset`` (columns ``text``, ``moves`` (UCI), ``index``) and cached on disk
under ``$DEEPROBE_CACHE/chess/`` (default ``~/.cache/deeprobe_bench/chess``; ``DEEPROBE_CACHE=off``
disables it), keyed by stream, seed, count, cut and :data:`DATA_VERSION`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DATA_VERSION = 1
VOCAB: tuple[str, ...] = (
    " ", "#", "+", "-", ".", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ";", "=",
    "B", "K", "N", "O", "Q", "R", "a", "b", "c", "d", "e", "f", "g", "h", "x",
)  # fmt: skip
STOI: dict[str, int] = {c: i for i, c in enumerate(VOCAB)}
PAD_ID = STOI[" "]
BOS_ID = STOI[";"]
DOT_ID = STOI["."]
N_CHARS = 256  # default cut of a game's text (characters, ';' included)
BSP_WINDOW = 256  # BSPs are measured at '.' characters among the first 256 (Karvonen et al.)
MAX_POSITIONS = 20  # at most 20 '.' positions per game (Karvonen et al.)
STREAMS = {"train": 0, "eval": 1, "task": 2, "test": 3}
FORMATS = ("pgn-chars", "uci-moves")

# Piece classes of the piece-on-square BSP: 0 empty, 1-6 White P N B R Q K, 7-12 Black p n b r q k.
PIECE_SYMBOLS: tuple[str, ...] = (".", "P", "N", "B", "R", "Q", "K", "p", "n", "b", "r", "q", "k")
N_PIECE_CLASSES = 13
SQUARE_NAMES: tuple[str, ...] = tuple(f"{f}{r}" for r in "12345678" for f in "abcdefgh")  # python-chess order
CASTLING_NAMES: tuple[str, ...] = ("white_kingside", "white_queenside", "black_kingside", "black_queenside")


def _initial_board() -> np.ndarray:
    import chess

    out = np.zeros(64, dtype=np.int8)
    for sq, piece in chess.Board().piece_map().items():
        out[sq] = PIECE_SYMBOLS.index(piece.symbol())
    return out


INITIAL_BOARD: np.ndarray = _initial_board()  # Int8[64], the start position in piece classes


def _uci_moves() -> tuple[str, ...]:
    """Every UCI string a chess move can have: a queen-line or knight jump between two squares (1,792), and
    the promotions (a pawn's step or capture onto the last rank, to ``q r b n``: 176); python-chess order."""
    import chess

    out = []
    for a in chess.SQUARES:
        for b in chess.SQUARES:
            df, dr = abs(chess.square_file(a) - chess.square_file(b)), abs(chess.square_rank(a) - chess.square_rank(b))
            if a != b and (df == 0 or dr == 0 or df == dr or {df, dr} == {1, 2}):
                out.append(chess.square_name(a) + chess.square_name(b))
    for a in chess.SQUARES:
        for last, prev in ((7, 6), (0, 1)):
            if chess.square_rank(a) != prev:
                continue
            for df in (-1, 0, 1):
                f = chess.square_file(a) + df
                if 0 <= f < 8:
                    out.extend(chess.square_name(a) + chess.square_name(chess.square(f, last)) + p for p in "qrbn")
    return tuple(out)


UCI_MOVES: tuple[str, ...] = _uci_moves()
MOVE_SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<unk>")  # ids 0, 1, 2 (subject.word_level_tokenizer's)
MOVE_VOCAB: tuple[str, ...] = MOVE_SPECIALS + UCI_MOVES
MOVE_ID: dict[str, int] = {m: i for i, m in enumerate(MOVE_VOCAB)}
MOVE_PAD_ID, MOVE_BOS_ID = 0, 1


# --------------------------------------------------------------------------- games


def cache_root() -> Path | None:
    """``$DEEPROBE_CACHE/chess`` (default ``~/.cache/deeprobe_bench/chess``), or None when caching is off."""
    root = os.environ.get("DEEPROBE_CACHE", str(Path.home() / ".cache" / "deeprobe_bench"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    return Path(root) / "chess"


def random_game(
    seed: int, index: int, stream: str = "train", n_chars: int = N_CHARS, n_plies: int | None = None, text: bool = True
) -> tuple[str, list[str]]:
    """Game ``index`` of ``(stream, seed)``: uniformly random legal moves until the text reaches ``n_chars``
    (or, with ``n_plies``, until that many moves are played). The same game for either stop: its first moves
    do not depend on where it stops.

    Args:
        text: build the PGN text (python-chess SAN, most of the time spent); False gives ``""`` for it.

    Returns:
        ``(text, moves)``: the text cut to at most ``n_chars`` characters (``";1.e4 e5 2.Nf3 ..."``; with
        ``n_plies`` not cut) and the UCI moves played (with ``n_chars``, one more than the text shows in full
        when the cut falls inside a move).

    Raises:
        ValueError: unknown stream, ``n_chars < 2`` or ``n_plies < 1``.
    """
    import chess

    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r} (one of {', '.join(STREAMS)})")
    if n_chars < 2 or (n_plies is not None and n_plies < 1):
        raise ValueError(f"need n_chars >= 2 and n_plies >= 1, got {n_chars}, {n_plies}")
    spell = text or n_plies is None  # the text is needed (or, cut by characters, is the stop)
    rng = np.random.default_rng([STREAMS[stream], seed, index])
    board = chess.Board()
    parts, moves, length = [], [], 1  # length counts ';' and the separating spaces
    while (length < n_chars) if n_plies is None else (len(moves) < n_plies):
        legal = list(board.legal_moves)
        if not legal:
            break
        move = legal[int(rng.integers(len(legal)))]
        if spell:
            san = board.san(move)
            if board.turn == chess.WHITE:
                san = f"{board.fullmove_number}.{san}"
            parts.append(san)
            length += len(san) + (1 if len(parts) > 1 else 0)
        moves.append(move.uci())
        board.push(move)
    out = ";" + " ".join(parts) if spell else ""
    return (out if n_plies is not None else out[:n_chars]), moves


def generate_games(
    n: int, seed: int, stream: str = "train", n_chars: int = N_CHARS, start: int = 0, cache: bool = True,
    n_plies: int | None = None,
) -> Any:
    """Games ``start .. start + n - 1`` of ``(stream, seed)`` as a ``datasets.Dataset``, cached on disk;
    each cut at ``n_chars`` characters or, with ``n_plies``, at that many moves (:func:`random_game`).

    Columns: ``text`` (str), ``moves`` (list of UCI str), ``index`` (int). About 4 ms per game of 256
    characters on one core.

    Raises:
        ValueError: ``n < 0`` or an unknown stream.
    """
    import datasets

    from deeprobe_bench.progress import progress

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    root = cache_root() if cache else None
    cut = f"c{n_chars}" if n_plies is None else f"p{n_plies}"
    path = root / f"games-v{DATA_VERSION}-{stream}-s{seed}-{cut}-{start}-{n}" if root else None
    if path is not None and (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path))
    rows: dict[str, list] = {"text": [], "moves": [], "index": []}
    for i in progress(range(start, start + n), desc=f"chess games ({stream}, seed {seed})", total=n):
        text, moves = random_game(seed, i, stream, n_chars, n_plies)
        rows["text"].append(text)
        rows["moves"].append(moves)
        rows["index"].append(i)
    ds = datasets.Dataset.from_dict(
        rows,
        features=datasets.Features(
            {
                "text": datasets.Value("string"),
                "moves": datasets.Sequence(datasets.Value("string")),
                "index": datasets.Value("int64"),
            }
        ),
    )
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            tmp.rename(path)
        except OSError:  # another process wrote it first
            pass
        return datasets.load_from_disk(str(path if path.exists() else tmp))
    return ds


# --------------------------------------------------------------------------- tokens


def encode(texts: list[str], n_ctx: int | None = None) -> tuple[Any, Any]:
    """Character ids of ``texts``, right-padded with ``' '`` (id 0).

    Args:
        texts: game texts starting with ``;``.
        n_ctx: width of the output (texts longer than it are cut); default the longest text.

    Returns:
        ``(tokens Int[Tensor, "batch pos"], lengths Int[Tensor, "batch"])`` (int64).

    Raises:
        ValueError: a character outside :data:`VOCAB` (names the text and the character).
    """
    import torch

    width = n_ctx if n_ctx is not None else max((len(t) for t in texts), default=1)
    lut = np.full(256, -1, dtype=np.int64)
    for c, i in STOI.items():
        lut[ord(c)] = i
    out = np.full((len(texts), width), PAD_ID, dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        raw = np.frombuffer(text[:width].encode("ascii", errors="replace"), dtype=np.uint8)
        ids = lut[raw]
        if (ids < 0).any():
            bad = text[int(np.flatnonzero(ids < 0)[0])]
            raise ValueError(f"character {bad!r} is not in the Chess-GPT vocabulary (text {text[:40]!r}...)")
        out[row, : len(ids)] = ids
        lengths[row] = len(ids)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def decode(ids: Any) -> str:
    """Text of a sequence of character ids."""
    return "".join(VOCAB[int(i)] for i in ids)


def char_tokenizer() -> Any:
    """A Hugging Face tokenizer over :data:`VOCAB`, one token per character, ids as Chess-GPT's.

    ``bos_token`` is ``;`` (id 15) and ``pad_token`` is ``' '`` (id 0), so ``Subject.to_tokens(["1.e4
    e5"])`` gives the ids of ``";1.e4 e5"``; there is no unknown token (an unknown character is
    dropped by the tokenizer: use :func:`encode`, which raises).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(VOCAB)}, unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=";", eos_token=";", pad_token=" ")


def encode_moves(moves: list[list[str]], n_ctx: int | None = None) -> tuple[Any, Any]:
    """``uci-moves`` ids of games: ``<bos>`` then one id per move (:data:`MOVE_VOCAB`), right-padded with
    ``<pad>`` (id 0).

    Args:
        moves: each game's UCI moves.
        n_ctx: width of the output (longer games are cut); default the longest game + 1.

    Returns:
        ``(tokens Int[Tensor, "batch pos"], lengths Int[Tensor, "batch"])`` (int64), ``<bos>`` counted.

    Raises:
        ValueError: a string that is no UCI move (names it).
    """
    import torch

    width = n_ctx if n_ctx is not None else 1 + max((len(m) for m in moves), default=0)
    out = np.full((len(moves), width), MOVE_PAD_ID, dtype=np.int64)
    lengths = np.zeros(len(moves), dtype=np.int64)
    for row, game in enumerate(moves):
        ids = [MOVE_BOS_ID]
        for m in game[: width - 1]:
            if m not in MOVE_ID or m in MOVE_SPECIALS:
                raise ValueError(f"{m!r} is not a UCI move (game {row})")
            ids.append(MOVE_ID[m])
        out[row, : len(ids)] = ids
        lengths[row] = len(ids)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def move_tokenizer() -> Any:
    """The ``uci-moves`` Hugging Face tokenizer: word-level over :data:`UCI_MOVES` with the ids of
    :func:`encode_moves` (``deeprobe_bench.subject.word_level_tokenizer``), so ``"e2e4 e7e5"`` gives
    ``<bos>`` and two moves."""
    from deeprobe_bench.subject import word_level_tokenizer

    return word_level_tokenizer(list(UCI_MOVES))


def encode_games(games: Any, fmt: str, n_ctx: int | None = None) -> tuple[Any, Any]:
    """Token ids of ``games`` (columns ``text``, ``moves``) in format ``fmt`` (:data:`FORMATS`): :func:`encode`
    or :func:`encode_moves`. Raises ValueError for an unknown format."""
    if fmt == "pgn-chars":
        return encode(list(games["text"]), n_ctx)
    if fmt == "uci-moves":
        return encode_moves(list(games["moves"]), n_ctx)
    raise ValueError(f"unknown chess format {fmt!r} (one of {', '.join(FORMATS)})")


# --------------------------------------------------------------------------- board states


def measured_positions(
    fmt: str, text: str, n_moves: int, window: int | None = None, max_positions: int = MAX_POSITIONS
) -> list[tuple[int, int]]:
    """Where the BSPs of one game are measured: ``(token index, plies played before the board there)``.

    ``pgn-chars``: the ``.`` of move ``k`` (:func:`dot_positions`, ``window`` default :data:`BSP_WINDOW`
    characters), after ``2 (k - 1)`` plies. ``uci-moves``: the token of Black's ``k``-th move, index ``2k``,
    after ``2k`` plies (tokens below ``window``, default all). At most ``max_positions``; White to move in both.
    """
    if fmt == "pgn-chars":
        return [(pos, 2 * (k - 1)) for k, pos in enumerate(dot_positions(text, window or BSP_WINDOW, max_positions), 1)]
    if fmt == "uci-moves":
        last = min(n_moves, (window - 1) if window else n_moves)
        return [(2 * k, 2 * k) for k in range(1, max_positions + 1) if 2 * k <= last]
    raise ValueError(f"unknown chess format {fmt!r} (one of {', '.join(FORMATS)})")


def dot_positions(text: str, window: int = BSP_WINDOW, max_positions: int = MAX_POSITIONS) -> list[int]:
    """Character indices of the ``.`` of ``text`` among its first ``window`` characters, at most
    ``max_positions`` (Karvonen et al.: White to move, at most 20 per game, first 256 characters)."""
    out = [i for i, c in enumerate(text[:window]) if c == "."]
    return out[:max_positions]


@dataclass
class BoardStates:
    """Board states at the ``.`` positions of a batch of games (one row per position).

    Attributes:
        game: ``Int[ndarray, "n"]`` row of the game in the batch.
        pos: ``Int[ndarray, "n"]`` character (token) index of the ``.`` in the game's text.
        move_number: ``Int[ndarray, "n"]`` full-move number ``k`` of the ``k.`` (1-based).
        pieces: ``Int8[ndarray, "n 64"]`` piece class per square (0 empty, 1-6 ``PNBRQK``, 7-12
            ``pnbrqk``), squares in python-chess order (a1, b1, ..., h8). Unmasked.
        check: ``Bool[ndarray, "n"]`` White (to move) is in check.
        castling: ``Bool[ndarray, "n 4"]`` castling rights (``CASTLING_NAMES`` order).
        legal_to: ``Bool[ndarray, "n 64"]`` squares that some legal White move goes to.
    """

    game: np.ndarray
    pos: np.ndarray
    move_number: np.ndarray
    pieces: np.ndarray
    check: np.ndarray
    castling: np.ndarray
    legal_to: np.ndarray

    def __len__(self) -> int:
        return len(self.game)


def board_states(
    texts: list[str], moves: list[list[str]], window: int | None = None, max_positions: int = MAX_POSITIONS,
    fmt: str = "pgn-chars",
) -> BoardStates:
    """Replay each game and record its board at each measured position (:func:`measured_positions`).

    Each position is converted once to arrays (python-chess ``piece_map``, ``is_check``, castling
    rights, legal moves); every BSP is then computed on the whole batch with numpy (:func:`piece_bsp`).
    The ``.`` of move ``k`` is followed by White's ``k``-th move, so the board there is the position after
    ``2 (k - 1)`` plies; in ``uci-moves`` the board at Black's ``k``-th move is the one after ``2k`` plies.

    Raises:
        ValueError: a game's moves do not reach one of its positions (text and moves disagree).
    """
    import chess

    rows: dict[str, list] = {k: [] for k in ("game", "pos", "move_number", "pieces", "check", "castling", "legal_to")}
    for g, (text, game_moves) in enumerate(zip(texts, moves, strict=True)):
        board = chess.Board()
        played = 0
        for pos, target in measured_positions(fmt, text, len(game_moves), window, max_positions):
            if target > len(game_moves):
                raise ValueError(f"game {g}: its {len(game_moves)} moves do not reach ply {target}, a measured position")
            while played < target:
                board.push_uci(game_moves[played])
                played += 1
            k = target // 2 + 1  # the full-move number of White's next move
            pieces = np.zeros(64, dtype=np.int8)
            for sq, piece in board.piece_map().items():
                pieces[sq] = PIECE_SYMBOLS.index(piece.symbol())
            legal = np.zeros(64, dtype=bool)
            legal[[m.to_square for m in board.legal_moves]] = True
            rows["game"].append(g)
            rows["pos"].append(pos)
            rows["move_number"].append(k)
            rows["pieces"].append(pieces)
            rows["check"].append(board.is_check())
            rows["castling"].append(
                [
                    board.has_kingside_castling_rights(chess.WHITE),
                    board.has_queenside_castling_rights(chess.WHITE),
                    board.has_kingside_castling_rights(chess.BLACK),
                    board.has_queenside_castling_rights(chess.BLACK),
                ]
            )
            rows["legal_to"].append(legal)
    n = len(rows["game"])
    return BoardStates(
        game=np.asarray(rows["game"], dtype=np.int64),
        pos=np.asarray(rows["pos"], dtype=np.int64),
        move_number=np.asarray(rows["move_number"], dtype=np.int64),
        pieces=np.asarray(rows["pieces"], dtype=np.int8).reshape(n, 64),
        check=np.asarray(rows["check"], dtype=bool),
        castling=np.asarray(rows["castling"], dtype=bool).reshape(n, 4),
        legal_to=np.asarray(rows["legal_to"], dtype=bool).reshape(n, 64),
    )


def initial_mask() -> np.ndarray:
    """``Bool[ndarray, "64 13"]``: the (square, class) elements of the start position.

    Karvonen et al. mask them (adamkarvonen/SAE_BoardGameEval ``mask_initial_board_states``: ``mask =
    (initial_one_hot == 1) & (one_hot == 1); one_hot[mask] = 0``): a piece still on its starting square,
    and an empty square of ranks 3-6, is no positive of any class. Without it, a layer-1 SAE reaches 0.52
    reconstruction from the string position alone (REFERENCE.md section 2).
    """
    return INITIAL_BOARD[:, None] == np.arange(N_PIECE_CLASSES, dtype=np.int8)


def piece_bsp(pieces: np.ndarray, masked: bool = True) -> np.ndarray:
    """One-hot piece-on-square BSP: ``Bool[ndarray, "n 64 13"]`` (classes :data:`PIECE_SYMBOLS`).

    Vectorised over the batch. With ``masked`` (the paper's convention), the elements of the start
    position are False everywhere (:func:`initial_mask`): "pieces still on their starting squares count
    as empty" in the sense of the paper's code, i.e. they are no positive at all (their square's
    row is all False), and ``(e4, empty)`` is never a positive either, while ``(e2, empty)`` after the
    pawn has left is.

    Args:
        pieces: ``Int8[ndarray, "n 64"]`` piece classes (:attr:`BoardStates.pieces`).
    """
    onehot = pieces[..., None] == np.arange(N_PIECE_CLASSES, dtype=np.int8)
    return onehot & ~initial_mask() if masked else onehot
