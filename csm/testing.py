"""Test utilities: the plugin conformance suite and maps with exactly known manifolds.

* :func:`check_problem` -- the checks every loss must pass; a plugin author calls it in one
  line from a test: ``csm.testing.check_problem(MyLoss())``.
* :func:`conjugated_graph_map` -- a map on ``R^d`` whose center-stable manifold is a known
  graph (MATH.md §1.3, "analytic test cases"), conjugated by a random well-conditioned matrix.
* :class:`RotatedQuartic` -- a gradient-descent test problem of any dimension with a cheap
  Hessian-vector product, for the matrix-free path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.linalg import block_diag

from .maps import Map, fd_jacobian, local_curvature
from .problem import Classification, CriticalPoint, ProblemBase, to_jsonable

__all__ = [
    "check_problem",
    "ConformanceReport",
    "GraphTestCase",
    "conjugated_graph_map",
    "RotatedQuartic",
    "random_orthogonal",
]


# --------------------------------------------------------------------------------------
# Conformance suite
# --------------------------------------------------------------------------------------


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
    critical_tol: float = 1e-8,
    eig_tol: float = 1e-8,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Run the conformance checks every csm problem must pass (DESIGN.md, "Conformance suite").

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
    6. every ``critical_points()`` entry: ``|gradient| <= critical_tol``, ``loss`` matches its
       stated value, and its kind agrees with the curvature of the (local) gradient map:
       with ``H = (I - D Psi) / step`` from ``local_map(point, step)`` (or the Hessian),
       strict saddles have ``lambda_min(H) < -eig_tol``, minima ``lambda_min(H) >= -eig_tol``,
       maxima ``lambda_max(H) <= eig_tol``; ``classify`` (if present) returns the stated kind.

    Parameters
    ----------
    problem : Problem
    seed, n : int
        Seed and number of sampled points.
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


# --------------------------------------------------------------------------------------
# Maps with known center-stable manifolds
# --------------------------------------------------------------------------------------


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with sign fix)."""
    Z = rng.standard_normal((d, d))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))[None, :]


def _real_block(eigs: Sequence[complex]) -> tuple[np.ndarray, int]:
    """Real block-diagonal matrix for eigenvalues (complex ones given once, as a+ib with b>0)."""
    blocks = []
    for lam in eigs:
        lam = complex(lam)
        if lam.imag == 0:
            blocks.append(np.array([[lam.real]]))
        else:
            a, b = lam.real, abs(lam.imag)
            blocks.append(np.array([[a, b], [-b, a]]))
    M = block_diag(*blocks)
    return M, M.shape[0]


@dataclass(frozen=True)
class GraphTestCase:
    """A map with an exactly known center-stable manifold ``q = Phi(p)`` in z-coordinates.

    ``x = fixed_point + Q z``, ``z = (p, q)``.  :meth:`graph_error` gives, for points ``X``,
    ``|q - Phi(p)|`` -- the distance of each point from the exact manifold along E_u in
    z-coordinates (independent of which eigenbasis csm picks).
    """

    map: Map
    fixed_point: np.ndarray
    Q: np.ndarray
    dim_cs: int
    dim_u: int
    phi: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def z(self, X: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(X) - self.fixed_point) @ np.linalg.inv(self.Q).T

    def graph_error(self, X: np.ndarray) -> np.ndarray:
        Z = self.z(X)
        p, q = Z[:, : self.dim_cs], Z[:, self.dim_cs:]
        return np.linalg.norm(q - self.phi(p), axis=1)


