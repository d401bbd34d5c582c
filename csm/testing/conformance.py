"""The plugin conformance suite: :func:`check_problem` and its :class:`ConformanceReport`.

A plugin author calls it in one line from a test: ``csm.testing.check_problem(MyLoss())``;
``csm check NAME`` runs the same from the shell (docs/plugin-authoring.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._results import to_jsonable
from ..maps import FD_STEP_FACTOR, fd_jacobian, local_curvature
from ..problem import Classification, CriticalPoint

__all__ = ["check_problem", "ConformanceReport"]


@dataclass(frozen=True)
class ConformanceReport:
    """Outcome of :func:`check_problem`: one ``(name, passed, detail)`` row per check."""

    problem: str
    checks: tuple[tuple[str, bool, str], ...]

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"problem": self.problem, "passed": self.passed,
                            "checks": [list(c) for c in self.checks]})

    def __str__(self) -> str:
        lines = [f"conformance of {self.problem!r}: {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  [{'ok' if ok else 'FAIL'}] {n}: {d}" for n, ok, d in self.checks]
        return "\n".join(lines)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def check_problem(
    problem: Any,
    *,
    seed: int = 0,
    n: int = 16,
    step: float | None = None,
    grad_tol: float = 1e-6,
    hess_tol: float = 1e-5,
    hvp_tol: float = 1e-6,
    critical_tol: float = 1e-8,
    eig_tol: float = 1e-8,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Run the conformance checks every csm problem must pass (docs/plugin-authoring.md §4).

    Checks
    ------
    1. attributes ``name`` (str) and ``dim`` (int >= 1), methods ``loss``, ``gradient``,
       ``sample``, ``critical_points``;
    2. ``sample(rng, n)`` has shape ``(n, dim)``, is finite, and is reproducible from a seed;
    3. shapes and batching: ``loss`` maps ``(d,) -> float`` and ``(B, d) -> (B,)``, ``gradient``
       ``(B, d) -> (B, d)``, and batch rows equal single-point calls;
    4. ``gradient`` equals central differences of ``loss`` at sampled points (max relative error
       ``<= grad_tol``);
    5. ``hessian`` (if present) equals central differences of ``gradient`` (``<= hess_tol``) and
       is symmetric;
    6. ``hvp`` (if present) maps ``(B, d), (B, d) -> (B, d)`` and ``(d,), (d,) -> (d,)``, equals
       ``hessian(x) @ v`` (if ``hessian`` is present) and the central differences
       ``(G(x + h v) - G(x - h v)) / (2 h)`` along random unit vectors ``v``, with
       ``h = eps^(1/3) max(1, |x|_inf) / |v|_inf`` (docs/theory.md §1.9), each with max
       relative error
       ``max|hvp - ref| / max(1, max|ref|) <= hvp_tol``;
    7. every ``critical_points()`` entry: ``|gradient| <= critical_tol``, ``loss`` matches its
       stated value, and its kind agrees with the curvature of the (local) gradient map:
       with ``H = (I - D Psi) / step`` from ``local_map(point, step)`` (or the Hessian),
       strict saddles have ``lambda_min(H) < -eig_tol``, minima ``lambda_min(H) >= -eig_tol``,
       maxima ``lambda_max(H) <= eig_tol``; ``classify`` (if present) returns the stated kind.

    Parameters
    ----------
    problem : Problem
    seed, n : int
        Seed and number of sampled points.
    grad_tol, hess_tol, hvp_tol : float
        Relative tolerances of checks 4, 5 and 6.
    step : float, optional
        Step for ``local_map`` (default 1e-2).
    raise_on_failure : bool
        Raise ``AssertionError`` listing every failed check (default) or return the report.
    """
    rows: list[tuple[str, bool, str]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        rows.append((name, bool(ok), detail))

    name = getattr(problem, "name", None)
    dim = getattr(problem, "dim", None)
    missing = [a for a in ("loss", "gradient", "sample", "critical_points")
               if not callable(getattr(problem, a, None))]
    add("interface", isinstance(name, str) and isinstance(dim, (int, np.integer)) and dim >= 1
        and not missing, f"name={name!r}, dim={dim!r}, missing methods={missing}")
    if missing or not isinstance(dim, (int, np.integer)):
        return _finish(str(name), rows, raise_on_failure)
    d = int(dim)

    X = np.asarray(problem.sample(np.random.default_rng(seed), n), dtype=float)
    X2 = np.asarray(problem.sample(np.random.default_rng(seed), n), dtype=float)
    add("sample", X.shape == (n, d) and bool(np.all(np.isfinite(X))) and np.array_equal(X, X2),
        f"shape {X.shape} (expected {(n, d)}), reproducible={np.array_equal(X, X2)}")
    if X.shape != (n, d):
        return _finish(name, rows, raise_on_failure)

    Lb = np.asarray(problem.loss(X), dtype=float)
    Gb = np.asarray(problem.gradient(X), dtype=float)
    l0 = problem.loss(X[0])
    g0 = np.asarray(problem.gradient(X[0]))
    ok = (Lb.shape == (n,) and Gb.shape == (n, d) and np.ndim(l0) == 0 and g0.shape == (d,)
          and np.allclose(Lb[0], l0, rtol=1e-12, atol=1e-14)
          and np.allclose(Gb[0], g0, rtol=1e-12, atol=1e-14))
    add("batching", ok, f"loss batch {Lb.shape}, gradient batch {Gb.shape}, single loss "
        f"ndim {np.ndim(l0)}, single gradient {g0.shape}")
    add("finite", bool(np.all(np.isfinite(Lb)) and np.all(np.isfinite(Gb))),
        "loss and gradient finite at sampled points")

    # gradient vs central differences of the loss (batched)
    def loss_flat(Y: np.ndarray) -> np.ndarray:
        return np.asarray(problem.loss(Y), dtype=float)[:, None]

    Gfd = fd_jacobian(loss_flat, X)[:, 0, :]
    err = _rel(Gb, Gfd)
    add("gradient-vs-fd", err <= grad_tol, f"max relative error {err:.2e} (tol {grad_tol:g})")

    hess = getattr(problem, "hessian", None)
    if callable(hess):
        H = np.asarray(hess(X), dtype=float)
        Hfd = fd_jacobian(lambda Y: np.asarray(problem.gradient(Y), dtype=float), X)
        errh = _rel(H, Hfd)
        asym = float(np.max(np.abs(H - np.swapaxes(H, 1, 2)))) if H.ndim == 3 else float("inf")
        add("hessian-vs-fd", H.shape == (n, d, d) and errh <= hess_tol,
            f"shape {H.shape}, max relative error {errh:.2e} (tol {hess_tol:g})")
        add("hessian-symmetric", asym <= 1e-10 * max(1.0, float(np.max(np.abs(H)))),
            f"max |H - H^T| = {asym:.2e}")

    hvp = getattr(problem, "hvp", None)
    if callable(hvp):
        V = np.random.default_rng(seed + 1).standard_normal((n, d))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        HV = np.asarray(hvp(X, V), dtype=float)
        hv0 = np.asarray(hvp(X[0], V[0]), dtype=float)
        add("hvp-batching", HV.shape == (n, d) and hv0.shape == (d,) and np.allclose(
            HV[0], hv0, rtol=1e-12, atol=1e-14), f"batch {HV.shape}, single {hv0.shape}")
        if HV.shape == (n, d) and callable(hess) and H.shape == (n, d, d):
            err = _rel(HV, np.einsum("bij,bj->bi", H, V))
            add("hvp-vs-hessian", err <= hvp_tol,
                f"max relative error {err:.2e} (tol {hvp_tol:g})")
        if HV.shape == (n, d):  # central differences along v (docs/theory.md §1.9)
            h = (FD_STEP_FACTOR * np.maximum(1.0, np.max(np.abs(X), axis=1))
                 / np.max(np.abs(V), axis=1))[:, None]
            G2 = np.asarray(problem.gradient(np.concatenate([X + h * V, X - h * V])), dtype=float)
            err = _rel(HV, (G2[:n] - G2[n:]) / (2.0 * h))
            add("hvp-vs-fd", err <= hvp_tol, f"max relative error {err:.2e} (tol {hvp_tol:g})")

    gamma = 1e-2 if step is None else float(step)
    cps: Sequence[CriticalPoint] = list(problem.critical_points())
    add("critical-points-type", all(isinstance(c, CriticalPoint) for c in cps),
        f"{len(cps)} entries")
    labels = [c.label for c in cps]
    add("critical-points-unique-labels", len(set(labels)) == len(labels),
        f"duplicate labels: {sorted({x for x in labels if labels.count(x) > 1})}")
    classify = getattr(problem, "classify", None)
    for cp in cps:
        th = cp.theta
        gnorm = float(np.linalg.norm(problem.gradient(th)))
        lv = float(problem.loss(th))
        add(f"critical[{cp.label}]-gradient", gnorm <= critical_tol,
            f"|G| = {gnorm:.2e} (tol {critical_tol:g})")
        add(f"critical[{cp.label}]-loss", abs(lv - cp.loss) <= 1e-9 * max(1.0, abs(cp.loss)),
            f"loss {lv:.15g} vs stated {cp.loss:.15g}")
        Hc = local_curvature(problem, cp, gamma)
        if Hc is not None:
            w = np.linalg.eigvalsh(0.5 * (Hc + Hc.T))
            scale = max(1.0, float(np.max(np.abs(w))))
            tol_e = eig_tol * scale
            if cp.kind == "strict_saddle":
                ok = w[0] < -tol_e
            elif cp.kind in ("global_minimum", "local_minimum"):
                ok = w[0] >= -tol_e
            elif cp.kind == "local_maximum":
                ok = w[-1] <= tol_e
            else:
                ok = True
            add(f"critical[{cp.label}]-kind", ok,
                f"kind {cp.kind}, curvature eigenvalues min {w[0]:.3e} max {w[-1]:.3e}")
        if callable(classify):
            c = classify(th)
            add(f"critical[{cp.label}]-classify", isinstance(c, Classification) and c.kind == cp.kind,
                f"classify -> {getattr(c, 'kind', c)!r}, stated {cp.kind!r}")
    return _finish(name, rows, raise_on_failure)


def _finish(name: str, rows: list, raise_on_failure: bool) -> ConformanceReport:
    rep = ConformanceReport(problem=str(name), checks=tuple(rows))
    if raise_on_failure and not rep.passed:
        raise AssertionError(str(rep))
    return rep
