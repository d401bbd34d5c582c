"""``csm reproduce``: run every experiment the plugins contribute and write a report.

Writes ``OUT/report.md`` (claims with measured figures and whether they agree, tables, figures),
``OUT/data/*.npz`` (per-run arrays of the stable-set estimates),
``OUT/results.json`` (everything, JSON-safe) and the PNG figures the experiments produced in
``OUT/figures``.  An experiment that raises is reported as failed; the others still run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .._results import to_jsonable
from ..errors import ParameterError
from ..plugin.manager import list_experiments
from .types import Claim, Experiment, ExperimentConfig, ExperimentResult

__all__ = ["run_experiments", "write_report", "Report"]


@dataclass(frozen=True)
class Report:
    """The results of ``csm reproduce``: one :class:`ExperimentResult` per experiment."""

    results: tuple[ExperimentResult, ...]
    quick: bool
    seed: int
    seconds: float
    out_dir: Path

    @property
    def agrees(self) -> bool:
        return all(r.agrees for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "quick": self.quick, "seed": self.seed, "seconds": self.seconds,
            "agrees": self.agrees, "experiments": [r.to_dict() for r in self.results],
        })


def _failed(exp: Experiment, exc: BaseException, seconds: float) -> ExperimentResult:
    tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return ExperimentResult(
        name=exp.name, reference=exp.reference,
        claims=[Claim("the experiment runs to completion", exp.reference, f"raised {tb}", False)],
        data={"traceback": traceback.format_exc()}, seconds=seconds,
    )


def run_experiments(
    config: ExperimentConfig,
    *,
    only: Sequence[str] | None = None,
    experiments: Sequence[Experiment] | None = None,
) -> Report:
    """Run the selected experiments (all by default) with ``config``; never stops at a failure."""
    exps = list(experiments) if experiments is not None else list_experiments()
    if only:
        known = {e.name for e in exps}
        unknown = sorted(set(only) - known)
        if unknown:
            raise ParameterError(
                f"`--only` names unknown experiment(s) {unknown}; known: {sorted(known)}"
            )
        exps = [e for e in exps if e.name in set(only)]
    out = Path(config.out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(exps, desc="experiments", unit="exp", disable=not config.progress, file=None)
    for exp in bar:
        bar.set_postfix_str(exp.name)
        t = time.perf_counter()
        try:
            res = exp.run(config)
            if not isinstance(res, ExperimentResult):
                raise TypeError(f"run() returned {type(res).__name__}, expected ExperimentResult")
            res = ExperimentResult(
                name=res.name, reference=res.reference, claims=tuple(res.claims),
                tables=res.tables, figures=res.figures, data=res.data,
                seconds=time.perf_counter() - t,
            )
        except Exception as exc:  # noqa: BLE001 - report and continue
            res = _failed(exp, exc, time.perf_counter() - t)
        results.append(res)
    return Report(tuple(results), bool(config.quick), int(config.seed),
                  time.perf_counter() - t0, out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[dict]) -> str:
    if not rows:
        return "_(empty)_\n"
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    lines = ["| " + " | ".join(_fmt(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: Report) -> Path:
    """Write ``report.md`` and ``results.json`` into ``report.out_dir``; return the report path."""
    out = Path(report.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(report.to_dict(), indent=2))
    os.replace(tmp, out / "results.json")
    n_claims = sum(len(r.claims) for r in report.results)
    n_ok = sum(c.agrees for r in report.results for c in r.claims)
    md = [
        "# csm reproduce — report",
        "",
        f"Mode: {'quick' if report.quick else 'full'} · seed {report.seed} · "
        f"{len(report.results)} experiments · {report.seconds:.1f} s · "
        f"**{n_ok}/{n_claims} claims agree**",
        "",
        "| experiment | reference | claims agreeing | seconds |",
        "|---|---|---|---|",
    ]
    for r in report.results:
        md.append(f"| [{r.name}](#{r.name}) | {r.reference} | "
                  f"{sum(c.agrees for c in r.claims)}/{len(r.claims)} | {r.seconds:.1f} |")
    for r in report.results:
        md += ["", f"## {r.name}", "", f"*{r.reference}*", "",
               "| claim | reference | measured | agrees |", "|---|---|---|---|"]
        for c in r.claims:
            md.append(f"| {_fmt(c.statement)} | {_fmt(c.reference)} | {_fmt(c.measured)} | "
                      f"{'yes' if c.agrees else '**NO**'} |")
        for title, rows in r.tables.items():
            md += ["", f"**{title}**", "", _table([dict(x) for x in rows])]
        for title, path in r.figures.items():
            rel = os.path.relpath(path, out) if os.path.isabs(str(path)) else str(path)
            md += ["", f"![{title}]({rel})", ""]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
