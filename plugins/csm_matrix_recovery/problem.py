"""Low-rank matrix recovery in the Burer--Monteiro factorisation (paper §3.2, docs/theory.md §7).

Recover the rank-``r`` PSD matrix ``M* = U* U*^T`` (``n x n``) by minimising over
``U in R^{n x r}`` (parameter ``theta = vec(U)``, **row-major**: ``theta[i*r + a] = U[i, a]``)

* ``loss="full"``: ``F(U) = 1/4 |U U^T - M*|_F^2`` (full observation);
* ``loss="l2"``: ``F(U) = (1/(4m)) sum_k (<A_k, U U^T> - y_k)^2``, ``y_k = <A_k, M*>``;
* ``loss="l1"``: ``F(U) = (1/m) sum_k |<A_k, U U^T> - y_k|`` (non-smooth on a null set; a.e.
  gradient with ``sign(0) = 0``).

Data (from ``numpy.random.default_rng(seed)``, in this order): ``G ~ N(0, 1)^{n x r}``,
``V = Q`` of its QR factorisation with the signs fixed so that ``diag(R) > 0`` (orthonormal
columns ``v_1..v_r``); eigenvalues ``lambda_k = r - k + 1`` (``r, r-1, ..., 1``: distinct,
gaps 1, smallest 1 -- deterministic so that every seed has the same well-separated spectrum);
``U* = V diag(sqrt(lambda))``, ``M* = U* U*^T = sum_k lambda_k v_k v_k^T``.  Then the sensing
matrices: ``A_k = (G_k + G_k^T)/2`` with ``G_k ~ N(0,1)^{n x n}``, i.e. symmetric with
``N(0, 1)`` diagonal and ``N(0, 1/2)`` off-diagonal entries (docs/theory.md §7), so that
``E <A, X>^2 = |X|_F^2`` for symmetric ``X`` and the ℓ2 loss has expectation the full loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import csm

from . import _params
from .classify import classify_batch
from .critical import full_critical_points, sensing_critical_points
from .losses import FullObservation, SensingL1, SensingL2

__all__ = ["MatrixRecovery"]


class MatrixRecovery(csm.ProblemBase):
    """Low-rank matrix recovery ``U U^T ~ M*`` (paper §3.2, docs/theory.md §7).

    Parameters
    ----------
    n : int, default 6
        Matrix size (``>= 1``).
    r : int, default 2
        Rank of ``M*`` and number of columns of ``U`` (``1 <= r <= n``).
    m : int, default 60
        Number of Gaussian sensing matrices (``>= 1``; unused by ``loss="full"``).
    loss : {"l2", "l1", "full"}, default "l2"
    seed : int, default 0
        Seed (``>= 0``) of ``M*`` and of the sensing matrices.

    Attributes
    ----------
    u_star : ndarray (n, r)
        ``U* = V diag(sqrt(lambda))``.
    m_star : ndarray (n, n)
        ``M* = U* U*^T``.
    eigenvalues : ndarray (r,)
        ``lambda_1 > ... > lambda_r`` = ``r, ..., 1``.
    eigenvectors : ndarray (n, r)
        ``v_1, ..., v_r`` (orthonormal columns).
    A : ndarray (m, n, n) or None
        Sensing matrices (None for ``loss="full"``).
    y : ndarray (m,) or None
        ``y_k = <A_k, M*>``.
    loss_type : str
    smooth : bool
        False for ℓ1.

    Raises
    ------
    csm.ParameterError
        A parameter is out of range (the message names it and what is accepted).

    Notes
    -----
    ``dim = n r``.  Cost per point: ``O(m n^2 + n^2 r)`` for loss and gradient (one product
    with the ``(m, n^2)`` matrix of flattened ``A_k``), ``O(m n^2 r + m (n r)^2)`` for the
    Hessian, ``O(m n^2 + n^2 r)`` for a Hessian-vector product.

    Examples
    --------
    >>> import csm
    >>> p = csm.get_problem("matrix_recovery", n=4, r=2, loss="full")
    >>> s = next(c for c in p.critical_points() if c.label == "saddle-S1")
    >>> s.kind, s.info["least_eigenvalue"]          # -lambda_2
    ('strict_saddle', -1.0)
    """

    name = "matrix_recovery"

    def __init__(self, n: int = 6, r: int = 2, m: int = 60, loss: str = "l2",
                 seed: int = 0) -> None:
        self.n = _params.integer(n, "n", 1)
        self.r = _params.integer(r, "r", 1)
        if self.r > self.n:
            raise csm.ParameterError(
                f"{_params.PROBLEM}: parameter `r` must be an integer with 1 <= r <= n = "
                f"{self.n}, got {r!r}"
            )
        self.m = _params.integer(m, "m", 1)
        self.loss_type = _params.choice(loss, "loss", _params.LOSSES)
        self.seed = _params.integer(seed, "seed", 0)
        self.dim = self.n * self.r
        rng = np.random.default_rng(self.seed)
        Q, R = np.linalg.qr(rng.standard_normal((self.n, self.r)))
        signs = np.where(np.diag(R) < 0, -1.0, 1.0)
        self.eigenvectors = Q * signs[None, :]
        self.eigenvalues = np.arange(self.r, 0, -1, dtype=float)
        self.u_star = self.eigenvectors * np.sqrt(self.eigenvalues)[None, :]
        self.m_star = self.u_star @ self.u_star.T
        if self.loss_type == "full":
            self.A = None
            self.y = None
            self._kernel: Any = FullObservation(self.m_star, self.r)
        else:
            G = rng.standard_normal((self.m, self.n, self.n))
            self.A = 0.5 * (G + np.swapaxes(G, 1, 2))
            self.y = self.A.reshape(self.m, -1) @ self.m_star.ravel()
            if self.loss_type == "l2":
                self._kernel = SensingL2(self.A, self.y, self.r)
            else:
                self._kernel = SensingL1(self.A, self.y, self.r, self.m_star)
        self.smooth = bool(self._kernel.smooth)
        self._critical: list[csm.CriticalPoint] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The constructor parameters (to rebuild the problem with ``csm.get_problem``)."""
        return {"n": self.n, "r": self.r, "m": self.m, "loss": self.loss_type, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"<MatrixRecovery loss={self.loss_type!r} n={self.n} r={self.r} m={self.m} "
                f"seed={self.seed}>")

    # -- conversions -------------------------------------------------------------------
    def to_matrix(self, theta: Any) -> np.ndarray:
        """``theta (n r,)`` or ``(B, n r)`` -> ``U (n, r)`` or ``(B, n, r)`` (row-major)."""
        X, single = self._batch(theta)
        U = X.reshape(-1, self.n, self.r)
        return U[0] if single else U

    def to_theta(self, U: Any) -> np.ndarray:
        """``U (n, r)`` or ``(B, n, r)`` -> ``theta`` (row-major flattening)."""
        arr = np.asarray(U, dtype=float)
        if arr.shape[-2:] != (self.n, self.r) or arr.ndim not in (2, 3):
            raise csm.ShapeError(f"`U` must have shape ({self.n}, {self.r}) or "
                                 f"(batch, {self.n}, {self.r}), got shape {arr.shape}")
        return arr.reshape(*arr.shape[:-2], self.dim)

    # -- loss, gradient, Hessian -------------------------------------------------------
    def _loss(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.loss(X)

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.gradient(X)

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        return self._kernel.hessian(X)

    def hvp(self, theta: Any, v: Any) -> np.ndarray:
        """Rowwise Hessian-vector products ``hess F(theta_b) v_b`` (never forms the Hessian).

        ``theta`` ``(d,)`` or ``(B, d)``; ``v`` ``(d,)`` or ``(B, d)``; a single ``theta`` is
        broadcast against a batch of ``v``.
        """
        X, V, single = self._pair(theta, v)
        out = self._kernel.hvp(X, V)
        return out[0] if single else out

    # -- sampling, critical points, classification, local map --------------------------
    def sample(self, rng: Any, n: int) -> np.ndarray:
        """``n`` initial points with i.i.d. ``N(0, 1)`` entries of ``U`` (absolutely continuous).

        ``rng`` is a ``numpy.random.Generator`` or an int seed.  Shape ``(n, dim)``.
        """
        count = _params.integer(n, "n (number of samples)", 1)
        return np.random.default_rng(rng).standard_normal((count, self.dim))

    def critical_points(self) -> list[csm.CriticalPoint]:
        """Known critical points (see :mod:`csm_matrix_recovery.critical`), computed once.

        ``info`` holds ``least_eigenvalue``, ``n_negative``, ``n_zero`` (center directions),
        ``n_positive`` where the Hessian exists, ``orbit_dimension`` (zero eigenvalues explained
        by the ``O(r)`` symmetry), ``closed_form`` or ``numerically_located`` (with
        ``gradient_norm`` and ``started_from``), ``smooth`` and ``reference``.
        """
        if self._critical is None:
            if self.loss_type == "full":
                self._critical = full_critical_points(self)
            else:
                self._critical = sensing_critical_points(self)
        return list(self._critical)

    def classify(self, theta: Any, *, tol: float = 1e-4, grad_tol: float = 1e-6):
        """Classify one point (a :class:`csm.Classification`) or a batch (a list).

        The nearest ``O(r)``-orbit of a listed critical point (Procrustes distance) is taken if
        within ``tol`` and, where the loss is smooth there, ``|grad F| <= grad_tol``.  A point
        with small gradient and no listed orbit near it gets its kind from the Hessian
        eigenvalues (label ``"unlisted-critical"``); otherwise ``kind="not_critical"``.  See
        :mod:`csm_matrix_recovery.classify`.
        """
        X, single = self._batch(theta)
        tol = _params.positive(tol, "tol")
        grad_tol = _params.positive(grad_tol, "grad_tol")
        out = classify_batch(self, X, tol, grad_tol)
        return out[0] if single else out

    def local_map(self, point: Any, step: float) -> csm.GradientDescentMap:
        """The gradient-descent map ``theta -> theta - step * grad F(theta)``.

        ``point`` (a :class:`csm.CriticalPoint` or a vector) is only checked for its shape: no
        modification of the map is needed for matrix recovery (paper §3.2).
        """
        theta = point.theta if isinstance(point, csm.CriticalPoint) else point
        self._batch(theta)
        return csm.GradientDescentMap(self, step)