def conjugated_graph_map(
    eigs_cs: Sequence[complex],
    eigs_u: Sequence[complex],
    *,
    nonlinearity: str = "quadratic",
    scale: float = 1.0,
    seed: int = 0,
    cond: float = 3.0,
    fixed_point: np.ndarray | None = None,
) -> GraphTestCase:
    """Build ``g`` with the exactly invariant, exactly center-stable graph ``q = Phi(p)``.

    In z-coordinates ``g(p, q) = (Lambda_cs p, Lambda_u q + Phi(Lambda_cs p) - Lambda_u Phi(p))``,
    so ``q - Phi(p)`` is multiplied by ``Lambda_u`` at each step: orbits off the graph leave
    every small ball, orbits on it follow the linear center-stable dynamics.  ``Phi`` has
    ``Phi(0) = 0``, ``D Phi(0) = 0``:

    * ``"quadratic"``: ``Phi_i(p) = p^T C_i p`` (C-infinity);
    * ``"abs"``: ``Phi_i(p) = sum_j c_ij p_j |p_j|`` (C^1, not twice differentiable at
      ``p_j = 0``: a Lipschitz-derivative remainder that is not C^2);
    * ``"mixed"``: the sum of both.

    Complex eigenvalues are given once (``a + ib``, ``b != 0``) and stand for a conjugate pair
    (a real 2x2 block).  ``x = x* + Q z`` with ``Q = U diag(s) V^T``, ``s`` log-spaced in
    ``[1, cond]``.  The analytic Jacobian is supplied.
    """
    rng = np.random.default_rng(seed)
    Lcs, k = _real_block(eigs_cs)
    Lu, m = _real_block(eigs_u)
    d = k + m
    C = rng.standard_normal((m, k, k)) * scale / max(1, k)
    Cabs = rng.standard_normal((m, k)) * scale / max(1, k)
    use_q = nonlinearity in ("quadratic", "mixed")
    use_a = nonlinearity in ("abs", "mixed")
    if not (use_q or use_a):
        raise ValueError(f"`nonlinearity` must be 'quadratic', 'abs' or 'mixed', got {nonlinearity!r}")

    def phi(P: np.ndarray) -> np.ndarray:
        out = np.zeros((P.shape[0], m))
        if use_q:  # sum_ij P_i C_mij P_j: one matrix product per output coordinate
            for i in range(m):
                out[:, i] += np.einsum("bj,bj->b", P @ C[i], P)
        if use_a:
            out += (P * np.abs(P)) @ Cabs.T
        return out

    def dphi(P: np.ndarray) -> np.ndarray:  # (B, m, k)
        out = np.zeros((P.shape[0], m, k))
        if use_q:
            out += np.einsum("mij,bj->bmi", C + np.swapaxes(C, 1, 2), P)
        if use_a:
            out += 2.0 * Cabs[None] * np.abs(P)[:, None, :]
        return out

    U = random_orthogonal(d, rng)
    V = random_orthogonal(d, rng)
    s = np.geomspace(1.0, cond, d)
    Q = (U * s) @ V.T
    Qi = np.linalg.inv(Q)
    x0 = np.zeros(d) if fixed_point is None else np.asarray(fixed_point, dtype=float)

    def g(X: np.ndarray) -> np.ndarray:
        Z = (X - x0) @ Qi.T
        P, Qq = Z[:, :k], Z[:, k:]
        LP = P @ Lcs.T
        newq = Qq @ Lu.T + phi(LP) - phi(P) @ Lu.T
        return x0 + np.concatenate([LP, newq], axis=1) @ Q.T

    def jac(X: np.ndarray) -> np.ndarray:
        Z = (X - x0) @ Qi.T
        P = Z[:, :k]
        B = X.shape[0]
        Jz = np.zeros((B, d, d))
        Jz[:, :k, :k] = Lcs
        Jz[:, k:, k:] = Lu
        Jz[:, k:, :k] = dphi(P @ Lcs.T) @ Lcs - np.einsum("ij,bjk->bik", Lu, dphi(P))
        return Q @ Jz @ Qi

    mp = Map(g, jac, dim=d, name=f"conjugated_graph_map[{nonlinearity}]")
    return GraphTestCase(map=mp, fixed_point=x0, Q=Q, dim_cs=k, dim_u=m, phi=phi)


# --------------------------------------------------------------------------------------
# A gradient-descent problem of any dimension with a cheap Hessian-vector product
# --------------------------------------------------------------------------------------


