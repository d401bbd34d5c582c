"""Independent checks of the leaky ReLU classification (docs/plugins/leaky_relu.md).

Everything here evaluates the leaky network ``c + sum_j v_j max(w_j x + b_j, a (w_j x + b_j))``
directly -- neither the neuron-doubling map ``D`` nor the ReLU plugin's integrals are used:

* :func:`quad_loss`, :func:`quad_gradient`: the loss and its gradient as integrals of the
  explicit integrands, by adaptive Gauss--Kronrod quadrature (``scipy.integrate.quad``) with
  the breakpoints as split points;
* :func:`flat_neuron_direction`: an explicit descent direction at a critical point with a flat
  neuron ``w_j = v_j = 0``, with the exact loss change along it;
* :func:`fd_hessian`: the Hessian of any loss by central differences of loss values;
* :func:`probe_minimum`: is a point a local minimum?  Random perturbations of several radii
  and a bounded local minimisation (L-BFGS-B) from a slightly perturbed start; the verdict is
  read off loss values only (never off a Hessian eigenvalue).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["quad_loss", "quad_gradient", "residual_moments", "flat_neuron_direction",
           "fd_hessian", "probe_minimum"]


def _split(theta: np.ndarray, N: int):
    th = np.asarray(theta, dtype=float)
    return th[:N], th[N:2 * N], th[2 * N:3 * N], float(th[3 * N])


def _points(w, b, alpha, beta):
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w != 0, -b / np.where(w != 0, w, 1.0), np.nan)
    return sorted({float(x) for x in t if np.isfinite(x) and alpha < x < beta}) or None


def _quad(fun, alpha, beta, pts, scale=None):
    """``int_alpha^beta fun`` with the breakpoints ``pts`` as split points.  The integrand is a
    polynomial on each piece, so the first Gauss--Kronrod rule is exact up to round-off; the
    absolute tolerance is ``1e-14 (beta - alpha) max |fun|`` (on a grid), which round-off does
    not prevent (a relative tolerance would, where the integral cancels to ~0 at a critical
    point)."""
    from scipy.integrate import quad

    if scale is None:
        grid = np.linspace(alpha, beta, 33)
        scale = (beta - alpha) * max(abs(float(fun(x))) for x in grid)
    return quad(fun, alpha, beta, points=pts, epsabs=1e-14 * max(scale, 1e-300), epsrel=1e-14,
                limit=100)[0]


def _residual(theta, N, a, target):
    w, b, v, c = _split(theta, N)
    coef = np.asarray(target, dtype=float)

    def e(x):
        z = w * x + b
        fx = float(np.polynomial.polynomial.polyval(x, coef))
        return c + float(v @ np.maximum(z, a * z)) - fx

    return e


def quad_loss(theta: Any, N: int, a: float, interval: Sequence[float],
              target: Sequence[float]) -> float:
    """``int_alpha^beta (N_theta - f)^2`` by quadrature of the explicit leaky network."""
    alpha, beta = map(float, interval)
    w, b, _, _ = _split(theta, N)
    e = _residual(theta, N, a, target)
    pts = _points(w, b, alpha, beta)
    return _quad(lambda x: e(x) ** 2, alpha, beta, pts)


def quad_gradient(theta: Any, N: int, a: float, interval: Sequence[float],
                  target: Sequence[float]) -> np.ndarray:
    """The gradient ``2 int e dN/dtheta`` by quadrature (``sigma_a'(z) = 1`` for ``z > 0``,
    ``a`` for ``z < 0``; a degenerate neuron ``w = b = 0`` gets 0, as in the plugin)."""
    alpha, beta = map(float, interval)
    w, b, v, _ = _split(theta, N)
    e = _residual(theta, N, a, target)
    pts = _points(w, b, alpha, beta)
    g = np.zeros(3 * N + 1)
    for j in range(N):
        if w[j] == 0.0 and b[j] == 0.0:
            continue

        def sig(x, j=j):
            z = w[j] * x + b[j]
            return max(z, a * z)

        def dsig(x, j=j):
            return 1.0 if w[j] * x + b[j] > 0 else a

        g[j] = 2 * v[j] * _quad(lambda x: e(x) * dsig(x) * x, alpha, beta, pts)
        g[N + j] = 2 * v[j] * _quad(lambda x: e(x) * dsig(x), alpha, beta, pts)
        g[2 * N + j] = 2 * _quad(lambda x: e(x) * sig(x), alpha, beta, pts)
    g[3 * N] = 2 * _quad(e, alpha, beta, pts)
    return g


def residual_moments(theta: Any, N: int, a: float, interval: Sequence[float],
                     target: Sequence[float]) -> tuple[float, float]:
    """``(int e, int e x)`` by quadrature."""
    alpha, beta = map(float, interval)
    w, b, _, _ = _split(theta, N)
    e = _residual(theta, N, a, target)
    pts = _points(w, b, alpha, beta)
    return _quad(e, alpha, beta, pts), _quad(lambda x: e(x) * x, alpha, beta, pts)


def flat_neuron_direction(theta: Any, N: int, a: float, interval: Sequence[float],
                          target: Sequence[float], j: int, tau: float | None = None
                          ) -> tuple[np.ndarray, Callable[[float], float]]:
    """At a critical point whose neuron ``j`` is flat with ``w_j = 0``, ``b_j != 0``: the
    direction ``d = e_{w_j} - tau sign(sigma_a'(b_j) X) e_{v_j}`` (``X = int e x``) and the
    exact loss change ``t -> L(theta + t d) - L(theta)`` for ``|t| (|alpha|+|beta|) < |b_j|``:

        -2 t^2 tau |sigma_a'(b_j) X| + t^2 tau^2 int (sigma_a(b_j) + sigma_a'(b_j) t x)^2 dx

    (the residual has ``int e = 0`` at a critical point), negative for small ``t`` and ``tau``;
    the default ``tau = |sigma_a'(b_j) X| / (sigma_a(b_j)^2 (beta - alpha))`` makes it about
    ``-t^2 tau |sigma_a'(b_j) X|``.
    """
    alpha, beta = map(float, interval)
    th = np.asarray(theta, dtype=float)
    bj = th[N + j]
    if th[j] != 0.0 or th[2 * N + j] != 0.0 or bj == 0.0:
        raise ValueError(f"neuron {j} is not flat with w = 0 and b != 0")
    _, X = residual_moments(th, N, a, interval, target)
    sp = 1.0 if bj > 0 else a
    sb = max(bj, a * bj)
    sgn = np.sign(sp * X)
    if tau is None:
        tau = abs(sp * X) / (sb * sb * (beta - alpha))
    d = np.zeros_like(th)
    d[j] = 1.0
    d[2 * N + j] = -tau * sgn

    def change(t: float) -> float:
        A, B = sb, sp * t               # int (A + B x)^2
        sq = (A * A * (beta - alpha) + A * B * (beta**2 - alpha**2)
              + B * B * (beta**3 - alpha**3) / 3)
        return -2 * t * t * tau * abs(sp * X) + t * t * tau * tau * sq

    return d, change


def fd_hessian(loss: Callable[[np.ndarray], float], theta: Any, h: float = 1e-4) -> np.ndarray:
    """Hessian by central differences of loss values (``4 d^2`` evaluations)."""
    th = np.asarray(theta, dtype=float)
    d = th.size
    H = np.zeros((d, d))
    E = np.eye(d) * h
    for i in range(d):
        for k in range(i, d):
            v = (loss(th + E[i] + E[k]) - loss(th + E[i] - E[k])
                 - loss(th - E[i] + E[k]) + loss(th - E[i] - E[k])) / (4 * h * h)
            H[i, k] = H[k, i] = v
    return H


def probe_minimum(loss: Callable[[np.ndarray], Any], theta: Any, *,
                  gradient: Callable[[np.ndarray], Any] | None = None,
                  radii: Sequence[float] = (1e-2, 1e-3), n_random: int = 2000,
                  loss_and_gradient: Callable[[np.ndarray], Any] | None = None,
                  rng: Any = 0, rel_tol: float = 1e-12, maxiter: int = 300) -> dict[str, Any]:
    """Decide from loss values whether ``theta`` is a local minimum of ``loss``.

    For every radius ``r``: ``n_random`` random points on the sphere of radius ``r`` (a
    batched ``loss`` is used when it accepts ``(n, d)``), and an L-BFGS-B minimisation inside
    the box ``theta +- r`` started at a random point at distance ``r / 10`` (``maxiter``
    iterations, ``4 maxiter`` evaluations; with ``gradient`` or ``loss_and_gradient``, else
    finite differences).  The verdict is
    ``"not a minimum"`` when some point of the ball has
    ``L < L(theta) - rel_tol max(L(theta), 1e-300) - 1e3 eps``, else ``"minimum"``.
    Returns the verdict, the most negative change found by each route and the best point.
    """
    from scipy.optimize import minimize

    th = np.asarray(theta, dtype=float)
    d = th.size
    rng = np.random.default_rng(rng)
    L0 = float(loss(th))
    tol = rel_tol * max(abs(L0), 1e-300) + 1e3 * np.finfo(float).eps * abs(L0)
    rnd_drop, loc_drop = np.inf, np.inf
    best = th.copy()
    for r in radii:
        U = rng.standard_normal((n_random, d))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        P = th + r * U
        try:
            Ls = np.asarray(loss(P), dtype=float).reshape(-1)
            if Ls.size != n_random:
                raise ValueError
        except Exception:  # a loss for single points only
            Ls = np.array([float(loss(x)) for x in P])
        i = int(np.argmin(Ls))
        if Ls[i] - L0 < rnd_drop:
            rnd_drop = float(Ls[i] - L0)
            if rnd_drop < loc_drop:
                best = P[i]
        u = rng.standard_normal(d)
        x0 = th + 0.1 * r * u / np.linalg.norm(u)
        if loss_and_gradient is not None:
            def fun(x):
                val, g = loss_and_gradient(x)
                return float(val), np.asarray(g, dtype=float)
        elif gradient is not None:
            def fun(x):
                return float(loss(x)), np.asarray(gradient(x), dtype=float)
        else:
            def fun(x):
                return float(loss(x))
        jac = gradient is not None or loss_and_gradient is not None
        res = minimize(fun, x0, jac=jac, method="L-BFGS-B", bounds=list(zip(th - r, th + r)),
                       options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-300,
                                "gtol": 1e-300})
        drop = float(loss(res.x)) - L0
        if drop < loc_drop:
            loc_drop = drop
            if loc_drop < rnd_drop:
                best = res.x
    verdict = "not a minimum" if min(rnd_drop, loc_drop) < -tol else "minimum"
    return {"verdict": verdict, "loss": L0, "random_drop": rnd_drop, "local_drop": loc_drop,
            "tolerance": tol, "best": best}
