"""A posteriori verification of a computed center-stable manifold (Theorem 2.2, Corollary 2.3).

Measured against the true map, with every rule fixed before the run (docs/theory.md,
"Verifying a manifold"):

1. **Invariance**: ``max |offset(g(x))|`` over graph points ``x`` whose image stays in the
   ball must be ``<= 100 tol``.
2. **Graph orbits stay**: orbits of graph points stay in the ball at least as long (median) as
   the orbits pushed off the graph (below), which must all leave.
3. **Escape band**: points pushed a distance ``delta`` off the graph along the slowest unstable
   direction leave after a median number of steps inside
   ``[0.85 log(eps/delta)/log lambda_max - 3, 1.15 log(eps/delta)/log lambda_min + 3]``:
   no slower than the slowest linear rate allows, no faster than the fastest.  Pushes are
   kept above the graph's own accuracy (``delta >= 100 tol``), else they are not pushes.
4. **Lipschitz probe** (only when ``kappa`` is an estimate): the largest ``|D r~|`` found at fresh
   random points and along the directions where the construction's adversarial search found
   its maximum (fresh seed) must not exceed the ``l`` the construction used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._results import Result
from .._validation import as_rng, positive_int
from ..errors import InputError
from ..maps import as_map
from .lipschitz import adversarial_lipschitz

__all__ = ["ManifoldVerification", "verify_manifold", "BAND"]

#: Relative slack of the escape band (the "within 15 %" of the docs).
BAND = 0.15


@dataclass(frozen=True)
class ManifoldVerification(Result):
    """Measured facts about a computed center-stable manifold (see the module docstring)."""

    invariance_residual: float
    n: int
    n_steps: int
    graph_stay_median: float
    graph_stay_min: int
    deltas: tuple[float, ...]
    exit_median: tuple[float, ...]
    exit_predicted_fast: tuple[float, ...]
    exit_predicted_slow: tuple[float, ...]
    lipschitz_probe: float
    lipschitz_used: float
    checks: dict

    @property
    def exit_predicted(self) -> tuple[float, ...]:
        """The slowest-rate prediction ``log(eps/delta)/log lambda_min`` (upper end of the band)."""
        return self.exit_predicted_slow

    @property
    def success(self) -> bool:
        return all(self.checks.values())

    @property
    def passed(self) -> bool:
        """Alias of :attr:`success`."""
        return self.success

    @property
    def message(self) -> str:
        failed = [k for k, v in self.checks.items() if not v]
        return "all checks passed" if not failed else "failed: " + ", ".join(failed)


def verify_manifold(m: Any, map: Any = None, *, n: int = 64, n_steps: int | None = None,
                    deltas: tuple[float, ...] | None = None, rng: Any = None) -> ManifoldVerification:
    """Verify ``m`` (a :class:`~csm.CenterStableManifold`) against ``map`` (default: its own map).

    ``deltas`` default to ``radius * (1e-2, 1e-4, 1e-6)``, those below ``100 tol`` dropped.
    """
    n = positive_int(n, "n")
    g = m.frame.g if map is None else as_map(map)
    rng = as_rng(rng, 12345)
    eps = m.radius
    if deltas is None:
        deltas = tuple(dl for dl in (1e-2 * eps, 1e-4 * eps, 1e-6 * eps) if dl >= 100 * m.tol)
    deltas = tuple(float(d) for d in deltas)
    for dl in deltas:
        if not 100 * m.tol <= dl < eps:
            raise InputError(
                f"`deltas` must lie in [100 tol, radius) = [{100 * m.tol:.3g}, {eps:.3g}), got {dl}")
    slow = tuple(math.log(eps / dl) / math.log(m.lambda_min) for dl in deltas)
    fast = tuple(math.log(eps / dl) / math.log(m.lambda_max) for dl in deltas)
    if n_steps is None:
        n_steps = int(math.ceil(max(slow, default=0) * 2 + math.log(eps / m.tol) / math.log(m.lambda_min) + 10))
    n_steps = positive_int(n_steps, "n_steps")
    xi = m.sample_cs(n, rng, fraction=0.5)
    X = m.point(xi)
    # (1) invariance
    GX = g(X)
    inside = m.eigen_norm(GX) <= eps
    res = float(np.max(np.abs(m.offset(GX[inside])))) if inside.any() else float("nan")
    # (2)+(3): exit times, all starting sets iterated together
    from ..orbits import exit_times

    dirs = np.zeros((len(deltas), n, m.dim_u))
    dirs[:, :, 0] = rng.choice([-1.0, 1.0], size=(len(deltas), n))
    p, q = m.frame.to_z(X - m.fixed_point)
    starts = [X] + [m.fixed_point + m.frame.from_z(p, q + dl * dirs[i]) for i, dl in enumerate(deltas)]
    ex = exit_times(g, np.concatenate(starts, axis=0), n_steps, m.eigen_norm, eps)
    ex = ex.reshape(len(deltas) + 1, n)
    stay = np.where(ex[0] < 0, n_steps, ex[0])
    med = tuple(float(np.median(np.where(e < 0, n_steps + 1, e))) for e in ex[1:])
    # (4) Lipschitz probe
    probe = float("nan")
    if not m.kappa_certified:
        est = adversarial_lipschitz(m.frame, eps, n_random=32, n_rounds=1, safety=1.0,
                                    seed=int(rng.integers(2**31)), directions=m.lipschitz_directions)
        probe = est.raw
    checks = {
        "invariance": bool(np.isfinite(res) and res <= 100 * m.tol),
        "graph_orbits_stay": bool(np.median(stay) >= max(med, default=0)),
        "pushed_orbits_leave": bool(np.all(ex[1:] >= 0)),
        "escape_band": all((1 - BAND) * f - 3 <= md <= (1 + BAND) * s + 3
                           for md, f, s in zip(med, fast, slow)),
        "lipschitz_probe": bool(m.kappa_certified or probe <= m.lipschitz_remainder),
    }
    return ManifoldVerification(
        invariance_residual=res, n=n, n_steps=n_steps, graph_stay_median=float(np.median(stay)),
        graph_stay_min=int(stay.min()), deltas=deltas, exit_median=med, exit_predicted_fast=fast,
        exit_predicted_slow=slow, lipschitz_probe=probe, lipschitz_used=float(m.lipschitz_remainder),
        checks=checks)
