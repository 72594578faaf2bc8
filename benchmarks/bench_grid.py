"""Grid speed figures, side by side in one run (ratios are the point; seconds depend on the machine).

1. **One process vs one process per cell**: the same cells of one dataset (``--task``, ``--methods``, seed 0)
   as one ``deeprobe-bench sweep`` (one import, one model load, one prepare, shared by the cells) vs one
   ``deeprobe-bench run`` per cell, both on a warm activation cache; their metrics must be equal.
2. **Board objective calls per second** (what ``mcts``, ``greedy`` and ``rlaif`` spend): random latent sets
   of the SAE's most frequent latents scored by ``task.objective`` as a fresh FeatureSet per call (each call
   encodes the train split through the SAE: the objective before ``FeatureSet.encode_shared``) vs as
   subsets of the pool's FeatureSet (one encoding for the whole search); the rewards must be equal.
3. **Local judge requests per second** (what ``judge_score`` and ``rlaif`` spend on the default path): the same
   chat requests through the real client to the in-process local server, with Nagle's algorithm on the
   server's sockets (as before) vs off (``TCP_NODELAY``, as now); the replies must be equal.
4. **Persona objective calls per second** (``mcts``, ``greedy``, ``rlaif`` on persona): each call's steering
   curve as whole passes from the hook vs on the last token alone (``hooks.SuffixRun``); the rewards must
   agree to 1e-6.

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


def judge_requests(n: int) -> None:
    """Part 3: local judge requests, Nagle on vs off."""
    from http.server import BaseHTTPRequestHandler

    from deeprobe_bench.judge import open_judge
    from deeprobe_bench.judge import server as srv

    requests = [([{"role": "user", "content": f"request {i}"}], None) for i in range(n)]

    def timed() -> tuple[float, list[str]]:
        with open_judge("local", cache_path="") as judge:
            t0 = time.perf_counter()
            replies = judge.complete_many(requests)
            return time.perf_counter() - t0, [r.text for r in replies]

    nodelay = srv._Handler.setup
    srv._Handler.setup = BaseHTTPRequestHandler.setup  # Nagle on: the socket as the OS opens it
    try:
        t_nagle, a = timed()
    finally:
        srv._Handler.setup = nodelay
    t_now, b = timed()
    print(f"3. local judge, {n} chat requests, 4 in flight, no reply cache:")
    print(f"   Nagle on {n / t_nagle:.0f} requests/s, TCP_NODELAY {n / t_now:.0f} requests/s: {t_nagle / t_now:.1f}x; "
          f"replies equal: {a == b}")  # fmt: skip


def persona_objective(calls: int) -> None:
    """Part 4: persona objective calls, whole passes vs the last token alone."""
    import torch

    from deeprobe_bench import registry, runner
    from deeprobe_bench.baselines.sae import latent_features

    task = registry.get_task("persona")()
    subject = runner.default_subject_loader(task.default_model)
    runner.seed_everything(0)
    data = task.prepare(subject, 0, None)
    sae = subject.sae_for(data.hook_name)
    gen = torch.Generator().manual_seed(0)
    sets = [latent_features(sae, data.hook_name, [int(torch.randint(0, sae.cfg.d_sae, (1,), generator=gen))])
            for _ in range(calls)]  # fmt: skip
    last = [task.objective(data, fs) for fs in sets[:1]]  # builds the runs of the objective's rows once
    t0 = time.perf_counter()
    last = [task.objective(data, fs) for fs in sets]
    t_last = time.perf_counter() - t0
    task._last_token_run = lambda *a: None  # every call takes the whole-pass path
    t0 = time.perf_counter()
    whole = [task.objective(data, fs) for fs in sets]
    t_whole = time.perf_counter() - t0
    diff = max(abs(x - y) for x, y in zip(last, whole, strict=True))
    print(f"4. persona objective, {calls} single latents of the SAE, {len(task.config.coefficients)} coefficients:")
    print(f"   whole passes {calls / t_whole:.2f} calls/s, last token alone {calls / t_last:.2f} calls/s: "
          f"{t_whole / t_last:.1f}x; rewards {min(whole):.4f} to {max(whole):.4f}, largest difference {diff:.1e}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="othello")
    ap.add_argument("--methods", default="oracle,null,random,sae")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--pool", type=int, default=48)
    ap.add_argument("--judge-requests", type=int, default=400)
    ap.add_argument("--persona-calls", type=int, default=20)
    args = ap.parse_args()
    env = {**os.environ}
    env.setdefault("DEEPROBE_CACHE", tempfile.mkdtemp(prefix="bench-grid-cache-"))
    processes(args.task, args.methods.split(","), env)
    os.environ["DEEPROBE_CACHE"] = env["DEEPROBE_CACHE"]
    objective_and_curve(args.task, args.calls, args.pool)
    judge_requests(args.judge_requests)
    persona_objective(args.persona_calls)


if __name__ == "__main__":
    main()
