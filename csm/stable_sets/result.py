"""The result of a stable-set estimate: :class:`StableSetEstimate` (docs/theory.md §8)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._results import Result, to_jsonable
from ..confidence import clopper_pearson
from ..errors import InputError
from ..identify import SADDLE_KINDS, UNDECIDED_KINDS
from ..orbits import CONVERGED, DIVERGED, UNCONVERGED
from ..problem import KINDS

__all__ = ["StableSetEstimate", "summarise", "ARRAY_KEYS", "SPECIAL_LABELS",
           "UNIDENTIFIED_LABEL", "UNCONVERGED_LABEL", "DIVERGED_LABEL"]

#: Labels used for runs that have no critical point as limit.
UNIDENTIFIED_LABEL = "unidentified"
UNCONVERGED_LABEL = "unconverged"
DIVERGED_LABEL = "diverged"
SPECIAL_LABELS = (UNIDENTIFIED_LABEL, UNCONVERGED_LABEL, DIVERGED_LABEL)

#: The per-run arrays of an estimate (and of every checkpointed chunk).
ARRAY_KEYS = ("theta0", "theta", "loss", "grad_norm", "steps", "status", "rule", "polished", "label", "kind",
              "via", "certified_kind", "least_eigenvalue", "disagree", "layer", "slow_label",
              "slow_distance")


@dataclass(frozen=True, eq=False)
class StableSetEstimate(Result):
    """Outcome of :func:`estimate_stable_set`.

    Every run has a *class* (its ``label``): the label of the critical point it converged to
    (from ``problem.classify``, the listed critical points, or the limit's own spectral
    certificate, :mod:`csm.identify`), ``"unconverged"`` (step budget exhausted) or
    ``"diverged"``.  Runs that converged but that no test could decide have kind
    ``"degenerate"`` (or ``"unidentified"`` when certification was switched off).

    **The headline never folds an undecided run into "not a saddle"**: ``saddle_ci`` is the
    interval for the runs *certified* to converge into a saddle; ``saddle_ci_undecided`` the
    interval when every undecided run (unconverged, degenerate, unidentified) is counted as a
    possible saddle.  The saddle probability lies in ``[saddle_ci[0], saddle_ci_undecided[1]]``
    at the stated confidence (each end at that confidence).

    Attributes
    ----------
    problem : str
        Problem name.
    dim, step, n, seed, max_steps, tol, patience, chunk_size : settings of the run.
    confidence : float
        Coverage of every interval (Clopper--Pearson, exact).
    labels : tuple of str
        The classes, critical points first (by increasing limit loss), then the special ones.
    counts : dict label -> int
    kinds : dict label -> str
        Kind of each class (one of :data:`csm.KINDS`, ``"not_critical"``, or the class name
        itself for the special classes).
    losses : dict label -> float
        Median limit loss of the runs in the class.
    ci : dict label -> (low, high)
        Exact interval for the probability of the class.
    kind_counts, kind_ci : dict kind -> int / (low, high)
        The same per kind (every kind of :data:`csm.KINDS` listed, zeros included).
    saddle_count, saddle_fraction, saddle_ci :
        Runs that converged to a critical point of a kind in :data:`SADDLE_KINDS`
        (strict or non-strict saddle, local maximum): the stable set of Corollary 2.3 /
        Theorem 4.7.  For 0 hits ``saddle_ci[1] = 1 - (a/2)^{1/n} ~= 3.69/n``.
    target, target_count, target_fraction, target_ci :
        The same for the kinds/labels named by ``target`` (default: :data:`SADDLE_KINDS`).
    undecided_count : int
        Runs that are unconverged or converged to an undecided limit.
    unconverged_count, diverged_count : int
    saddle_ci_undecided : (low, high)
        The interval for (saddle + undecided) runs.
    via_counts : dict
        How the converged runs were identified (``classify``, ``critical_point``,
        ``spectrum``, ``sublevel``).
    polished_count : int
        Converged runs whose limit was refined (``polish=True``).
    disagree_count : int
        Runs named by ``classify`` or a listed point whose own spectral certificate disagrees
        on "saddle or not" (a plugin bug or a tolerance problem: look at them).
    slow_escape_count : int
        Unconverged runs that ended within ``slow_radius`` of a known saddle.
    slow_escape : dict label -> int
        Those runs by nearest saddle.
    loss_histogram : dict
        ``{"edges": [...], "counts": [...]}`` of the limit losses of converged runs.
    steps_summary : dict
        Mean, median, max of the steps used (all runs).
    chunks, chunks_loaded : int
        Number of chunks, and how many were read back from a checkpoint.
    seconds : float
        Wall-clock time of this call.
    arrays : dict name -> ndarray
        Per run: ``theta0 (n, d)``, ``theta (n, d)`` (limit or last iterate), ``loss``,
        ``grad_norm`` (at the last iterate), ``steps``, ``status`` (0 converged, 1 diverged,
        2 unconverged), ``label``, ``kind``, ``layer`` (-1: none), ``slow_label`` ("" when
        not a slow escape), ``slow_distance`` (distance to that saddle, NaN otherwise).
        Not part of :meth:`to_dict`; written by :meth:`save`.
    """

    problem: str
    dim: int
    step: float
    step_rule: str
    n: int
    seed: int
    max_steps: int
    tol: float
    patience: int
    chunk_size: int
    confidence: float
    labels: tuple[str, ...]
    counts: Mapping[str, int]
    kinds: Mapping[str, str]
    losses: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]
    kind_counts: Mapping[str, int]
    kind_ci: Mapping[str, tuple[float, float]]
    saddle_count: int
    saddle_fraction: float
    saddle_ci: tuple[float, float]
    target: tuple[str, ...]
    target_count: int
    target_fraction: float
    target_ci: tuple[float, float]
    undecided_count: int
    unconverged_count: int
    diverged_count: int
    saddle_ci_undecided: tuple[float, float]
    via_counts: Mapping[str, int]
    disagree_count: int
    polished_count: int
    slow_escape_count: int
    slow_escape: Mapping[str, int]
    loss_histogram: Mapping[str, Any]
    steps_summary: Mapping[str, float]
    chunks: int
    chunks_loaded: int
    seconds: float
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    _NOT_SERIALISED = ("arrays",)

    @property
    def success(self) -> bool:
        """True when every run was decided (converged and identified, or diverged)."""
        return self.undecided_count == 0

    @property
    def message(self) -> str:
        """The headline: saddle count, its interval, and what is undecided."""
        pct = f"{100 * self.confidence:g}%"
        msg = (f"into saddles: {self.saddle_count}/{self.n} ({pct} CI [{self.saddle_ci[0]:.3g}, "
               f"{self.saddle_ci[1]:.3g}])")
        if self.undecided_count:
            msg += (f"; undecided {self.undecided_count}/{self.n} ({self.unconverged_count} "
                    f"unconverged): counting them as possible saddles, CI "
                    f"[{self.saddle_ci_undecided[0]:.3g}, {self.saddle_ci_undecided[1]:.3g}]")
        else:
            msg += "; every run decided"
        if self.disagree_count:
            msg += f"; {self.disagree_count} runs whose listed kind disagrees with their spectrum"
        return msg

    def fraction(self, label: str) -> float:
        """Fraction of runs in class ``label`` (0 for a class never seen)."""
        return self.counts.get(label, 0) / self.n

    def table(self) -> list[dict[str, Any]]:
        """One row per class: label, kind, loss, count, fraction, ci_low, ci_high."""
        return [
            {"label": lab, "kind": self.kinds[lab], "loss": self.losses[lab],
             "count": self.counts[lab], "fraction": self.counts[lab] / self.n,
             "ci_low": self.ci[lab][0], "ci_high": self.ci[lab][1]}
            for lab in self.labels
        ]

    def summary(self) -> str:
        """A plain-text table of the classes, the saddle fraction and the slow escapes."""
        pct = f"{100 * self.confidence:g}%"
        lines = [
            (f"stable set of {self.problem} (d = {self.dim}): {self.n} runs, {self.step_rule}, "
             f"<= {self.max_steps} steps, converged when |G| <= {self.tol:g} for "
             f"{self.patience} steps"),
            f"{'class':<28} {'kind':<16} {'loss':>11} {'count':>7} {'fraction':>9}  {pct} CI",
        ]
        for row in self.table():
            lines.append(
                f"{row['label'][:28]:<28} {row['kind'][:16]:<16} {row['loss']:>11.4g} "
                f"{row['count']:>7d} {row['fraction']:>9.4f}  "
                f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}]")
        lines.append(self.message)
        if self.slow_escape_count:
            near = ", ".join(f"{k}: {v}" for k, v in self.slow_escape.items())
            lines.append(f"slow escapes (unconverged near a saddle): {self.slow_escape_count} "
                         f"({near})")
        st = self.steps_summary
        lines.append(f"steps: mean {st['mean']:.1f}, median {st['median']:.0f}, max {st['max']}"
                     f" ({self.seconds:.1f} s, {self.chunks} chunks, {self.chunks_loaded} "
                     "from checkpoint)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no per-run arrays; see :meth:`save`)."""
        out = super().to_dict()
        out["table"] = to_jsonable(self.table())
        return out

    def save(self, path: str | Path) -> Path:
        """Write the per-run arrays and the summary (as JSON) to one ``.npz`` file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "arrays"}
        np.savez_compressed(path, _meta=np.array(json.dumps(to_jsonable(meta))),
                            **{k: np.asarray(v) for k, v in self.arrays.items()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StableSetEstimate":
        """Read an estimate written by :meth:`save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(str(z["_meta"]))
                arrays = {k: z[k] for k in z.files if k != "_meta"}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise InputError(f"`path` {str(path)!r} is not an estimate written by "
                             f"StableSetEstimate.save: {exc}") from None
        fields = set(cls.__dataclass_fields__) - {"arrays"}
        if not isinstance(meta, dict) or set(meta) != fields:
            got = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
            raise InputError(f"`path` {str(path)!r}: the saved summary has fields {got}, expected "
                             f"{sorted(fields)} (written by another csm version?)")
        for key in ("saddle_ci", "target_ci", "saddle_ci_undecided"):
            meta[key] = tuple(meta[key])
        meta["labels"] = tuple(meta["labels"])
        meta["target"] = tuple(meta["target"])
        meta["ci"] = {k: tuple(v) for k, v in meta["ci"].items()}
        meta["kind_ci"] = {k: tuple(v) for k, v in meta["kind_ci"].items()}
        meta["losses"] = {k: float(v) for k, v in meta["losses"].items()}  # "nan" -> nan
        return cls(**meta, arrays=arrays)


def summarise(arrays: dict[str, np.ndarray], *, target: tuple[str, ...], bins: int,
               **settings: Any) -> StableSetEstimate:
    n = settings["n"]
    conf = settings["confidence"]
    label, kind, status, loss = arrays["label"], arrays["kind"], arrays["status"], arrays["loss"]
    uniq, counts = np.unique(label, return_counts=True)
    count_of = dict(zip(uniq.tolist(), counts.tolist()))
    kinds: dict[str, str] = {}
    losses: dict[str, float] = {}
    for lab in count_of:
        m = label == lab
        ks, kc = np.unique(kind[m], return_counts=True)
        kinds[lab] = str(ks[np.argmax(kc)])
        vals = loss[m][np.isfinite(loss[m])]
        losses[lab] = float(np.median(vals)) if vals.size else float("nan")
    finite = [abs(v) for v in losses.values() if math.isfinite(v)]
    quantum = 1e-8 * max([1.0] + finite)  # order by loss level, ties (to 1e-8) by label
    crit = sorted((lab for lab in count_of if lab not in SPECIAL_LABELS),
                  key=lambda s: (round(losses[s] / quantum) if math.isfinite(losses[s])
                                 else math.inf, s))
    labels = tuple(crit + [s for s in SPECIAL_LABELS if s in count_of])
    ci = {lab: clopper_pearson(count_of[lab], n, conf) for lab in labels}

    conv = status == CONVERGED
    kind_names = list(KINDS) + sorted(set(kind[conv].tolist()) - set(KINDS))
    kind_counts = {k: int(np.count_nonzero(conv & (kind == k))) for k in kind_names}
    kind_ci = {k: clopper_pearson(c, n, conf) for k, c in kind_counts.items()}
    saddle = int(np.count_nonzero(conv & np.isin(kind, SADDLE_KINDS)))
    tmask = conv & (np.isin(kind, target) | np.isin(label, target))
    tcount = int(np.count_nonzero(tmask))

    undecided = (status == UNCONVERGED) | (conv & np.isin(kind, UNDECIDED_KINDS))
    n_und = int(np.count_nonzero(undecided))
    vias, vcounts = np.unique(arrays["via"][conv], return_counts=True)
    slow = arrays["slow_label"] != ""
    sl, sc = np.unique(arrays["slow_label"][slow], return_counts=True)
    lv = loss[conv & np.isfinite(loss)]
    if lv.size:
        lo, hi = float(lv.min()), float(lv.max())
        width = 1e-6 * max(abs(lo), abs(hi), 1.0)
        if hi - lo < width:  # (near-)constant losses: a window of relative width 1e-6
            lo, hi = 0.5 * (lo + hi) - width / 2, 0.5 * (lo + hi) + width / 2
        hc, he = np.histogram(lv, bins=bins, range=(lo, hi))
    else:
        hc, he = np.zeros(0, dtype=int), np.zeros(0)
    st = arrays["steps"]
    return StableSetEstimate(
        labels=labels,
        counts={lab: int(count_of[lab]) for lab in labels},
        kinds={lab: kinds[lab] for lab in labels},
        losses={lab: losses[lab] for lab in labels},
        ci=ci,
        kind_counts=kind_counts,
        kind_ci=kind_ci,
        saddle_count=saddle,
        saddle_fraction=saddle / n,
        saddle_ci=clopper_pearson(saddle, n, conf),
        target=target,
        target_count=tcount,
        target_fraction=tcount / n,
        target_ci=clopper_pearson(tcount, n, conf),
        undecided_count=n_und,
        unconverged_count=int(np.count_nonzero(status == UNCONVERGED)),
        diverged_count=int(np.count_nonzero(status == DIVERGED)),
        saddle_ci_undecided=clopper_pearson(saddle + n_und, n, conf),
        via_counts=dict(zip(vias.tolist(), (int(c) for c in vcounts))),
        disagree_count=int(np.count_nonzero(arrays["disagree"])),
        polished_count=int(np.count_nonzero(arrays["polished"])),
        slow_escape_count=int(np.count_nonzero(slow)),
        slow_escape=dict(zip(sl.tolist(), (int(c) for c in sc))),
        loss_histogram={"edges": he.tolist(), "counts": hc.tolist()},
        steps_summary={"mean": float(st.mean()), "median": float(np.median(st)),
                       "max": int(st.max())},
        arrays=arrays,
        **settings,
    )


