"""Grid speed figures, side by side in one run (ratios are the point; seconds depend on the machine).

1. **One process vs one process per cell**: the same cells of one dataset (``--task``, ``--methods``, seed 0)
   as one ``deeprobe-bench sweep`` (one import, one model load, one prepare, shared by the cells) vs one
   ``deeprobe-bench run`` per cell, both on a warm activation cache; their metrics must be equal.
2. **Board objective calls per second** (what ``mcts``, ``greedy`` and ``rlaif`` spend): random latent sets
   of the SAE's most frequent latents scored by ``task.objective`` as a fresh FeatureSet per call (each call
   encodes the train split through the SAE: the objective before ``FeatureSet.encode_shared``) vs as
   subsets of the pool's FeatureSet (one encoding for the whole search); the rewards must be equal.

Usage: ``python benchmarks/bench_grid.py [--task othello] [--methods oracle,null,random,sae] [--calls 100]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli(*args: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deeprobe_bench.cli", "-q", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - t0


def _metrics(results: Path) -> dict[str, dict]:
    return {str(p.relative_to(results)): json.loads(p.read_text())["metrics"] for p in sorted(results.rglob("*.json"))}


def processes(task: str, methods: list[str], env: dict[str, str]) -> None:
    """Part 1: one sweep process vs one process per cell."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        _cli("run", "--task", task, "--method", "null", "--results-dir", str(tmp_path / "warm"), env=env)  # cache
        per_cell = sum(_cli("run", "--task", task, "--method", m, "--results-dir", str(tmp_path / "a"), env=env)
                       for m in methods)  # fmt: skip
        one = _cli("sweep", "--task", task, "--method", ",".join(methods), "--seeds", "0",
                   "--results-dir", str(tmp_path / "b"), env=env)  # fmt: skip
        same = _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    print(f"1. {task}, {len(methods)} cells ({', '.join(methods)}), seed 0, warm cache:")
    print(f"   one process per cell {per_cell:.1f} s, one sweep process {one:.1f} s: {per_cell / one:.2f}x; "
          f"metrics equal: {same}")  # fmt: skip


def objective_and_curve(task_name: str, calls: int, pool_size: int) -> None:
    """Part 2, in this process on the task's default model."""
    import torch

    from deeprobe_bench import registry, runner
    from deeprobe_bench.api import Budget, DiscoveryContext
    from deeprobe_bench.baselines.sae import latent_features, rank_latents

    task = registry.get_task(task_name)()
    subject = runner.default_subject_loader(task.default_model)
    runner.seed_everything(0)
    data = task.prepare(subject, 0, None)
    sae = subject.sae_for(data.hook_name)
    ctx = DiscoveryContext(subject, data.hook_name, data.train_acts, sae, 0, "none", Budget(None),
                           lambda it, **kw: it)  # fmt: skip
    order, _ = rank_latents(ctx, "bench")
    pool = [int(i) for i in order[:pool_size]]
    gen = torch.Generator().manual_seed(0)
    sets = [sorted(torch.randperm(pool_size, generator=gen)[: int(torch.randint(1, 9, (1,), generator=gen))].tolist())
            for _ in range(calls)]  # fmt: skip

    t0 = time.perf_counter()
    fresh = [task.objective(data, latent_features(sae, data.hook_name, [pool[i] for i in s])) for s in sets]
    t_fresh = time.perf_counter() - t0
    pool_set = latent_features(sae, data.hook_name, pool)
    t0 = time.perf_counter()
    shared = [task.objective(data, pool_set.subset(s)) for s in sets]
    t_shared = time.perf_counter() - t0
    print(f"2. {task_name} objective, {calls} random sets of 1-8 of the {pool_size} most frequent latents:")
    print(f"   fresh FeatureSet per call {calls / t_fresh:.1f} calls/s, subsets of the pool {calls / t_shared:.1f} "
          f"calls/s: {t_fresh / t_shared:.1f}x; rewards equal: {fresh == shared}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="othello")
    ap.add_argument("--methods", default="oracle,null,random,sae")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--pool", type=int, default=48)
    args = ap.parse_args()
    env = {**os.environ}
    env.setdefault("DEEPROBE_CACHE", tempfile.mkdtemp(prefix="bench-grid-cache-"))
    processes(args.task, args.methods.split(","), env)
    os.environ["DEEPROBE_CACHE"] = env["DEEPROBE_CACHE"]
    objective_and_curve(args.task, args.calls, args.pool)


if __name__ == "__main__":
    main()
