"""The ``csm`` command.

Exit status: 0 success, 1 a check failed (or a reproduced claim disagrees) or a plugin failed
(:class:`~csm.errors.PluginError`: its constructor or its code raised something other than
``TypeError``/``ValueError``), 2 bad usage or input (unknown problem, bad parameters); errors
are one line on stderr, ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any, Sequence


from .errors import CsmError, InputError, ParameterError, PluginError
from ._results import to_jsonable

__all__ = ["main", "build_parser"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2
        raise _UsageError(f"{self.prog}: {message}")


def _count(minimum: int):
    """argparse type: an integer >= ``minimum`` (the error names the flag through argparse)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {v}")
        return v
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def _step(text: str) -> Any:
    """argparse type: a step size or a schedule ("0.05", "geometric:0.05,0.995", ...)."""
    from .errors import InputError as _InputError
    from .schedules import as_schedule

    try:
        sched = as_schedule(text)
    except _InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    gamma = getattr(sched, "gamma", None)
    return float(gamma) if gamma is not None and type(sched).__name__ == "Constant" else sched


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching: a terminal, not --json, not --quiet."""
    return not (args.json or args.quiet) and sys.stderr.isatty()


def _parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"`-p` takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise ParameterError(f"`-p` key must be an identifier, got {k!r}")
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    return params


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(to_jsonable(payload), indent=2))
    else:
        print(text)


def _cmd_list(args: argparse.Namespace) -> int:
    from .plugin.manager import list_experiments, list_problems, plugin_manager

    probs = list_problems()
    exps = list_experiments()
    payload = {"problems": {k: v.to_dict() for k, v in sorted(probs.items())},
               "experiments": [e.to_dict() for e in exps],
               "plugin_errors": [str(e) for e in plugin_manager().load_errors]}
    width = max([len(k) for k in probs] + [8])
    lines = ["problems:"]
    lines += [f"  {k:<{width}}  {v.description}" for k, v in sorted(probs.items())]
    lines += ["experiments:"] + [f"  {e.name}  ({e.reference})" for e in exps]
    _emit(args, payload, "\n".join(lines))
    return 0


def _problem(args: argparse.Namespace):
    from .plugin.manager import get_problem

    return get_problem(args.problem, **_parse_params(args.param))


def _cmd_check(args: argparse.Namespace) -> int:
    from .testing import check_problem

    rep = check_problem(_problem(args), seed=args.seed, raise_on_failure=False)
    _emit(args, rep, str(rep))
    return 0 if rep.passed else 1


def _find_point(problem: Any, label: str):
    cps = list(problem.critical_points())
    for cp in cps:
        if cp.label == label:
            return cp
    raise ParameterError(
        f"`--point` {label!r} is not a known critical point of {problem.name!r}; known labels: "
        f"{[c.label for c in cps] or 'none'}"
    )


def _found_saddle(problem: Any, args: argparse.Namespace):
    """A strict saddle from :func:`csm.critical.find_critical_points` (most unstable first)."""
    from .critical import find_critical_points

    search = find_critical_points(problem, args.n_starts, rng=args.seed)
    saddles = [c for c in search.points if c.kind == "strict_saddle"
               and c.info.get("certified_kind", "strict_saddle") == "strict_saddle"]
    saddles.sort(key=lambda c: c.info["least_eigenvalue"])
    if args.point is not None:
        saddles = [c for c in search.points if c.label == args.point]
    if not saddles:
        raise ParameterError(
            f"`--find`: no {'point labelled ' + repr(args.point) if args.point else 'certified strict saddle'} "
            f"among the critical points found from {args.n_starts} starts ({search.message}); "
            "try more `--n-starts`")
    return saddles[0]


def _cmd_find(args: argparse.Namespace) -> int:
    from .critical import find_critical_points

    search = find_critical_points(_problem(args), args.n_starts, rng=args.seed, gtol=args.gtol)
    lines = [search.message, f"{'label':<36} {'kind':<16} {'certified':<16} {'loss':>12} "
             f"{'least eig':>11} {'hits':>5}"]
    for c in search.points[: args.show]:
        lines.append(f"{c.label[:36]:<36} {c.kind:<16} {c.info['certified_kind']:<16} "
                     f"{c.loss:>12.6g} {c.info['least_eigenvalue']:>11.3g} {c.info['hits']:>5d}")
    if len(search.points) > args.show:
        lines.append(f"... {len(search.points) - args.show} more (--show, or --json for all)")
    _emit(args, search, "\n".join(lines))
    return 0 if search.success else 1


def _cmd_manifold(args: argparse.Namespace) -> int:
    from .manifold import center_stable_manifold
    from .problem import gd_map

    problem = _problem(args)
    if args.find:
        cp = _found_saddle(problem, args)
    elif args.point is None:
        raise ParameterError("`csm manifold` needs `--point LABEL` (see `csm check`) or `--find`")
    else:
        cp = _find_point(problem, args.point)
    g = gd_map(problem, cp, args.step)
    m = center_stable_manifold(g, cp.theta, radius=args.radius, tol=args.tol)
    ver = m.verify(n=args.n_verify)
    payload = {"point": cp.to_dict(), "manifold": m.to_dict(), "verification": ver.to_dict()}
    ev = ", ".join(f"{abs(x):.6g}" for x in m.eigenvalues_u)
    text = "\n".join([
        f"center-stable manifold of GD (step {args.step}) at {cp.label} ({cp.kind}, loss {cp.loss:.6g})",
        f"  dim E_cs = {m.dim_cs}, dim E_u = {m.dim_u}; unstable |eigenvalues|: {ev}",
        f"  radius {m.radius:.4g}, contraction kappa {m.contraction:.3g}, Lip(phi) <= "
        f"{m.lipschitz_bound:.3g}, horizon K = {m.horizon}",
        f"  verify: invariance residual {ver.invariance_residual:.2e}, graph orbits stay "
        f"{ver.graph_stay_median:.0f} steps (median); pushed off by {ver.deltas} exit after "
        f"{ver.exit_median} steps (predicted band "
        f"{tuple((round(f, 1), round(p, 1)) for f, p in zip(ver.exit_predicted_fast, ver.exit_predicted_slow))})",
        f"  kappa {'proved' if m.kappa_certified else 'estimated by adversarial search'}; {ver.message}",
        f"  {'PASSED' if ver.passed else 'FAILED'}",
    ])
    _emit(args, payload, text)
    return 0 if ver.passed else 1


def _executor(args: argparse.Namespace):
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            raise InputError(
                "`--dask` needs the optional dependency: pip install 'csm[distributed]'"
            ) from None
        client = Client(args.dask)
        return client.get_executor(), client.close
    if args.workers > 1:
        from .parallel import process_pool

        ex = process_pool(args.workers)
        return ex, ex.shutdown
    return None, lambda: None


def _cmd_stable_set(args: argparse.Namespace) -> int:
    from .stable_sets import estimate_stable_set

    problem = _problem(args)
    ex, close = _executor(args)
    try:
        kw: dict[str, Any] = {"executor": ex, "checkpoint": args.checkpoint, "seed": args.seed,
                              "progress": _progress(args), "momentum": args.momentum,
                              "nesterov": args.nesterov}
        if args.max_steps is not None:
            kw["max_steps"] = args.max_steps
        if args.tol is not None:
            kw["tol"] = args.tol
        if args.sgd_batch is not None or args.sgd_noise:
            from .stochastic import StochasticGradient

            kw["stochastic"] = StochasticGradient(args.sgd_batch, args.sgd_noise)
            kw["stochastic_steps"] = args.sgd_steps
        est = estimate_stable_set(problem, args.step, n=args.n, **kw)
    finally:
        close()
    _emit(args, est, str(est.summary() if hasattr(est, "summary") else est))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments import ExperimentConfig, run_experiments, write_report

    cfg = ExperimentConfig(quick=args.quick, out_dir=Path(args.out), seed=args.seed,
                           progress=_progress(args), command=["csm", *args.argv])
    rep = run_experiments(cfg, only=args.only)
    path = write_report(rep)
    lines = [f"{'ok ' if r.agrees else 'FAIL'} {r.name}: "
             f"{sum(c.agrees for c in r.claims)}/{len(r.claims)} claims agree ({r.seconds:.1f} s)"
             for r in rep.results]
    lines.append(f"report: {path}")
    _emit(args, rep, "\n".join(lines))
    return 0 if rep.agrees else 1


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help texts that show every default."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    def common_flags(parser: argparse.ArgumentParser, top: bool) -> None:
        # given before or after the command (`csm --json list` = `csm list --json`): the
        # sub-command copies default to SUPPRESS so they never reset a top-level flag
        kw = {} if top else {"default": argparse.SUPPRESS}
        parser.add_argument("--json", action="store_true", help="machine-readable output", **kw)
        parser.add_argument("--quiet", "-q", action="store_true",
                            help="no progress bars (they are shown only on a terminal anyway)", **kw)
        parser.add_argument("--debug", action="store_true", help="show tracebacks", **kw)

    common = argparse.ArgumentParser(add_help=False)
    common_flags(common, top=False)
    p = _Parser(prog="csm", description="Center-stable manifold analysis of gradient-descent maps.",
                formatter_class=_Help)
    common_flags(p, top=True)
    p.add_argument("--version", action="version", version=f"csm {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], formatter_class=_Help, **kw)

    def with_problem(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("problem", help="problem name (see `csm list`)")
        sp.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                        help="problem parameter (repeatable), e.g. -p N=4 -p 'interval=(0,1)'")
        sp.add_argument("--seed", type=_count(0), default=0, help="random seed")

    sp = add("list", help="registered problems and experiments")
    sp.set_defaults(func=_cmd_list)

    sp = add("check", help="run the conformance checks on a problem")
    with_problem(sp)
    sp.set_defaults(func=_cmd_check)

    sp = add("manifold", help="center-stable manifold (Theorem 2.2) at a known critical point")
    with_problem(sp)
    sp.add_argument("--point", default=None, help="critical-point label (required without --find)")
    sp.add_argument("--find", action="store_true",
                    help="locate the saddle with csm.critical.find_critical_points (the certified "
                    "strict saddle with the most negative curvature, or the found point "
                    "labelled --point)")
    sp.add_argument("--n-starts", type=_count(1), default=200, help="starts of --find")
    sp.add_argument("--step", type=_positive, default=0.05, help="gradient-descent step size")
    sp.add_argument("--radius", type=_positive, default=None,
                    help="ball radius eps (default: the largest with kappa <= 0.5)")
    sp.add_argument("--tol", type=_positive, default=1e-10, help="accuracy of the graph")
    sp.add_argument("--n-verify", type=_count(1), default=32,
                    help="graph points used by the a-posteriori verification")
    sp.set_defaults(func=_cmd_manifold)

    sp = add("find", help="find critical points of a problem from many starts, certified")
    with_problem(sp)
    sp.add_argument("--n-starts", type=_count(1), default=400, help="number of starts")
    sp.add_argument("--gtol", type=_positive, default=1e-10, help="critical when |G| <= gtol")
    sp.add_argument("--show", type=_count(0), default=20, help="rows shown")
    sp.set_defaults(func=_cmd_find)

    sp = add("stable-set", help="Monte Carlo estimate of where gradient descent converges")
    with_problem(sp)
    sp.add_argument("-n", type=_count(1), default=10_000, help="number of initialisations")
    sp.add_argument("--step", type=_step, default=0.05,
                    help="step size, or a schedule: constant:G, geometric:G0,RATE, poly:G0,POWER")
    sp.add_argument("--momentum", type=float, default=0.0,
                    help="heavy-ball momentum beta in [0, 1) (0: plain gradient descent)")
    sp.add_argument("--nesterov", action="store_true", help="Nesterov instead of heavy ball")
    sp.add_argument("--sgd-batch", type=_count(1), default=None, metavar="B",
                    help="SGD with mini-batches of B samples (finite-sum problems) for the first "
                    "--sgd-steps steps, then GD")
    sp.add_argument("--sgd-noise", type=_positive, default=0.0, metavar="SIGMA",
                    help="SGD with additive Gaussian noise SIGMA per coordinate")
    sp.add_argument("--sgd-steps", type=_count(0), default=1000, metavar="S",
                    help="number of stochastic steps before GD takes over (default 1000)")
    sp.add_argument("--max-steps", type=_count(0), default=None,
                    help="step budget (default: the problem's default_max_steps, else 10000)")
    sp.add_argument("--tol", type=_positive, default=None,
                    help="convergence: |G| <= tol for `patience` steps (default: the problem's "
                    "default_tol, else 1e-6)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--workers", type=_count(1), default=1, help="local worker processes")
    g.add_argument("--dask", metavar="ADDRESS", help="Dask scheduler address")
    sp.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint/resume directory")
    sp.set_defaults(func=_cmd_stable_set)

    sp = add("reproduce", help="reproduce the paper's applications")
    sp.add_argument("--quick", action="store_true", help="reduced run (about 2 min on 2 cores)")
    sp.add_argument("--out", default="csm-report", help="output directory")
    sp.add_argument("--seed", type=_count(0), default=0, help="random seed")
    sp.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    sp.set_defaults(func=_cmd_reproduce)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return int(args.func(args))
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except PluginError as exc:  # a plugin failed (not the user's input): exit 1, one line
        if debug:
            raise
        print(f"csm: error: {exc} (--debug shows the traceback)", file=sys.stderr)
        return 1
    except (CsmError, ValueError) as exc:
        if debug:
            raise
        if isinstance(exc, CsmError) and not isinstance(exc, ValueError):
            print(f"csm: error: {exc}", file=sys.stderr)
            return 1
        print(f"csm: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `csm ... | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # unwritable --out, missing checkpoint folder permissions, ...
        if debug:
            raise
        print(f"csm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("csm: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            raise
        print("csm: error: out of memory; reduce the problem size (-p) or the number of runs (-n)",
              file=sys.stderr)
        return 2
    except Exception as exc:  # raised by plugin code (e.g. a gradient): exit 1, one line
        from .plugin.manager import plugin_error_for

        err = plugin_error_for(exc, problem=getattr(args, "problem", None))
        if debug or err is None:  # not a plugin's failure: a csm bug, show the traceback
            raise
        print(f"csm: error: {err} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
