"""An installable third-party csm plugin: the depth-k scalar linear network.

Loss ``L(w) = (w_1 w_2 ... w_k - 1)^2 / 2`` on ``R^k``.  For ``k = 2`` the origin is a strict
saddle (Hessian ``[[0, -1], [-1, 0]]``) whose center-stable manifold under gradient descent is
exactly the anti-diagonal ``{w_1 + w_2 = 0}`` (it is invariant, and on it
``|w_1'| = |w_1| |1 - step (1 + w_1^2)| < |w_1|``); for ``k >= 3`` the origin is a saddle that
is not strict.  The global minima ``{prod w = 1}`` form a (k-1)-dimensional manifold (center
directions of gradient descent there).

Install with ``pip install ./examples/custom_plugin``; then ``csm list`` shows ``linear_net``,
``csm check linear_net -p k=3`` runs the conformance suite and ``csm reproduce --only
linear_net-manifold`` runs the experiment below.
"""

from __future__ import annotations

import numpy as np

import csm


class LinearNet(csm.ProblemBase):
    """``L(w) = (prod_i w_i - 1)^2 / 2``, ``w in R^k``."""

    def __init__(self, k: int = 2) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise csm.ParameterError(f"`k` must be an integer >= 2, got {k!r}")
        self.k = k
        self.dim = k
        self.name = "linear_net"

    def _loss(self, X: np.ndarray) -> np.ndarray:
        return 0.5 * (np.prod(X, axis=1) - 1.0) ** 2

    def _partials(self, X: np.ndarray) -> np.ndarray:
        # prod_{j != i} w_j for every i, without division (prefix/suffix products)
        B, k = X.shape
        pre = np.ones((B, k))
        suf = np.ones((B, k))
        pre[:, 1:] = np.cumprod(X[:, :-1], axis=1)
        suf[:, :-1] = np.cumprod(X[:, ::-1], axis=1)[:, ::-1][:, 1:]
        return pre * suf

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        r = np.prod(X, axis=1) - 1.0
        return r[:, None] * self._partials(X)

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        B, k = X.shape
        P = self._partials(X)
        r = np.prod(X, axis=1) - 1.0
        H = P[:, :, None] * P[:, None, :]
        for i in range(k):  # second partials of the product: prod over j != i, l
            for j in range(k):
                if i != j:
                    mask = np.ones(k, dtype=bool)
                    mask[[i, j]] = False
                    H[:, i, j] += r * np.prod(X[:, mask], axis=1)
        return H

    def critical_points(self) -> list[csm.CriticalPoint]:
        kind = "strict_saddle" if self.k == 2 else "saddle"
        return [
            csm.CriticalPoint(np.zeros(self.k), kind, 0.5, "origin"),
            csm.CriticalPoint(np.ones(self.k), "global_minimum", 0.0, "ones"),
        ]

    def classify(self, theta: np.ndarray) -> csm.Classification:
        theta = np.asarray(theta, dtype=float)
        g = float(np.linalg.norm(self.gradient(theta)))
        loss = float(self.loss(theta))
        if g > 1e-8:
            return csm.Classification("not_critical", "not critical", loss)
        if loss < 1e-12:
            return csm.Classification("global_minimum", "global minimum", loss)
        kind = "strict_saddle" if self.k == 2 else "saddle"
        return csm.Classification(kind, f"{kind} (w with >= 2 zeros)", loss)


def _manifold_experiment(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    problem = LinearNet(2)
    step = 0.1
    m = csm.center_stable_manifold(csm.GradientDescentMap(problem, step), np.zeros(2))
    X = m.sample(200 if config.quick else 2000, config.seed)
    err = float(np.max(np.abs(X.sum(axis=1))))
    claim = csm.Claim(
        "the center-stable manifold of GD at the origin is the anti-diagonal w1 + w2 = 0",
        "Theorem 2.2",
        measured={"max |w1 + w2|": err, "points": len(X), "radius": m.radius},
        expected={"max |w1 + w2|": 0.0},
        criterion="max |w1 + w2| over the manifold points <= 1e-9 (the exact manifold)",
        agrees=err <= 1e-9)
    return csm.ExperimentResult("linear_net-manifold", "Theorem 2.2", [claim],
                                tables={"manifold": [m.to_dict() | {"fixed_point": "0"}]})


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    return [csm.ProblemFactory("linear_net", "depth-k scalar linear network (w1...wk - 1)^2/2",
                               LinearNet)]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    return [csm.Experiment("linear_net-manifold", "Theorem 2.2",
                           "GD center-stable manifold at the origin vs the exact anti-diagonal",
                           _manifold_experiment)]
