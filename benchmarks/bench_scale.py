"""What a user with a real model pays: every IOI method at GPT-2-small size, beside the zoo model.

The subject has GPT-2 small's architecture (12 layers, 12 heads, d_model 768, d_mlp 3072, GELU, layer
norm) at random init (seed 0), built offline with ioi-mini's word-level tokenizer (which covers the IOI
task's words), and a random TopK SAE of 24,576 latents (gpt2-small-res-jb's width; k = 32) at the middle
layer's residual stream, ``blocks.6.hook_resid_post``. Its numbers mean nothing; its costs are a real
model's. Each IOI method (random, sae, probe, attribution, exact, greedy, mcts) runs as one cell
(``runner.run_cell``: prepare, discover, evaluate) in its own process, so that each peak memory is its
own; the same cells then run on the zoo model ``ioi-mini`` (d_model 128, 512 latents) for comparison,
in one process.
The processes share one activation cache (a temporary directory), filled by the first cell.

Printed per cell: wall time of discover + evaluate (``wall_s``) and of the task's prepare (``prepare_s``),
forward passes of the model (the subject's counter: every batched forward, discover and evaluate),
backward passes (from the method's recorded costs), objective calls, the process's peak resident memory
(``ru_maxrss``, prepare included; the zoo cells share one process, so theirs is cumulative), and the
primary metric.

Usage: ``python benchmarks/bench_scale.py [--quick] [--methods random,sae,...] [--d-sae 24576]``

- default: the task's and methods' defaults (n_train 512, n_val 1000, n_test 500, objective_batch 128;
  budgets 400). ``attribution`` no longer patches a sample of latents exactly to report its own agreement
  (opt-in, ``-M agreement=true``); the task scores every ranked set's agreement on 50 features x 128 test
  prompts;
- ``--quick``: smaller splits and budgets, the same code paths (``QUICK`` below), for a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

METHODS = ("random", "sae", "probe", "attribution", "exact", "greedy", "mcts")
HOOK = "blocks.6.hook_resid_post"
FULL: dict[str, dict] = {"task": {}, "methods": {}}
QUICK = {
    "task": {"n_train": "128", "n_val": "128", "n_test": "64", "objective_batch": "32"},
    "methods": {
        "exact": {"pool": "64", "patch_batch": "8"},
        "greedy": {"budget": "40", "pool": "16"},
        "mcts": {"budget": "40", "pool": "16"},
    },
}


def gpt2_small_random(d_sae: int = 24576, k: int = 32):
    """The scale subject: GPT-2 small's shape at random init (seed 0), ioi-mini's tokenizer, a TopK SAE."""
    from pathlib import Path

    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from transformer_lens import HookedTransformerConfig

    from deeprobe_bench.subject import Subject, load_tokenizer, quiet_hooked_transformer, word_level_tokenizer
    from deeprobe_bench.tasks.ioi.recipe import vocabulary

    torch.manual_seed(0)
    directory = Path(tempfile.mkdtemp(prefix="bench_scale_tok_"))
    word_level_tokenizer(vocabulary()).save_pretrained(str(directory))
    tok = load_tokenizer(directory)
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=64, d_vocab=len(tok),
        act_fn="gelu_new", normalization_type="LN", default_prepend_bos=True, seed=0,
    )  # fmt: skip
    model = quiet_hooked_transformer(cfg, tok)
    model.eval()
    sae = TopKSAE(TopKSAEConfig(d_in=768, d_sae=d_sae, k=k))
    sae.cfg.metadata.hook_name = HOOK
    sae.eval()
    return Subject("gpt2-small-random", model, {HOOK: sae}, {"task": {"hook_name": HOOK}})


def backward_passes(meta: dict) -> int:
    """Backward passes a method recorded in its result meta (attribution, pool choice, priors)."""
    total = 0
    for key in ("cost", "pool_cost", "attribution_cost"):
        if isinstance(meta.get(key), dict):
            total += int(meta[key].get("backward_passes", 0))
    ref = meta.get("agreement", {}).get("reference_cost") if isinstance(meta.get("agreement"), dict) else None
    if isinstance(ref, dict):
        total += int(ref.get("backward_passes", 0))
    return total


def child(model: str, methods: list[str], mode: str, d_sae: int) -> None:
    """Run one cell per method (one subject load) and print each cell's figures as one JSON line."""
    import torch

    from deeprobe_bench import runner

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    opts = QUICK if mode == "quick" else FULL
    cache: dict = {}

    def loader(name: str):
        if "s" not in cache:
            cache["s"] = (
                gpt2_small_random(d_sae) if name == "gpt2-small-random" else runner.default_subject_loader(name)
            )
        return cache["s"]

    for method in methods:
        t0 = time.perf_counter()
        r = runner.run_cell("ioi", model, method, 0, task_options=dict(opts["task"]),
                            method_options=dict(opts["methods"].get(method, {})), results_dir=tempfile.mkdtemp(),
                            force=True, progress=False, subject_loader=loader)  # fmt: skip
        report(r, model, t0)


