"""``deeprobe-bench``: the command line.

::

    deeprobe-bench [--plugin FILE_OR_MODULE ...] [-v | -q] COMMAND ...

    run --task T --method M[,M2] [--method M3] [--model NAME] [--seeds 0,1,2 | --seed N]
        [-T key=value ...] [-M key=value ...] [--results-dir results] [--force] [--limit N]
    ls tasks|methods|models
    leaderboard build [--results-dir results] [--out leaderboards] [--include-limited]
    zoo train NAME [--out DIR] [--seed N]
    zoo sanity NAME [--out DIR] [--seed N]
    zoo ls
    judge serve [--host 127.0.0.1] [--port 8765] [--fail 429=0.1,500=0.1,slow=0.05,garbage=0.1]
                [--slow-seconds S] [--seed N]
    cache ls
    cache prune [--max-size SIZE]

``--allow-override`` lets a ``--plugin`` take the name of a built-in (or installed) task, method or model.

``run`` with ``--judge-base-url URL --judge-model NAME`` (key from ``$DEEPROBE_JUDGE_API_KEY`` or
``--judge-api-key-env VAR``) scores every cell with the autointerp ``judge_score``; ``--judge-base-url
local``, or a judge-supervised method (``rlaif``) without a URL, uses the local judge server in-process.

The global options may also follow the command (``deeprobe-bench run --plugin my.py ...``).

Exit status: 0 success; 1 when a cell of ``run`` ended in error (its result records it) or on an
internal error; 2 for a mistake in what was asked (unknown name, bad option, bad file, a ``run`` of one cell
whose method returned an invalid feature set (recorded as its result too): one line
``deeprobe-bench: error: ...`` on stderr; the traceback only with ``--verbose``); 130 on Ctrl-C
(result files are written atomically, so nothing is left half-written). Every message printed passes
through :func:`deeprobe_bench.results.redact` (no API key, nothing after ``Bearer ``).

This is the one module that prints (tables and paths to stdout); everything else logs. Heavy
modules (runner, leaderboard: torch, pandas) are imported only by the commands that need them, so
``ls`` starts fast and never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from deeprobe_bench import api, registry
from deeprobe_bench.progress import setup_logging

PROG = "deeprobe-bench"
#: the published results (committed) and the tables built from them
PUBLISHED_RESULTS = "leaderboards/results"
PUBLISHED_TABLES = "leaderboards"
log = logging.getLogger("deeprobe_bench.cli")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line UserErrors (printed and exit 2 by :func:`main`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--see` must not guess between --seed and --seeds
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise api.UserError(f"{message} (see `{self.prog} --help`)")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}")
    return seeds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_options(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; a later key wins.

    Raises:
        api.UserError: an item without ``=`` or with an empty key.
    """
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise api.UserError(f"{flag} {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """The global options; on sub-commands they use other dests (merged in :func:`main`)."""
    pre = "" if top else "sub_"
    default = [] if top else argparse.SUPPRESS
    parser.add_argument(
        "--plugin",
        dest=f"{pre}plugins",
        action="append",
        default=default,
        metavar="FILE_OR_MODULE",
        help="load tasks / methods / models from a .py file or a module (repeatable)",
    )
    parser.add_argument(
        "--allow-override", dest=f"{pre}allow_override", action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="let a --plugin take the name of a built-in task, method or model (recorded in its results)",
    )  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", dest=f"{pre}verbose", action="store_true",
        default=False if top else argparse.SUPPRESS, help="debug messages and tracebacks",
    )
    group.add_argument(
        "-q", "--quiet", dest=f"{pre}quiet", action="store_true",
        default=False if top else argparse.SUPPRESS, help="warnings and errors only, no progress bars",
    )


def _add_judge_args(parser: argparse.ArgumentParser) -> None:
    """The judge options of ``run`` and ``calibrate``."""
    jg = parser.add_argument_group("judge (autointerp judge_score; needed by judge-supervised methods such as rlaif)")
    jg.add_argument("--judge-base-url", default=None, metavar="URL",
                    help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1; 'local' = the local judge "
                         "server in-process (the default when a judge method runs without a URL)")
    jg.add_argument("--judge-model", default=None, metavar="NAME", help="judge model name (required with a URL)")
    jg.add_argument("--judge-api-key-env", default=None, metavar="VAR",
                    help="environment variable holding the API key (default DEEPROBE_JUDGE_API_KEY); never recorded")
    jg.add_argument("--judge-concurrency", type=_positive_int, default=None, metavar="N",
                    help="judge requests in flight at most (default 4)")
    jg.add_argument("--judge-max-retries", type=int, default=None, metavar="N",
                    help="retries per request on 429 / 5xx / timeouts / malformed replies (default 5)")
    jg.add_argument("--judge-timeout", type=float, default=None, metavar="S", help="seconds per request (default 60)")
    jg.add_argument("--judge-cache", default=None, metavar="PATH",
                    help="SQLite cache of judge replies (default $DEEPROBE_CACHE/judge.sqlite)")
    jg.add_argument("--judge-price", default=None, metavar="IN,OUT",
                    help="USD per million prompt and completion tokens, for the recorded cost (default 0,0)")


def _add_cell_args(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``calibrate`` share: task, model, seeds, task options, results, judge."""
    parser.add_argument("--task", required=True, help="task name (see `ls tasks`)")
    parser.add_argument("--model", default=None, help="model name (default: the task's own zoo model)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,2", help="comma-separated seeds")
    seeds.add_argument("--seed", type=int, default=None, metavar="N", help="one seed (default 0)")
    parser.add_argument("-T", dest="task_options", action="append", default=[], metavar="KEY=VALUE",
                        help="task option (repeatable)")
    parser.add_argument("--results-dir", default="results", help="where result JSONs go (default: results)")
    parser.add_argument("--force", action="store_true", help="re-run cells that already have a finished result")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="use at most N examples per split (a quick look; recorded, never mixed with full runs)")
    _add_judge_args(parser)


