"""The phase-retrieval problem (paper §3.1, docs/theory.md §6).

Recover ``x* in R^n`` from ``y_i = <a_i, x*>^2``, ``i = 1..m``, by minimising over ``x``

* ``loss="l2"``: ``F(x) = (1/(4m)) sum_i (<a_i,x>^2 - y_i)^2`` (smooth, piecewise polynomial --
  a polynomial in fact);
* ``loss="l1"``: ``F(x) = (1/m) sum_i |<a_i,x>^2 - y_i|`` (smooth off a null set; a.e. gradient
  with ``sign(0) = 0``, see :mod:`csm_phase_retrieval.losses`);
* ``loss="population"``: the expectation of the ℓ2 loss over ``a ~ N(0, I_n)``, in closed form
  ``F(x) = 1/4 (3|x|^4 - 2|x|^2|x*|^2 - 4<x,x*>^2 + 3|x*|^4)``.

Data (all from ``seed``, in this order, with ``numpy.random.default_rng(seed)``): ``g ~ N(0, I_n)``
and ``x* = g/|g|`` (so ``|x*| = 1``), then the sensing vectors ``a_i ~ N(0, I_n)`` i.i.d. (the
rows of ``A``; not drawn for the population loss).  The same seed gives the same ``x*`` for
every loss variant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import csm

from . import _params
from .classify import classify_batch
from .critical import empirical_critical_points, population_critical_points
from .losses import EmpiricalL1, EmpiricalL2, PopulationL2

__all__ = ["PhaseRetrieval"]


class PhaseRetrieval(csm.ProblemBase):
    """Phase retrieval with Gaussian measurements (paper §3.1, docs/theory.md §6).

    Parameters
    ----------
    n : int, default 8
        Signal dimension (``>= 2``); the parameter is ``theta = x in R^n``.
    m : int, default 64
        Number of measurements (``>= 1``; not used by ``loss="population"``).
    loss : {"l2", "l1", "population"}, default "l2"
        Empirical ℓ2 risk, empirical ℓ1 risk, or the population ℓ2 risk in closed form.
    seed : int, default 0
        Seed (``>= 0``) of ``x*`` and of the measurement vectors.

    Attributes
    ----------
    x_star : ndarray (n,)
        The signal ``x*``, ``|x*| = 1``.
    A : ndarray (m, n) or None
        Sensing vectors as rows (None for the population loss).
    y : ndarray (m,) or None
        Measurements ``y_i = <a_i, x*>^2``.
    loss_type : str
    smooth : bool
        Whether the loss is C^2 everywhere (False for ℓ1).

    Raises
    ------
    csm.ParameterError
        A parameter is out of range (the message names it and what is accepted).

    Notes
    -----
    ``gradient`` is the true gradient (ℓ2, population) or the a.e. gradient with
    ``sign(0) = 0`` (ℓ1); ``hessian`` is the true Hessian (ℓ2, population) or the a.e. Hessian
    (ℓ1).  Cost per point: ``O(m n)`` for loss and gradient, ``O(m n^2)`` for the Hessian,
    ``O(m n)`` for a Hessian-vector product.

    Examples
    --------
    >>> import csm
    >>> p = csm.get_problem("phase_retrieval", n=4, m=32, loss="population")
    >>> [c.label for c in p.critical_points()][:3]
    ['origin', 'global-min+', 'global-min-']
    >>> round(p.critical_points()[3].info["least_eigenvalue"], 12)   # -2 |x*|^2
    -2.0
    """

    name = "phase_retrieval"

    def __init__(self, n: int = 8, m: int = 64, loss: str = "l2", seed: int = 0) -> None:
        self.n = _params.integer(n, "n", 2)
        self.m = _params.integer(m, "m", 1)
        self.loss_type = _params.choice(loss, "loss", _params.LOSSES)
        self.seed = _params.integer(seed, "seed", 0)
        self.dim = self.n
        rng = np.random.default_rng(self.seed)
        g = rng.standard_normal(self.n)
        self.x_star = g / np.linalg.norm(g)
        if self.loss_type == "population":
            self.A = None
            self.y = None
            self._kernel: Any = PopulationL2(self.x_star)
        else:
            self.A = rng.standard_normal((self.m, self.n))
            self.y = (self.A @ self.x_star) ** 2
            kernel_cls = EmpiricalL2 if self.loss_type == "l2" else EmpiricalL1
            self._kernel = kernel_cls(self.A, self.y)
        self.smooth = bool(self._kernel.smooth)
        self._critical: list[csm.CriticalPoint] | None = None

    # -- parameters -------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The constructor parameters (to rebuild the problem with ``csm.get_problem``)."""
        return {"n": self.n, "m": self.m, "loss": self.loss_type, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"<PhaseRetrieval loss={self.loss_type!r} n={self.n} m={self.m} "
                f"seed={self.seed}>")

    # -- loss, gradient, Hessian (batched; ProblemBase handles (d,) vs (B, d)) ----------
    def _loss(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.loss(X)

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.gradient(X)

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.hessian(X)

    @property
    def n_samples(self) -> int | None:
        """Number of terms ``m`` of the empirical risk (``None`` for the population loss)."""
        return None if self.loss_type == "population" else self.m

    def loss_and_gradient(self, theta: Any, sample_weights: Any = None
                          ) -> tuple[np.ndarray | float, np.ndarray]:
        """Loss and gradient; with ``sample_weights`` the weighted risk ``sum_i W_i l_i``.

        ``sample_weights`` (empirical losses only): shape ``(m,)`` or ``(B, m)``, finite and
        ``>= 0``; ``W_i = 1/m`` gives the loss itself.  Mini-batch SGD uses ``1/b`` on a batch
        (:mod:`csm.stochastic`).
        """
        X, single = self._batch(theta)
        if sample_weights is None:
            L, G = self._kernel.loss(X), self._kernel.gradient(X)
        else:
            if self.loss_type == "population":
                raise csm.InputError("`sample_weights` needs an empirical loss ('l2' or 'l1'); "
                                     "the population loss has no samples")
            W = csm.stochastic.sample_weights(sample_weights, X.shape[0], self.m)
            L, G = self._kernel.weighted(X, W)
        return (float(L[0]), G[0]) if single else (L, G)

    def hvp(self, theta: Any, v: Any) -> np.ndarray:
        """Rowwise Hessian-vector products ``hess F(theta_b) v_b``.

        ``theta`` ``(n,)`` or ``(B, n)``; ``v`` ``(n,)`` or ``(B, n)`` (a single ``theta`` is
        broadcast against a batch of ``v``).  Never forms the Hessian: ``O(m n)`` per row.
        """
        X, V, single = self._pair(theta, v)
        out = self._kernel.hvp(X, V)
        return out[0] if single else out

    # -- sampling, critical points, classification, local map --------------------------
    def sample(self, rng: Any, n: int) -> np.ndarray:
        """``n`` initial points from ``N(0, I_n)`` (absolutely continuous), shape ``(n, dim)``.

        ``rng`` is a ``numpy.random.Generator`` or an int seed.
        """
        count = _params.integer(n, "n (number of samples)", 1)
        return np.random.default_rng(rng).standard_normal((count, self.dim))

    def critical_points(self) -> list[csm.CriticalPoint]:
        """Known critical points with their kinds (see :mod:`csm_phase_retrieval.critical`).

        ``info`` holds ``least_eigenvalue``, ``n_negative``, ``n_zero`` (center directions),
        ``n_positive`` where the Hessian exists, ``closed_form`` or ``numerically_located``
        (then ``gradient_norm`` and ``started_from``), ``smooth`` and ``reference``.  Computed
        once (the empirical ℓ2 saddles by Newton iteration) and cached.
        """
        if self._critical is None:
            if self.loss_type == "population":
                self._critical = population_critical_points(self)
            else:
                self._critical = empirical_critical_points(self)
        return list(self._critical)

    def classify(self, theta: Any, *, tol: float = 1e-4, grad_tol: float = 1e-6):
        """Classify one point ``(n,)`` (returns a :class:`csm.Classification`) or a batch.

        A point is the listed critical point nearest to it if that one is within ``tol``
        (Euclidean) and, where the loss is smooth there, ``|grad F| <= grad_tol``; the
        population saddle sphere is matched as a whole.  A point with small gradient and no
        listed point near it gets its kind from the Hessian eigenvalues (label
        ``"unlisted-critical"``).  Otherwise ``kind="not_critical"``.  See
        :mod:`csm_phase_retrieval.classify`.  A batch ``(B, n)`` gives a list.
        """
        X, single = self._batch(theta)
        tol = _params.positive(tol, "tol")
        grad_tol = _params.positive(grad_tol, "grad_tol")
        out = classify_batch(self, X, tol, grad_tol)
        return out[0] if single else out

    def local_map(self, point: Any, step: float) -> csm.GradientDescentMap:
        """The gradient-descent map ``x -> x - step * grad F(x)`` (valid everywhere).

        ``point`` (a :class:`csm.CriticalPoint` or a vector) is only checked for its shape:
        no modification of the map is needed for phase retrieval (paper §3.1).
        """
        theta = point.theta if isinstance(point, csm.CriticalPoint) else point
        self._batch(theta)
        return csm.GradientDescentMap(self, step)