def report(r, model: str, t0: float) -> None:
    """Print one cell's figures as a ``BENCH {json}`` line."""
    import resource

    meta = (r.details or {}).get("features", {}).get("meta", {}) if r.details else {}
    primary = r.metrics.get("faithfulness_cpr") if r.metrics else None
    out = {
        "model": model,
        "method": r.method_label,
        "status": r.status,
        "error": r.error,
        "wall_s": r.wall_time_s,
        "prepare_s": (r.details or {}).get("timing", {}).get("prepare_s"),
        "process_s": round(time.perf_counter() - t0, 1),
        "forward_passes": r.forward_passes,
        "backward_passes": backward_passes(meta),
        "objective_calls": r.objective_calls,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "faithfulness_cpr": primary.get("value") if isinstance(primary, dict) else primary,
    }
    print("BENCH " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller splits and budgets (QUICK)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated IOI methods")
    ap.add_argument("--d-sae", type=int, default=24576, help="latents of the random SAE")
    ap.add_argument(
        "--models", default="gpt2-small-random,ioi-mini", help="comma-separated: gpt2-small-random, ioi-mini"
    )
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    mode = "quick" if args.quick else "full"
    if args.child:
        child(args.child[0], args.child[1].split(","), mode, args.d_sae)
        return
    methods = [m for m in args.methods.split(",") if m]
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in methods if m not in METHODS] + [m for m in models if m not in ("gpt2-small-random", "ioi-mini")]
    if bad:
        print(f"bench_scale: unknown method or model: {', '.join(bad)}", file=sys.stderr)
        sys.exit(2)
    env = dict(os.environ)
    env.setdefault("DEEPROBE_CACHE", tempfile.mkdtemp(prefix="bench_scale_cache_"))
    env["DEEPROBE_CACHE_MAX_SIZE"] = "off"
    opts = QUICK if args.quick else FULL
    print(f"mode {mode}: task options {opts['task'] or 'defaults'}; method options {opts['methods']}")
    print(f"threads {env['OMP_NUM_THREADS']}, d_sae {args.d_sae}, hook {HOOK}, cache {env['DEEPROBE_CACHE']}")
    rows = []
    t_all = time.perf_counter()
    for model in models:
        for method in methods:
            if model == "ioi-mini" and method != methods[0]:
                continue  # the zoo cells share one process (their peak memory is cumulative)
            batch = methods if model == "ioi-mini" else [method]
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                model,
                ",".join(batch),
                "--d-sae",
                str(args.d_sae),
            ]
            cmd += ["--quick"] if args.quick else []
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            done = []
            for line in proc.stdout:
                if line.startswith("BENCH "):
                    r = json.loads(line[6:])
                    done.append(r)
                    print(f"  {model:18s} {r['method']:32s} {r.get('status')}  wall {r.get('wall_s')} s  "
                          f"peak {r.get('peak_rss_mb')} MB", flush=True)  # fmt: skip
            err = proc.stderr.read()
            proc.wait()
            rows += done
            for m in batch[len(done) :]:
                tail = err.strip().splitlines()[-3:]
                rows.append({"model": model, "method": m, "status": f"crashed ({proc.returncode})",
                             "error": " | ".join(tail)})  # fmt: skip
    from tabulate import tabulate

    cols = ["model", "method", "status", "wall_s", "prepare_s", "forward_passes", "backward_passes",
            "objective_calls", "peak_rss_mb", "faithfulness_cpr"]  # fmt: skip
    print()
    print(tabulate([[r.get(c) for c in cols] for r in rows], headers=cols))
    scale = {r["method"]: r for r in rows if r["model"] == "gpt2-small-random"}
    zoo = {r["method"]: r for r in rows if r["model"] == "ioi-mini"}
    ratios = [[m, (scale[m]["wall_s"] / zoo[m]["wall_s"]) if zoo[m].get("wall_s") else None,
               (scale[m]["peak_rss_mb"] / zoo[m]["peak_rss_mb"]) if zoo[m].get("peak_rss_mb") else None]
              for m in scale if m in zoo and scale[m].get("wall_s") is not None]  # fmt: skip
    if ratios:
        print()
        print(tabulate(ratios, headers=["method", "wall x (gpt2-size / ioi-mini)", "peak memory x"], floatfmt=".2f"))
    for r in rows:
        if r.get("error"):
            print(f"{r['model']} {r['method']}: {r['error']}")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