def _seeds_of(args: argparse.Namespace) -> list[int]:
    """``--seeds`` or ``--seed`` (default 0), each checked to lie in 0 .. 2**32 - 1."""
    from deeprobe_bench.runner import MAX_SEED

    seeds = args.seeds if args.seeds is not None else [args.seed if args.seed is not None else 0]
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise api.UserError(f"seed {bad[0]} is out of range: seeds are integers from 0 to {MAX_SEED} (2**32 - 1)")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``deeprobe-bench``."""
    parser = _Parser(prog=PROG, description="Which feature-discovery method finds the features a model really uses?")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run methods on a task and record one result per (method, seed)")
    _add_common(run, top=False)
    run.add_argument("--method", action="append", required=True, metavar="NAME[,NAME]",
                     help="method name(s) (see `ls methods`); repeatable or comma-separated")
    run.add_argument("-M", dest="method_options", action="append", default=[], metavar="KEY=VALUE",
                     help="method option, applied to every --method (repeatable)")
    _add_cell_args(run)

    sw = sub.add_parser("sweep", help="run a grid (tasks x models x methods x seeds) from a grid file or the command line")
    _add_common(sw, top=False)
    sw.add_argument("grid", nargs="?", default=None, metavar="GRID.toml|GRID.yaml",
                    help="grid file ([[run]] entries: task, models, methods, method_options; seeds)")
    sw.add_argument("--task", default=None, help="one task (instead of a grid file)")
    sw.add_argument("--tasks", default=None, metavar="NAME[,NAME]", help="run only these tasks of the grid file")
    sw.add_argument("--model", action="append", default=None, metavar="NAME[,NAME]", help="model(s) for --task")
    sw.add_argument("--method", action="append", default=None, metavar="NAME[,NAME]", help="method(s) for --task")
    sw.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,2", help="seeds (overrides the grid file's)")
    sw.add_argument("-T", dest="task_options", action="append", default=[], metavar="KEY=VALUE", help="task option")
    sw.add_argument("-M", dest="method_options", action="append", default=[], metavar="KEY=VALUE", help="method option")
    sw.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N examples per split")
    sw.add_argument("--results-dir", default="results", help="where result JSONs go (default: results)")
    sw.add_argument("--force", action="store_true", help="re-run cells that already have a finished result")
    sw.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local (this machine; --workers processes) or ray (a Ray cluster; pip install -e '.[ray]')")
    sw.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="local processes (default 1: in process)")
    sw.add_argument("--address", default="auto", metavar="auto|HOST:PORT", help="the Ray cluster (default auto)")
    sw.add_argument("--max-retries", type=int, default=1, metavar="N",
                    help="Ray: runs of a cell whose worker died, before it is reported failed (default 1)")
    sw.add_argument("--judge-base-url", default=None, metavar="URL", help="judge of every cell ('local' or a URL)")
    sw.add_argument("--judge-model", default=None, metavar="NAME", help="judge model name (with a URL)")

    ver = sub.add_parser("verify", help="rerun published cells from their recorded configs and compare every metric")
    _add_common(ver, top=False)
    ver.add_argument("where", metavar="leaderboards/TASK",
                     help="a folder of result JSONs, or leaderboards/TASK (= leaderboards/results/TASK)")
    ver.add_argument("--cell", action="append", default=None, metavar="METHOD",
                     help="only cells of this method (name or label, e.g. sae[arch=standard]); repeatable")
    ver.add_argument("--seeds", type=_seeds, default=None, metavar="0,1,2", help="only these seeds")
    ver.add_argument("--model", default=None, help="only cells of this model")
    ver.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: bit-identical)")
    ver.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")

    cal = sub.add_parser("calibrate", help="floor (null) and ceiling (oracle) of every metric of a task")
    _add_common(cal, top=False)
    _add_cell_args(cal)

    ls = sub.add_parser("ls", help="list tasks, methods or models")
    _add_common(ls, top=False)
    ls.add_argument("what", choices=list(registry.KINDS))

    lb = sub.add_parser("leaderboard", help="leaderboard tables from result files")
    _add_common(lb, top=False)
    lb_sub = lb.add_subparsers(dest="lb_command", metavar="COMMAND", parser_class=_Parser)
    lb_sub.required = True
    build = lb_sub.add_parser("build", help="write <out>/<task>.md and .csv from the results")
    _add_common(build, top=False)
    build.add_argument("--results-dir", default=None,
                       help="where the result JSONs are (default: leaderboards/results, the published results)")
    build.add_argument("--out", default=None,
                       help="output folder (default: leaderboards, and only from the published results; "
                            "building into leaderboards/ from other results needs --out leaderboards)")
    build.add_argument("--html", action="store_true",
                       help="also write index.html, <task>.html and plots/*.png (tables with bootstrap intervals)")
    build.add_argument("--include-limited", action="store_true", help="also use --limit runs (marked in the file)")

    zoo = sub.add_parser("zoo", help="the project's own small models")
    _add_common(zoo, top=False)
    zoo_sub = zoo.add_subparsers(dest="zoo_command", metavar="COMMAND", parser_class=_Parser)
    zoo_sub.required = True
    train = zoo_sub.add_parser("train", help="train a zoo model (and its SAEs) from scratch")
    _add_common(train, top=False)
    train.add_argument("name", help="zoo model name (see `zoo ls`)")
    train.add_argument("--out", default=None,
                       help="output folder (default: the user's zoo, $DEEPROBE_ZOO or ~/.local/share/deeprobe_bench/zoo/NAME, "
                            "which loading then prefers to the shipped copy); an interrupted run resumes")  # fmt: skip
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    sanity = zoo_sub.add_parser("sanity", help="add the random-SAE sanity baselines (frozen decoder ...) to a trained zoo model")
    _add_common(sanity, top=False)
    sanity.add_argument("name", help="zoo model name (see `zoo ls`)")
    sanity.add_argument("--out", default=None,
                        help="the model folder to add them to (default: the copy `run` loads: the user's, else the shipped one)")
    sanity.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    zoo_ls = zoo_sub.add_parser("ls", help="same as `ls models`")
    _add_common(zoo_ls, top=False)

    _add_cache_parser(sub)

    judge = sub.add_parser("judge", help="the LLM judge")
    _add_common(judge, top=False)
    judge_sub = judge.add_subparsers(dest="judge_command", metavar="COMMAND", parser_class=_Parser)
    judge_sub.required = True
    serve = judge_sub.add_parser("serve", help="the local judge server (answers judge prompts from ground truth)")
    _add_common(serve, top=False)
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
    serve.add_argument("--fail", default=None, metavar="FAULT=P,...",
                       help="inject faults with these probabilities: 429, 500, 503, slow, garbage, badjson")
    serve.add_argument("--slow-seconds", type=float, default=5.0, metavar="S", help="delay of a 'slow' fault (default 5)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault draws (default 0)")
    return parser


def _add_cache_parser(sub: Any) -> None:
    """``cache ls`` and ``cache prune [--max-size SIZE]``."""
    cache = sub.add_parser("cache", help="the on-disk caches (activations, judge replies)")
    _add_common(cache, top=False)
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="COMMAND", parser_class=_Parser)
    cache_sub.required = True
    cache_ls = cache_sub.add_parser("ls", help="list the activation cache's entries and the caches' sizes")
    _add_common(cache_ls, top=False)
    prune = cache_sub.add_parser("prune", help="remove the least recently used activation cache entries")
    _add_common(prune, top=False)
    prune.add_argument("--max-size", default="0", metavar="SIZE",
                       help="keep at most SIZE (e.g. 500M, 2G; default 0: empty the activation cache)")


def _fix_negative_seeds(argv: list[str]) -> list[str]:
    """``--seeds -1,2`` -> ``--seeds=-1,2`` (argparse takes ``-1,2`` for an option), so the seed check answers."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if item in ("--seeds", "--seed") and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{item}={argv[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


