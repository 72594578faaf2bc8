"""``probe`` before vs after (version 2 vs 3), side by side in one run on a zoo task's train split.

- before (version 2): one scikit-learn ``LogisticRegression(C=1, class_weight="balanced")`` per concept,
  one after another, on the raw activations (the code of version 2's ``discover``, below);
- after (version 3): ``baselines.probe.fit_probes``, the same objective on preconditioned input, solved
  by scikit-learn's ``newton-cholesky`` per concept.

Both fit the first ``--concepts`` probed concepts (version 2 costs about a second a concept on a quiet
machine, so all of othello-mini's 136 take minutes); version 3 also fits all of them. Printed: seconds,
the per-concept ratio, and how far apart the two fits are (mean |probability difference| on the train
rows, share of rows where their 0.5 decisions agree), which is solver tolerance only, as both minimise
the same objective.

Usage: ``python benchmarks/bench_probe.py [--model othello-mini] [--task othello] [--concepts 16]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def version2(x, y, C: float = 1.0, max_iter: int = 1000):
    """Version 2's fits: ``(w "K d", b "K", seconds)``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    ws, bs = [], []
    for j in range(y.shape[1]):
        clf = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced", random_state=0).fit(x, y[:, j])
        ws.append(clf.coef_[0])
        bs.append(clf.intercept_[0])
    return np.stack(ws), np.array(bs), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="othello-mini")
    ap.add_argument("--task", default="othello")
    ap.add_argument("--concepts", type=int, default=16, help="concepts both versions fit (0 = all)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from deeprobe_bench import registry, runner
    from deeprobe_bench.baselines.probe import fit_probes

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    subject = runner.default_subject_loader(args.model)
    runner.seed_everything(0)
    data = registry.get_task(args.task)().prepare(subject, 0, None)
    x = data.train_acts.float()
    y = data.train_labels.bool()
    n_pos = y.sum(0)
    y = y[:, (n_pos >= 2) & (len(y) - n_pos >= 2)]
    k = y.shape[1] if args.concepts <= 0 else min(args.concepts, y.shape[1])
    print(f"{args.model} / {args.task}: {x.shape[0]} train rows, d {x.shape[1]}, {y.shape[1]} probed concepts; "
          f"both versions on the first {k}, threads {os.environ['OMP_NUM_THREADS']}")  # fmt: skip

    w2, b2, t2 = version2(x.numpy(), y[:, :k].numpy())
    t0 = time.perf_counter()
    w3, b3, info = fit_probes(x, y[:, :k])
    t3 = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, info_all = fit_probes(x, y)
    t3_all = time.perf_counter() - t0

    xd = x.double().numpy()
    z2 = xd @ w2.T + b2
    z3 = xd @ w3.numpy().T + b3.numpy()
    p2, p3 = 1 / (1 + np.exp(-z2)), 1 / (1 + np.exp(-z3))
    print(f"before (v2, {k} sequential scikit-learn fits): {t2:.2f} s ({t2 / k:.3f} s a concept)")
    print(f"after  (v3, {k} Newton fits):                  {t3:.2f} s (at most {info['n_iter']} iterations a fit)")
    print(f"after  (v3, all {y.shape[1]}):                        {t3_all:.2f} s (at most {info_all['n_iter']} iterations a fit)")
    print(f"speed-up on the same {k} concepts: {t2 / t3:.1f}x; per concept, v2 on {k} vs v3 on all "
          f"{y.shape[1]}: {(t2 / k) / (t3_all / y.shape[1]):.1f}x")  # fmt: skip
    print(f"v2 vs v3: mean |probability difference| {np.abs(p2 - p3).mean():.5f}, "
          f"same 0.5 decision on {(((z2 > 0) == (z3 > 0)).mean()):.4%} of row x concept")  # fmt: skip


if __name__ == "__main__":
    main()
