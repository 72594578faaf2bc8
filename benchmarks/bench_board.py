"""Board-game speed figures, side by side in one run (ratios are the point; seconds depend on the machine).

1. Othello random legal games per second: the vectorised bitboard engine (``engine.play_random``, one
   batch) vs a plain per-game Python engine (lists, one move at a time) on the same board size; and the
   pass-free games the task keeps (``engine.random_games``).
2. Coverage + board reconstruction (``deeprobe_bench.metrics.board.board_metrics``: threshold sweep, tagging on a
   label split, micro-F1 on a test split, per-BSP breakdown) for 4096 features x 192 board elements
   (64 squares x mine/theirs/empty) x 11 thresholds over 1000 games (59 positions each) per split, on
   synthetic SAE-like activations (each row has ``--l0`` active features) and random one-hot boards.

Usage: ``python benchmarks/bench_board.py [--games 20000] [--features 4096] [--metric-games 1000]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def python_games(n: int, size: int, seed: int) -> int:
    """Play ``n`` random games one move at a time with Python lists (the reference speed); returns moves."""
    import random

    from deeprobe_bench.tasks.othello.engine import DIRECTIONS

    rng = random.Random(seed)
    moves = 0
    for _ in range(n):
        h = size // 2
        b = [[0] * size for _ in range(size)]
        b[h - 1][h - 1] = b[h][h] = -1
        b[h - 1][h] = b[h][h - 1] = 1
        player, passes = 1, 0
        while passes < 2:
            legal = []
            for r in range(size):
                for c in range(size):
                    if b[r][c]:
                        continue
                    flips = []
                    for dr, dc in DIRECTIONS:
                        rr, cc, run = r + dr, c + dc, []
                        while 0 <= rr < size and 0 <= cc < size and b[rr][cc] == -player:
                            run.append((rr, cc))
                            rr, cc = rr + dr, cc + dc
                        if run and 0 <= rr < size and 0 <= cc < size and b[rr][cc] == player:
                            flips += run
                    if flips:
                        legal.append((r, c, flips))
            if not legal:
                passes += 1
                player = -player
                continue
            passes = 0
            r, c, flips = legal[rng.randrange(len(legal))]
            b[r][c] = player
            for a, d in flips:
                b[a][d] = player
            moves += 1
            player = -player
    return moves


def games_per_second(args: argparse.Namespace) -> None:
    from deeprobe_bench.tasks.othello import engine

    for size in (8, 6):
        t0 = time.perf_counter()
        engine.play_random(args.games, size, rng=0)
        vec = args.games / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.random_games(args.games, size, seed=0)
        kept = args.games / (time.perf_counter() - t0)
        n_py = max(50, args.games // 100)
        t0 = time.perf_counter()
        python_games(n_py, size, 0)
        py = n_py / (time.perf_counter() - t0)
        print(f"Othello {size}x{size} random legal games per second (1 thread):")
        print(f"  vectorised engine {vec:,.0f}/s | pass-free games kept by the task {kept:,.0f}/s | "
              f"per-game Python {py:,.0f}/s | vectorised / Python = {vec / py:.0f}x")  # fmt: skip


def metric_time(args: argparse.Namespace) -> None:
    import torch

    from deeprobe_bench.metrics.board import board_metrics

    torch.set_num_threads(1)
    rows = args.metric_games * 59
    squares = 64
    gen = torch.Generator().manual_seed(0)

    def split() -> tuple[torch.Tensor, torch.Tensor]:
        acts = torch.zeros(rows, args.features)
        idx = torch.randint(0, args.features, (rows, args.l0), generator=gen)
        acts.scatter_(1, idx, torch.rand(rows, args.l0, generator=gen) + 0.1)
        state = torch.randint(0, 3, (rows, squares), generator=gen)
        labels = torch.cat([state == 1, state == 2, state == 0], dim=1)  # mine | theirs | empty
        # plant a few perfect features so that tagging finds something
        acts[:, : 3 * squares] = labels.float() * 2.0
        return acts, labels

    lab_acts, lab = split()
    test_acts, test = split()
    groups = {"mine": list(range(64)), "theirs": list(range(64, 128)), "empty": list(range(128, 192))}
    t0 = time.perf_counter()
    res = board_metrics(lab_acts, lab, test_acts, test, groups, groups["mine"] + groups["theirs"], groups["empty"])
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    board_metrics(lab_acts, lab, test_acts, test, groups, groups["mine"] + groups["theirs"], groups["empty"],
                  coverage=False)  # fmt: skip
    dt_rec = time.perf_counter() - t0
    print(f"coverage + reconstruction, {args.features} features x 192 board elements x 11 thresholds, "
          f"{args.metric_games} label + {args.metric_games} test games ({rows} rows each), L0 {args.l0}, 1 thread:")  # fmt: skip
    print(f"  both {dt:.1f} s | reconstruction only {dt_rec:.1f} s | coverage share {(dt - dt_rec) / dt:.0%} "
          f"(check: planted features reconstruct {res.reconstruction:.3f}, coverage {res.coverage:.3f})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=20000)
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--metric-games", type=int, default=1000)
    ap.add_argument("--l0", type=int, default=32)
    ap.add_argument("--skip-games", action="store_true")
    ap.add_argument("--skip-metrics", action="store_true")
    args = ap.parse_args()
    if not args.skip_games:
        games_per_second(args)
    if not args.skip_metrics:
        metric_time(args)


if __name__ == "__main__":
    main()