def _merge_common(args: argparse.Namespace) -> None:
    args.allow_override = args.allow_override or getattr(args, "sub_allow_override", False)
    args.plugins = list(args.plugins) + list(getattr(args, "sub_plugins", []))
    args.verbose = args.verbose or getattr(args, "sub_verbose", False)
    args.quiet = (args.quiet or getattr(args, "sub_quiet", False)) and not args.verbose


# --------------------------------------------------------------------------- commands


def _split_methods(values: list[str]) -> list[str]:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        raise api.UserError("--method: no method name given")
    return list(dict.fromkeys(names))


def cmd_run(args: argparse.Namespace) -> int:
    from deeprobe_bench.activations import max_cache_bytes
    from deeprobe_bench.leaderboard import cells_table
    from deeprobe_bench.results import check_writable_dir
    from deeprobe_bench.runner import run_grid

    seeds = _seeds_of(args)
    methods = _split_methods(args.method)
    max_cache_bytes()  # a bad $DEEPROBE_CACHE_MAX_SIZE fails here, not after the first cell
    check_writable_dir(args.results_dir, "--results-dir")  # before the judge is opened or anything loads
    with _open_judge(args, methods) as judge:
        results = run_grid(
            args.task,
            args.model,
            methods,
            seeds,
            task_options=parse_options(args.task_options, "-T"),
            method_options=parse_options(args.method_options, "-M"),
            results_dir=args.results_dir,
            force=args.force,
            limit=args.limit,
            progress=not args.quiet,
            judge=judge,
        )
    if len(results) == 1 and not results[0].ok and (results[0].details or {}).get("stage") == "validate":
        raise api.UserError(results[0].error or "invalid feature set")  # one cell, a bad FeatureSet: exit 2 (recorded)
    _echo(cells_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        log.error("%d of %d cells failed; their results record the error (see details.traceback)", len(failed), len(results))
        return 1
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid on an executor; one progress bar; a summary (done, skipped, failed with errors) at the end."""
    from deeprobe_bench.cells import Grid, expand, load_grid, plan
    from deeprobe_bench.executors import make_executor
    from deeprobe_bench.progress import progress
    from deeprobe_bench.results import check_writable_dir

    if (args.grid is None) == (args.task is None):
        raise api.UserError("sweep: give a grid file or --task (with --method), not both" if args.grid
                            else "sweep: give a grid file or --task NAME --method NAME")
    if args.grid is not None:
        if args.model or args.method or args.task_options or args.method_options:
            raise api.UserError("sweep: --model / --method / -T / -M go with --task, not with a grid file")
        grid = load_grid(args.grid)
        if args.tasks:
            keep = set(_split_methods([args.tasks]))
            known = {t for e in grid.entries for t in ([e.get("task")] if "task" in e else e.get("tasks", []))}
            if keep - known:
                raise api.UserError(f"--tasks: {sorted(keep - known)[0]} is not a task of {args.grid} "
                                    f"(its tasks: {', '.join(sorted(known))})")
            grid.entries = [{**e, "tasks": [t for t in ([e["task"]] if "task" in e else e["tasks"]) if t in keep]}
                            for e in grid.entries]
            grid.entries = [{k: v for k, v in e.items() if k != "task"} for e in grid.entries if e["tasks"]]
    else:
        if not args.method:
            raise api.UserError("sweep --task needs --method NAME")
        entry: dict[str, Any] = {"task": args.task, "methods": _split_methods(args.method),
                                 "task_options": parse_options(args.task_options, "-T"),
                                 "method_options": parse_options(args.method_options, "-M")}
        if args.model:
            entry["models"] = _split_methods(args.model)
        grid = Grid(entries=[entry])
    if args.seeds is not None:
        grid.seeds = list(dict.fromkeys(args.seeds))
    if args.limit is not None:
        grid.limit = args.limit
    if args.judge_base_url is not None:
        grid.judge = {"base_url": args.judge_base_url, "model": args.judge_model}
    cells = expand(grid, plugins=args.plugins, allow_override=args.allow_override)
    if args.max_retries < 0:
        raise api.UserError(f"--max-retries must be >= 0, got {args.max_retries}")
    executor = make_executor(args.executor, workers=args.workers, address=args.address, max_retries=args.max_retries)
    check_writable_dir(args.results_dir, "--results-dir")
    todo, skipped = plan(cells, args.results_dir, force=args.force)
    log.info("sweep: %d cells, %d finished already, %d to run (%s executor)", len(cells), len(skipped), len(todo),
             args.executor)
    with progress(total=len(cells), desc="grid", unit="cell", initial=len(skipped)) as bar:
        outcomes = executor.run(todo, args.results_dir, force=args.force, on_done=lambda o: bar.update(1))
    done = [o for o in outcomes if o.status == "done"]
    failed = [o for o in outcomes if o.status == "failed"]
    n_skipped = len(skipped) + sum(o.status == "skipped" for o in outcomes)
    _echo(f"sweep: {len(done)} done, {n_skipped} skipped (finished), {len(failed)} failed, of {len(cells)} cells")
    for o in failed:
        _echo(f"  failed {o.cell.name()}: {_one_line(_redact(o.error or 'error'))}")
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Rerun published cells; print per metric published / rerun / agreement; exit 1 on any mismatch."""
    from pathlib import Path

    from tabulate import tabulate

    from deeprobe_bench.cells import verify
    from deeprobe_bench.results import git_info, load_results

    where = Path(args.where)
    if not where.is_dir() and (where.parent / "results" / where.name).is_dir():
        where = where.parent / "results" / where.name
    elif where.is_dir() and not any(where.rglob("*.json")) and (where.parent / "results" / where.name).is_dir():
        where = where.parent / "results" / where.name
    if not where.is_dir():
        raise api.UserError(f"verify: {args.where} is not a folder of results (nor is {where.parent / 'results' / where.name})")
    if args.rtol < 0 or args.atol < 0:
        raise api.UserError("verify: --rtol and --atol must be >= 0")
    results = [r for r in load_results(where) if r.ok]
    if args.cell:
        want = set(_split_methods(args.cell))
        results = [r for r in results if r.method in want or r.method_label in want]
    if args.seeds is not None:
        results = [r for r in results if r.seed in set(args.seeds)]
    if args.model is not None:
        results = [r for r in results if r.model == args.model]
    if not results:
        raise api.UserError(f"verify: no finished result in {where} matches --cell / --seeds / --model")
    head = git_info()[0]
    for c in sorted({r.git_commit for r in results if r.git_commit and r.git_commit != head}):
        log.warning("verify: cells recorded at commit %s are rerun at %s (check out that commit to rerun them as they ran)",
                    c[:12], (head or "unknown")[:12])
    checks = verify(results, rtol=args.rtol, atol=args.atol,
                    on_cell=lambda pub, rerun: log.info("verified %s/%s/%s/seed%s", pub.task, pub.model,
                                                        pub.method_label, pub.seed))
    bad = [c for c in checks if not c.ok]
    rows = bad if bad else checks
    _echo(tabulate([{"cell": c.cell, "metric": c.metric, "published": c.published, "rerun": c.rerun,
                     "diff": (c.rerun - c.published) if isinstance(c.rerun, int | float) and isinstance(c.published, int | float) else None,
                     "ok": "yes" if c.ok else "NO"} for c in rows], headers="keys", tablefmt="github", floatfmt=".17g"))
    n_cells = len({c.cell for c in checks})
    _echo(f"verify: {len(checks) - len(bad)} of {len(checks)} metrics of {n_cells} cells agree"
          f" ({'bit-identical' if args.rtol == args.atol == 0 else f'rtol {args.rtol}, atol {args.atol}'})")
    return 1 if bad else 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run the reference methods on a task and print each metric's floor, ceiling and verdict.

    Exit status 0 when every metric with a verdict separates the references, 1 when one does not.
    """
    from tabulate import tabulate

    from deeprobe_bench import calibration
    from deeprobe_bench.results import check_writable_dir
    from deeprobe_bench.runner import run_grid

    seeds = _seeds_of(args)
    task_cls = registry.get_task(args.task)
    check_writable_dir(args.results_dir, "--results-dir")
    with _open_judge(args, ["oracle", "null"]) as judge:  # judge_score is calibrated too when a judge is given
        results = run_grid(args.task, args.model, ["oracle", "null"], seeds,
                           task_options=parse_options(args.task_options, "-T"), results_dir=args.results_dir,
                           force=args.force, limit=args.limit, progress=not args.quiet, judge=judge)  # fmt: skip
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("%s seed %d failed: %s", r.method, r.seed, r.error)
    rows = calibration.calibrate([r for r in results if r.method == "oracle"], [r for r in results if r.method == "null"],
                                 getattr(task_cls, "calibration_notes", {}),
                                 getattr(task_cls, "calibration_chance", {}))  # fmt: skip
    model = results[0].model if results else args.model
    _echo(f"calibration of {args.task} on {model}, seeds {', '.join(map(str, seeds))} "
          f"(separates: oracle - null >= {calibration.MIN_GAP} in the better direction)")  # fmt: skip
    _echo(tabulate(calibration.table(rows), headers="keys", tablefmt="github", disable_numparse=True))
    return 0 if not failed and all(r.ok for r in rows) else 1


def _open_judge(args: argparse.Namespace, methods: list[str]) -> Any:
    """The run's judge (a context manager yielding a JudgeClient or None); see ``deeprobe_bench.judge.open_judge``."""
    from deeprobe_bench.judge import open_judge

    needed = any(registry.get_method(m).supervision == "judge" for m in methods)
    price_in = price_out = None
    if args.judge_price is not None:
        try:
            price_in, price_out = (float(x) for x in args.judge_price.split(","))
        except ValueError:
            raise api.UserError(f"--judge-price {args.judge_price!r}: expected IN,OUT in USD per million tokens") from None
    return open_judge(
        args.judge_base_url,
        args.judge_model,
        needed=needed,
        api_key_env=args.judge_api_key_env,
        max_concurrency=args.judge_concurrency,
        max_retries=args.judge_max_retries,
        timeout_s=args.judge_timeout,
        cache_path=args.judge_cache,
        price_in_per_mtok=price_in,
        price_out_per_mtok=price_out,
    )


def cmd_judge_serve(args: argparse.Namespace) -> int:
    import os

    from deeprobe_bench.judge import LocalJudgeServer
    from deeprobe_bench.judge.server import TOKEN_ENV, parse_fault_spec

    # The token of the write endpoints: $DEEPROBE_JUDGE_SERVER_TOKEN if set, else drawn; never printed.
    server = LocalJudgeServer(args.host, args.port, fail=parse_fault_spec(args.fail), slow_s=args.slow_seconds,
                              seed=args.seed, token=os.environ.get(TOKEN_ENV) or None)  # fmt: skip
    server.start()
    try:
        token_file = server.write_token_file()
    except BaseException:
        server.stop()
        raise
    if token_file is not None:
        where = f"token in {token_file}, where clients of this account find it"
    elif os.environ.get(TOKEN_ENV):
        where = f"token from ${TOKEN_ENV}"
    else:
        where = f"no token file (DEEPROBE_CACHE=off): set ${TOKEN_ENV} for this server and its clients"
    _echo(f"local judge server on {server.base_url} ({where}; Ctrl-C stops it)")
    server.wait_until_interrupted()
    return 0


def _ls_rows(kind: str) -> tuple[list[dict[str, Any]], int]:
    entries = registry.list_entries(kind)
    rows: list[dict[str, Any]] = []
    broken = 0
    for e in entries:
        row: dict[str, Any] = {"name": e.name}
        if kind == "methods":
            row["supervision"] = e.supervision or ""
        if kind == "tasks":
            row["default model"] = getattr(e.obj, "default_model", "") or ""
        if e.broken:
            broken += 1
            row["description"] = f"BROKEN: {e.error}"
        else:
            row["description"] = e.description
        row["source"] = e.dist or e.source
        rows.append(row)
    return rows, broken


def cmd_ls(kind: str) -> int:
    from tabulate import tabulate

    rows, _broken = _ls_rows(kind)
    if not rows:
        _echo(f"(no {kind} registered)")
        return 0
    _echo(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    return 0


def cmd_leaderboard_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deeprobe_bench.leaderboard import write_leaderboards
    from deeprobe_bench.results import check_writable_dir

    results_dir = args.results_dir or PUBLISHED_RESULTS
    if not Path(results_dir).is_dir():
        raise api.UserError(f"results folder {results_dir} does not exist (run `deeprobe-bench run ...` first)")
    out = args.out
    if out is None:
        if Path(results_dir).resolve() != Path(PUBLISHED_RESULTS).resolve():
            raise api.UserError(f"building from {results_dir} would overwrite the published tables in "
                                f"{PUBLISHED_TABLES}/: pass --out DIR (--out {PUBLISHED_TABLES} to replace them on purpose)")
        out = PUBLISHED_TABLES
    check_writable_dir(out, "--out")
    paths = write_leaderboards(results_dir, out, include_limited=args.include_limited)
    if args.html:
        from deeprobe_bench.leaderboard import write_html

        paths += write_html(results_dir, out, include_limited=args.include_limited)
    if not paths:
        log.warning("no finished results in %s; no leaderboard written", results_dir)
    for p in paths:
        _echo(p)
    return 0


def cmd_zoo_train(args: argparse.Namespace) -> int:
    """``zoo train`` (the model and its SAEs) and ``zoo sanity`` (the sanity-baseline SAEs of a trained copy)."""
    spec = registry.get_model_spec(args.name)
    train = getattr(spec, "train" if args.zoo_command == "train" else "add_sanity_saes", None)
    if not callable(train):
        raise api.UserError(f"model {args.name} is not a zoo model: it cannot be trained here (see `deeprobe-bench zoo ls`)")
    if args.seed < 0:
        raise api.UserError(f"--seed must be >= 0, got {args.seed}")
    from pathlib import Path

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise api.UserError(f"--out {args.out} is a file, not a folder")
    from deeprobe_bench.zoo.lm import WorkDirBusy

    quiet = args.quiet or not sys.stderr.isatty()  # sae_lens's trainer draws tqdm bars: none in a log file
    try:
        with _tqdm_disabled(quiet):
            out = train(out_dir=args.out, seed=args.seed)
    except (WorkDirBusy, PermissionError) as e:  # another run holds the checkpoint, or a foreign work dir
        raise api.UserError(str(e)) from None
    if out is not None:
        _echo(out)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """``cache ls``: the activation cache's entries (least recently used first) and each cache's size;
    ``cache prune --max-size SIZE``: remove the least recently used activation entries above SIZE."""
    from datetime import datetime, timezone

    from tabulate import tabulate

    from deeprobe_bench.activations import cache_dir, cache_entries, max_cache_bytes, parse_size, prune
    from deeprobe_bench.judge.cache import default_cache_path

    if args.cache_command == "prune":
        limit = parse_size(args.max_size)
        removed, freed = prune(limit)
        _echo(f"removed {removed} activation cache entries ({freed / 1e6:.1f} MB); "
              f"{sum(e[1] for e in cache_entries()) / 1e6:.1f} MB left in {cache_dir()}")  # fmt: skip
        return 0
    directory = cache_dir()
    if directory is None:
        _echo("caching is off (DEEPROBE_CACHE=off)")
        return 0
    entries = cache_entries()
    rows = [{"entry": p.name, "MB": f"{size / 1e6:.2f}",
             "last used (UTC)": datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}
            for p, size, t in entries]  # fmt: skip
    if rows:
        _echo(tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True))
    limit = max_cache_bytes()
    total = sum(size for _, size, _ in entries)
    _echo(f"activations: {len(entries)} entries, {total / 1e6:.1f} MB in {directory} "
          f"(limit {'none' if limit is None else f'{limit / 1e6:.1f} MB'}, $DEEPROBE_CACHE_MAX_SIZE)")  # fmt: skip
    judge_path = default_cache_path()
    if judge_path is not None:
        size = judge_path.stat().st_size if judge_path.is_file() else 0
        _echo(f"judge replies: {size / 1e6:.1f} MB in {judge_path} (not pruned: replies cost tokens to ask again)")
    return 0


@contextlib.contextmanager
def _tqdm_disabled(disabled: bool) -> Iterator[None]:
    """Every tqdm bar created inside the block is disabled (when ``disabled``), then tqdm is as before.

    tqdm reads ``TQDM_DISABLE`` only when it is first imported, which sae_lens has done by now, so the
    default is set on the class for the duration of the block instead.
    """
    if not disabled:
        yield
        return
    from tqdm import std

    init = std.tqdm.__init__
    std.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init


def _quiet_third_party() -> None:
    """``--quiet`` silences the progress bars of the libraries we call too (datasets, huggingface_hub,
    transformers); ours honour ``--quiet`` through :mod:`deeprobe_bench.progress`."""
    import os

    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for module, func in (("datasets", "disable_progress_bars"), ("huggingface_hub.utils", "disable_progress_bars"),
                         ("transformers.utils.logging", "disable_progress_bar")):  # fmt: skip
        mod = sys.modules.get(module)  # already imported: switch it off now (else the variables above do it)
        if mod is not None and callable(getattr(mod, func, None)):
            getattr(mod, func)()


class _RedactFilter(logging.Filter):
    """Removes registered secrets (and anything after ``Bearer ``) from every log record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        from deeprobe_bench.results import redact

        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return cmd_run(args)
    if args.command == "calibrate":
        return cmd_calibrate(args)
    if args.command == "sweep":
        return cmd_sweep(args)
    if args.command == "verify":
        return cmd_verify(args)
    if args.command == "ls":
        return cmd_ls(args.what)
    if args.command == "leaderboard":
        return cmd_leaderboard_build(args)
    if args.command == "judge":
        return cmd_judge_serve(args)
    if args.command == "cache":
        return cmd_cache(args)
    if args.command == "zoo":
        if args.zoo_command in ("train", "sanity"):
            return cmd_zoo_train(args)
        return cmd_ls("models")
    raise api.UserError(f"unknown command {args.command}")  # pragma: no cover - argparse prevents it


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deeprobe-bench`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    verbose = False
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(_fix_negative_seeds(list(sys.argv[1:] if argv is None else argv)))
        except SystemExit as e:  # --help
            return int(e.code or 0) if not isinstance(e.code, str) else 2
        _merge_common(args)
        verbose = args.verbose
        logger = setup_logging(verbose=args.verbose, quiet=args.quiet)
        for handler in logger.handlers:
            if not any(isinstance(f, _RedactFilter) for f in handler.filters):
                handler.addFilter(_RedactFilter())
        if args.quiet:
            _quiet_third_party()
        registry.load_plugins(args.plugins, allow_override=args.allow_override)
        return _dispatch(args)
    except api.UserError as e:
        if verbose:
            _echo(_redact(traceback.format_exc()).rstrip(), err=True)
        _echo(f"{PROG}: error: {_one_line(_redact(str(e)))}", err=True)
        return 2
    except KeyboardInterrupt:
        _echo(f"{PROG}: interrupted", err=True)
        return 130
    except BrokenPipeError:  # `deeprobe-bench ls methods | head`
        return 0
    except Exception as e:
        _echo(_redact(traceback.format_exc()).rstrip(), err=True)
        _echo(f"{PROG}: internal error: {type(e).__name__}: {_one_line(_redact(str(e)))} (please report it)", err=True)
        return 1


def _echo(text: Any, err: bool = False) -> None:
    """Print ``text`` to stdout (or stderr): the CLI is the one place that prints."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n")
    stream.flush()


def _redact(text: str) -> str:
    from deeprobe_bench.results import redact

    return redact(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
