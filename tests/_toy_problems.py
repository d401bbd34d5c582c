"""Toy problems with analytic answers for the stable-set and transition-graph tests.

Import from a test file with ``import _toy_problems as toy`` (tests/conftest.py puts the tests
folder on ``sys.path`` once; pytest runs with ``--import-mode=importlib``), or use the ``toy``
fixture.  All classes are module-level, hence picklable for process pools.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

import csm
from csm.problem import Classification, CriticalPoint, ProblemBase


class DoubleWell(ProblemBase):
    """L(x, y) = (x^2 - 1)^2 / 4 + y^2 / 2.

    Minima (+-1, 0) (L = 0), strict saddle (0, 0) (L = 1/4, Hessian diag(-1, 1)) whose
    stable set is the line {x = 0}.  From |x0| <= 2 and step 0.1 the sign of x never
    changes, so the limit is (sign(x0), 0).  ``delay`` (seconds per gradient call) slows the
    problem down without changing any value (for the kill-and-resume test).
    """

    name = "toy-double-well"
    dim = 2

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = float(delay)

    def _loss(self, X):
        return (X[:, 0] ** 2 - 1.0) ** 2 / 4.0 + X[:, 1] ** 2 / 2.0

    def _gradient(self, X):
        if self.delay:
            time.sleep(self.delay)
        return np.stack([X[:, 0] ** 3 - X[:, 0], X[:, 1]], axis=1)

    def _hessian(self, X):
        H = np.zeros((X.shape[0], 2, 2))
        H[:, 0, 0] = 3.0 * X[:, 0] ** 2 - 1.0
        H[:, 1, 1] = 1.0
        return H

    def critical_points(self):
        return [
            CriticalPoint(np.array([1.0, 0.0]), "global_minimum", 0.0, "min+"),
            CriticalPoint(np.array([-1.0, 0.0]), "global_minimum", 0.0, "min-"),
            CriticalPoint(np.array([0.0, 0.0]), "strict_saddle", 0.25, "saddle"),
        ]


def box_sampler(rng, n):
    """Uniform on [-2, 2]^2 (module level: picklable)."""
    return rng.uniform(-2.0, 2.0, size=(n, 2))


class LineSaddle(ProblemBase):
    """L(z) = x^2/2 - y^2/2 + y^4/4 with (x, y) = R(angle)^T z.

    Strict saddle at 0 (Hessian eigenvalues 1, -1), minima at R(0, +-1) (L = -1/4).  The
    GD map's stable manifold at 0 is exactly the line R(1, 0) t (the y-dynamics does not see
    x), its unstable eigenvalue is 1 + step.
    """

    name = "toy-line-saddle"
    dim = 2

    def __init__(self, angle: float = 0.0) -> None:
        self.angle = float(angle)
        c, s = np.cos(self.angle), np.sin(self.angle)
        self.R = np.array([[c, -s], [s, c]])
        self.params = {"angle": self.angle}

    def _xy(self, Z):
        return Z @ self.R  # rows R^T z

    def _loss(self, Z):
        W = self._xy(Z)
        x, y = W[:, 0], W[:, 1]
        return x**2 / 2 - y**2 / 2 + y**4 / 4

    def _gradient(self, Z):
        W = self._xy(Z)
        g = np.stack([W[:, 0], W[:, 1] ** 3 - W[:, 1]], axis=1)
        return g @ self.R.T

    def _hessian(self, Z):
        W = self._xy(Z)
        D = np.zeros((Z.shape[0], 2, 2))
        D[:, 0, 0] = 1.0
        D[:, 1, 1] = 3.0 * W[:, 1] ** 2 - 1.0
        return self.R[None] @ D @ self.R.T[None]

    def critical_points(self):
        return [
            CriticalPoint(np.zeros(2), "strict_saddle", 0.0, "saddle"),
            CriticalPoint(self.R @ np.array([0.0, 1.0]), "global_minimum", -0.25, "min+"),
            CriticalPoint(self.R @ np.array([0.0, -1.0]), "global_minimum", -0.25, "min-"),
        ]


class _Split:
    def __init__(self, eigenvalues, basis_cs, basis_u):
        self.eigenvalues = np.asarray(eigenvalues)
        self.basis_cs = basis_cs
        self.basis_u = basis_u
        self.dim_cs = basis_cs.shape[1]
        self.dim_u = basis_u.shape[1]


class LineSaddleManifold:
    """The exact center-stable manifold of :class:`LineSaddle`'s GD map at 0 (a line).

    Implements the part of ``csm.manifold.CenterStableManifold`` that ``escape_times`` uses.
    """

    def __init__(self, problem: LineSaddle, step: float, radius: float = 0.5) -> None:
        self.radius = float(radius)
        self.e_s = problem.R @ np.array([1.0, 0.0])
        e_u = problem.R @ np.array([0.0, 1.0])
        self.split = _Split([1.0 - step, 1.0 + step], self.e_s[:, None], e_u[:, None])

    def sample(self, n, rng):
        t = rng.uniform(-self.radius, self.radius, size=n)
        return t[:, None] * self.e_s[None, :]


class NonStrict(ProblemBase):
    """L(x, y) = x^3/3 + x^4/4 + y^2/2: a non-strict saddle attracting an open set.

    G = (x^2 (1 + x), y).  Critical points: (0, 0) with Hessian diag(0, 1) -- not a local
    minimum (x^3), no negative curvature: a non-strict ``"saddle"``; (-1, 0), the global
    minimum (L = -1/12).  GD from x0 > 0 decreases to 0 (like 1 / (step k)); from
    -1 < x0 < 0 it moves (slowly near 0) to -1.  So the stable set of the saddle contains the
    open half plane {x > 0}.
    """

    name = "toy-non-strict"
    dim = 2

    def _loss(self, X):
        x, y = X[:, 0], X[:, 1]
        return x**3 / 3 + x**4 / 4 + y**2 / 2

    def _gradient(self, X):
        x, y = X[:, 0], X[:, 1]
        return np.stack([x**2 * (1 + x), y], axis=1)

    def _hessian(self, X):
        H = np.zeros((X.shape[0], 2, 2))
        H[:, 0, 0] = 2 * X[:, 0] + 3 * X[:, 0] ** 2
        H[:, 1, 1] = 1.0
        return H

    def critical_points(self):
        return [
            CriticalPoint(np.zeros(2), "saddle", 0.0, "flat-saddle"),
            CriticalPoint(np.array([-1.0, 0.0]), "global_minimum", -1.0 / 12.0, "min"),
        ]


def strip_sampler(rng, n):
    """x uniform on [-1.5, 1], y uniform on [-1, 1] (P(x > 0) = 0.4)."""
    return np.stack([rng.uniform(-1.5, 1.0, n), rng.uniform(-1.0, 1.0, n)], axis=1)


class Staircase(ProblemBase):
    """L(x) = sum_i a_i (x_i^2 - 1)^2 / 4 with distinct weights a_1 > a_2 > ... > 0.

    Critical points: x_i in {-1, 0, 1}; L = sum_{x_i = 0} a_i / 4; Morse index = number of
    zero coordinates (all zero: local maximum; all +-1: global minima; otherwise strict
    saddles).  From a tiny initialisation coordinate i leaves 0 at rate 1 + step a_i, so GD
    visits the levels top-down: all zero -> x_1 settled -> x_1, x_2 settled -> minimum.
    """

    name = "toy-staircase"

    def __init__(self, weights=(1.0, 0.5, 0.25)) -> None:
        self.a = np.asarray(weights, dtype=float)
        self.dim = int(self.a.size)
        self.params = {"weights": self.a.tolist()}

    def _loss(self, X):
        return ((X**2 - 1.0) ** 2 / 4.0) @ self.a

    def _gradient(self, X):
        return self.a * (X**3 - X)

    def _hessian(self, X):
        B, d = X.shape
        H = np.zeros((B, d, d))
        H[:, np.arange(d), np.arange(d)] = self.a * (3 * X**2 - 1)
        return H

    @staticmethod
    def sign_label(s) -> str:
        return "(" + ",".join({-1: "-", 0: "0", 1: "+"}[int(v)] for v in s) + ")"

    def critical_points(self):
        out = []
        for s in itertools.product((-1, 0, 1), repeat=self.dim):
            s = np.array(s, dtype=float)
            zeros = int(np.sum(s == 0))
            kind = ("global_minimum" if zeros == 0 else
                    "local_maximum" if zeros == self.dim else "strict_saddle")
            out.append(CriticalPoint(s, kind, float(self.a[s == 0].sum() / 4), self.sign_label(s),
                                     {"layer": zeros}))
        return out


class StaircaseLayers(Staircase):
    """:class:`Staircase` with ``classify``: one class per number of zero coordinates."""

    def classify(self, theta):
        x = np.asarray(theta, dtype=float)
        if np.linalg.norm(self._gradient(x[None])[0]) > 1e-2:
            return Classification("not_critical", "not critical", float(self._loss(x[None])[0]))
        zero = np.abs(x) < 0.5
        k = int(zero.sum())
        kind = ("global_minimum" if k == 0 else
                "local_maximum" if k == self.dim else "strict_saddle")
        return Classification(kind, f"{k} zero coordinate(s)", float(self.a[zero].sum() / 4),
                              layer=k)


class StaircaseValues(Staircase):
    """:class:`Staircase` with ``critical_values`` (no classify)."""

    def critical_values(self):
        vals = {float(self.a[np.array(s, bool)].sum() / 4)
                for s in itertools.product((0, 1), repeat=self.dim)}
        return sorted(vals, reverse=True)


class CurvedSaddle(ProblemBase):
    """L(x, y) = x^2/2 + f(y - k x^2), f(w) = -w^2/2 + w^4/4.

    Strict saddle at 0 (Hessian diag(1, -1): the GD map has unstable eigenvalue 1 + step),
    minima at (0, +-1).  The stable manifold of the GD map at 0 is a curve tangent to the
    x-axis, bending like y ~ k x^2 (not known in closed form): escape times from distance
    delta follow log(eps/delta)/log(1 + step) only if the manifold is computed accurately.
    """

    name = "toy-curved-saddle"
    dim = 2

    def __init__(self, k: float = 1.0) -> None:
        self.k = float(k)
        self.params = {"k": self.k}

    def _loss(self, X):
        x, y = X[:, 0], X[:, 1]
        w = y - self.k * x**2
        return x**2 / 2 - w**2 / 2 + w**4 / 4

    def _gradient(self, X):
        x, y = X[:, 0], X[:, 1]
        w = y - self.k * x**2
        fp = -w + w**3
        return np.stack([x - 2 * self.k * x * fp, fp], axis=1)

    def _hessian(self, X):
        x, y = X[:, 0], X[:, 1]
        k = self.k
        w = y - k * x**2
        fp, fpp = -w + w**3, -1 + 3 * w**2
        H = np.empty((X.shape[0], 2, 2))
        H[:, 0, 0] = 1 - 2 * k * fp + 4 * k**2 * x**2 * fpp
        H[:, 0, 1] = H[:, 1, 0] = -2 * k * x * fpp
        H[:, 1, 1] = fpp
        return H

    def critical_points(self):
        return [
            CriticalPoint(np.zeros(2), "strict_saddle", 0.0, "saddle"),
            CriticalPoint(np.array([0.0, 1.0]), "global_minimum", -0.25, "min+"),
            CriticalPoint(np.array([0.0, -1.0]), "global_minimum", -0.25, "min-"),
        ]


__all__ = ["DoubleWell", "box_sampler", "LineSaddle", "LineSaddleManifold", "CurvedSaddle",
           "NonStrict",
           "strip_sampler", "Staircase", "StaircaseLayers", "StaircaseValues", "csm"]