class RotatedQuartic(ProblemBase):
    """``L(x) = sum_i a_i u_i^2/2 + b u_i^4/4 + c s(u) |u_cs|^2``, ``u = R^T x``.

    ``R`` is a product of ``n_reflect`` random Householder reflections (applied in O(d)), the
    first ``dim_u`` coefficients ``a_i`` are negative (strict saddle at 0 with ``dim_u``
    unstable directions of gradient descent), the others positive.  ``s(u) = sum_{i<dim_u} u_i``.

    With ``coupling = 0`` the GD map is separable in ``u`` and the center-stable manifold at 0 is
    exactly ``{u_i = 0, i < dim_u}`` (graph 0): orbits in it stay in it, the others escape.
    Hessian-vector products cost O(d), so the matrix-free construction scales to large ``d``.
    """

    def __init__(self, dim: int = 1000, dim_u: int = 3, *, coupling: float = 0.0,
                 quartic: float = 1.0, n_reflect: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = int(dim)
        self.dim_u = int(dim_u)
        self.name = f"rotated_quartic(d={dim}, dim_u={dim_u}, coupling={coupling})"
        a = rng.uniform(0.5, 2.0, self.dim)
        a[: self.dim_u] = -rng.uniform(0.5, 1.5, self.dim_u)
        self.a = a
        self.b = float(quartic)
        self.c = float(coupling)
        H = rng.standard_normal((n_reflect, self.dim))
        self._house = H / np.linalg.norm(H, axis=1, keepdims=True)

    def _rot_T(self, X: np.ndarray) -> np.ndarray:  # u = R^T x, R = H_1 H_2 ... H_n
        for h in self._house:
            X = X - 2.0 * np.outer(X @ h, h)
        return X

    def _rot(self, U: np.ndarray) -> np.ndarray:  # x = R u
        for h in self._house[::-1]:
            U = U - 2.0 * np.outer(U @ h, h)
        return U

    def _parts(self, Uu: np.ndarray):
        k = self.dim_u
        s = Uu[:, :k].sum(axis=1)
        w = np.sum(Uu[:, k:] ** 2, axis=1)
        return s, w

    def _loss(self, X: np.ndarray) -> np.ndarray:
        U = self._rot_T(X)
        s, w = self._parts(U)
        return (0.5 * U**2 @ self.a + 0.25 * self.b * np.sum(U**4, axis=1) + self.c * s * w)

    def _grad_u(self, U: np.ndarray) -> np.ndarray:
        k = self.dim_u
        s, w = self._parts(U)
        G = self.a * U + self.b * U**3
        G[:, :k] += self.c * w[:, None]
        G[:, k:] += 2.0 * self.c * s[:, None] * U[:, k:]
        return G

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._rot(self._grad_u(self._rot_T(X)))

    def hvp(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Rowwise Hessian-vector products in O(d) each."""
        X = np.atleast_2d(X)
        V = np.atleast_2d(V)
        if X.shape[0] == 1 and V.shape[0] > 1:
            X = np.broadcast_to(X, V.shape)
        U, W = self._rot_T(np.asarray(X, dtype=float)), self._rot_T(np.asarray(V, dtype=float))
        k = self.dim_u
        s, _ = self._parts(U)
        out = (self.a + 3.0 * self.b * U**2) * W
        ws = W[:, :k].sum(axis=1)
        dot = np.sum(U[:, k:] * W[:, k:], axis=1)
        out[:, :k] += 2.0 * self.c * dot[:, None]
        out[:, k:] += 2.0 * self.c * (ws[:, None] * U[:, k:] + s[:, None] * W[:, k:])
        return self._rot(out)

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        eye = np.eye(self.dim)
        return np.stack([self.hvp(np.broadcast_to(x, (self.dim, self.dim)), eye) for x in X])

    def critical_points(self) -> list[CriticalPoint]:
        H0 = self.a
        return [CriticalPoint(np.zeros(self.dim), "strict_saddle", 0.0, "origin",
                              {"least_eigenvalue": float(H0.min()), "n_negative": self.dim_u})]

    def manifold_error(self, X: np.ndarray) -> np.ndarray:
        """For ``coupling = 0``: distance of points from the exact manifold ``{u_u = 0}``."""
        return np.linalg.norm(self._rot_T(np.atleast_2d(X))[:, : self.dim_u], axis=1)
