"""Spectral split of a fixed point's Jacobian (Assumption 2.1, docs/theory.md §1.1).

``A = Dg(x*) = Q Lambda Q^{-1}`` with ``Lambda`` real block diagonal (1x1 blocks for real
eigenvalues, 2x2 blocks ``[[a, b], [-b, a]]`` for complex pairs ``a +- ib``).  The first
``dim_cs`` columns of ``Q`` span the center-stable space ``E_cs`` (``|lambda| <= 1 + unit_tol``),
the others the unstable space ``E_u`` (``|lambda| > 1 + unit_tol``).

How the split is computed (robust to repeated eigenvalues by construction):

* ``A`` symmetric to rounding (``max|A - A^T| <= SYMMETRY_RTOL * max|A|``; every
  gradient-descent Jacobian ``I - step * H``): ``numpy.linalg.eigh``, orthonormal ``Q``.
* otherwise: real Schur form ``A = Z T Z^T``; the eigenvalues are grouped into clusters (single
  linkage at distance ``CLUSTER_RTOL * |A|_2``) and a whole cluster is unstable when its mean
  has modulus ``> 1 + unit_tol``.  Reordering the Schur form (LAPACK ``trsen``, as
  ``scipy.linalg.schur(..., sort=...)`` does) with the unstable clusters first gives an
  orthonormal basis ``U_u`` of ``E_u`` as the leading Schur vectors; with the center-stable
  clusters first, one ``U_cs`` of ``E_cs``.  Inside each of the two invariant spaces
  (``B = U^T A U`` quasi-triangular) a simple eigenvalue gets its eigenvector by
  back-substitution in the complex Schur form of ``B``; a cluster of ``m >= 2`` eigenvalues
  around ``lambda_c`` must have an ``m``-dimensional null space of ``B - lambda_c I``
  (singular values ``<= max(NULL_RTOL * |A|_2, 2 * cluster radius)``), else
  :class:`NotDiagonalizableError`; its orthonormal null-space basis is the (well-conditioned)
  eigenbasis of the cluster.  Complex eigenvectors ``u + iw`` (phase chosen with ``u ⊥ w``)
  give the real column pair ``u, w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import block_diag, rsf2csf, schur, solve_triangular
from scipy.linalg.lapack import dtrsen
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ._validation import positive_float
from .errors import (
    InputError,
    NonFiniteError,
    NotDiagonalizableError,
    NoUnstableDirectionError,
    ShapeError,
)
from .problem import to_jsonable

__all__ = [
    "SpectralSplit", "split_spectrum", "DEFAULT_UNIT_TOL", "DEFAULT_MAX_CONDITION",
    "SYMMETRY_RTOL", "CLUSTER_RTOL", "NULL_RTOL",
]

#: ``|lambda| > 1 + unit_tol`` counts as unstable.
DEFAULT_UNIT_TOL = 1e-9
#: Eigenbasis condition numbers above this are treated as "not diagonalisable".
DEFAULT_MAX_CONDITION = 1e8
#: ``max|A - A^T| <= SYMMETRY_RTOL * max|A|``: ``A`` is symmetric up to rounding (use ``eigh``).
SYMMETRY_RTOL = 1e-13
#: Eigenvalues closer than ``CLUSTER_RTOL * |A|_2`` (single linkage) are one cluster: far above
#: the ``~eps |A|`` splitting of a semisimple multiple eigenvalue (and of finite-difference
#: noise ``~1e-10``) and above the ``~sqrt(eps cond(P)) |A| <= 1e-7 |A|`` splitting that rounding
#: gives a 2x2 Jordan block ``P J P^{-1}``, so that one is seen as a single defective cluster.
CLUSTER_RTOL = 1e-6
#: A cluster's null directions are the singular values of ``A - lambda_c I`` below
#: ``max(NULL_RTOL * |A|_2, 2 * cluster radius)``.
NULL_RTOL = 1e-8


@dataclass(frozen=True)
class SpectralSplit:
    """The splitting ``R^d = E_cs (+) E_u`` of Assumption 2.1.

    Attributes
    ----------
    eigenvalues : ndarray of complex, shape (d,)
        Center-stable eigenvalues first (by increasing modulus), then unstable ones.
    basis_cs, basis_u : ndarray, shapes (d, dim_cs), (d, dim_u)
        Real eigenbases of ``E_cs`` and ``E_u``: unit columns for real eigenvalues (an
        orthonormal basis of the eigenspace of a repeated one; all of ``Q`` orthonormal when
        ``A`` is symmetric); the two columns ``u, w`` of a complex pair are scaled together
        (``|u| |w| = 1``, ``u ⊥ w``).
    block : ndarray (d, d)
        The real block-diagonal ``Lambda`` with ``A = Q Lambda Q^{-1}``,
        ``Q = [basis_cs, basis_u]``.
    Q_inv : ndarray (d, d)
        ``Q^{-1}``: eigen-coordinates of a displacement are ``Q_inv @ (x - x*)``.
    condition_number : float
        2-norm condition number of ``Q`` (1 for symmetric ``A``).
    unit_tol : float
        Tolerance used to decide ``|lambda| > 1``.
    """

    eigenvalues: np.ndarray
    basis_cs: np.ndarray
    basis_u: np.ndarray
    block: np.ndarray
    Q_inv: np.ndarray
    condition_number: float
    unit_tol: float
    symmetric: bool

    @property
    def dim_cs(self) -> int:
        return int(self.basis_cs.shape[1])

    @property
    def dim_u(self) -> int:
        return int(self.basis_u.shape[1])

    @property
    def Q(self) -> np.ndarray:
        return np.concatenate([self.basis_cs, self.basis_u], axis=1)

    @property
    def eigenvalues_u(self) -> np.ndarray:
        return self.eigenvalues[self.dim_cs:]

    @property
    def lambda_min_u(self) -> float:
        """Smallest modulus of an unstable eigenvalue (``lambda_min`` of docs/theory.md §1.3)."""
        return float(np.min(np.abs(self.eigenvalues_u))) if self.dim_u else float("nan")

    def to_dict(self) -> dict[str, Any]:
        ev = self.eigenvalues
        return to_jsonable({
            "dim_cs": self.dim_cs, "dim_u": self.dim_u,
            "eigenvalues_real": ev.real, "eigenvalues_imag": ev.imag,
            "condition_number": self.condition_number, "unit_tol": self.unit_tol,
            "lambda_min_u": self.lambda_min_u, "symmetric": self.symmetric,
        })


def _check_square(A: Any) -> np.ndarray:
    try:
        M = np.asarray(A, dtype=float)
    except (TypeError, ValueError):
        raise ShapeError(f"`A` must be a real square matrix, got {type(A).__name__}") from None
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ShapeError(f"`A` must be a non-empty square matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise NonFiniteError("`A` contains NaN or infinity")
    return M


def _schur_eigenvalues(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of a real quasi-triangular ``T`` and the index of each one's conjugate.

    A 2x2 diagonal block gives an exactly conjugate pair (so clusters are exactly
    conjugation-symmetric); a real eigenvalue is its own partner.
    """
    d = T.shape[0]
    w = np.zeros(d, dtype=complex)
    partner = np.arange(d)
    i = 0
    while i < d:
        if i + 1 < d and T[i + 1, i] != 0.0:
            a = 0.5 * (T[i, i] + T[i + 1, i + 1])
            disc = (0.5 * (T[i, i] - T[i + 1, i + 1])) ** 2 + T[i, i + 1] * T[i + 1, i]
            if disc < 0:
                b = float(np.sqrt(-disc))
                w[i], w[i + 1] = complex(a, b), complex(a, -b)
                partner[i], partner[i + 1] = i + 1, i
            else:  # not a standardised block (does not happen with LAPACK output)
                r = float(np.sqrt(disc))
                w[i], w[i + 1] = a + r, a - r
            i += 2
        else:
            w[i] = T[i, i]
            i += 1
    return w, partner


def _clusters(w: np.ndarray, tol: float) -> list[np.ndarray]:
    """Connected components of ``|w_i - w_j| <= tol`` (single linkage), as index arrays."""
    adj = np.abs(w[:, None] - w[None, :]) <= tol
    n, labels = connected_components(csr_matrix(adj), directed=False)
    return [np.flatnonzero(labels == c) for c in range(n)]


def _fmt(lam: complex) -> str:
    return f"{lam.real:.12g}" if lam.imag == 0 else f"{lam.real:.12g}{lam.imag:+.12g}j"


def _not_diagonalisable(lam: complex, m: int, sig: np.ndarray, tol: float, where: str
                        ) -> NotDiagonalizableError:
    geo = int(np.sum(sig <= tol))
    return NotDiagonalizableError(
        f"`A` is not diagonalisable (Assumption 2.1): the eigenvalue {_fmt(lam)} has algebraic "
        f"multiplicity {m} but geometric multiplicity {geo}; the {min(m + 1, sig.size)} smallest "
        f"singular values of A - lambda I on the {where} space are "
        f"[{', '.join(f'{x:.3g}' for x in sig[-(m + 1):])}] and only those <= {tol:.3g} "
        f"(= max({NULL_RTOL:g} * |A|_2, 2 * cluster radius)) count as null directions "
        "(a Jordan block, or eigenvalues this close with nearly parallel eigenvectors)"
    )


def _leading_schur(T: np.ndarray, Z: np.ndarray, select: np.ndarray, w: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Reorder the real Schur form ``(T, Z)`` so the selected eigenvalues lead (LAPACK trsen).

    Returns ``(U, B)``: orthonormal ``U`` spanning their invariant space and the
    quasi-triangular ``B = U^T A U``.
    """
    k = int(select.sum())
    if k == 0 or k == T.shape[0]:
        return Z[:, :k], T[:k, :k]
    Ts, Zs, _, _, k, _, _, info = dtrsen(select.astype(np.int32), T, Z, job="N")
    if info != 0:
        raise NotDiagonalizableError(
            "`A`: the unstable and center-stable eigenvalues could not be separated (LAPACK "
            f"trsen info={info}: a swap would be too ill-conditioned); eigenvalues "
            f"{np.round(w, 12)}")
    return Zs[:, :k], Ts[:k, :k]


def _invariant_eigenbasis(U: np.ndarray, B: np.ndarray, cluster_tol: float, null_tol: float,
                          where: str) -> list[tuple[float, np.ndarray, list[complex], np.ndarray]]:
    """Eigenbasis of ``A`` restricted to the invariant space ``span U`` (``A U = U B``).

    ``U`` has orthonormal columns and ``B`` is in real Schur form.  Returns items
    ``(modulus, columns (d, s), eigenvalues, block (s, s))`` with ``s = 1`` (real eigenvalue)
    or ``2`` (complex pair).
    """
    p = B.shape[0]
    if p == 0:
        return []
    w, partner = _schur_eigenvalues(B)
    Tc, Wc = rsf2csf(B, np.eye(p))
    items: list[tuple[float, np.ndarray, list[complex], np.ndarray]] = []
    for idx in _clusters(w, cluster_tol):
        m = idx.size
        # a conjugation-symmetric cluster is real (e.g. a spurious pair 0 +- 1e-17 i)
        real = bool(np.all(np.isin(partner[idx], idx)))
        if not real and idx.min() > partner[idx].min():
            continue  # the conjugate cluster (handled with its partner)
        if m == 1:
            j = int(idx[0])
            lam = complex(Tc[j, j])
            x = np.zeros(p, dtype=complex)
            x[j] = 1.0
            if j:
                x[:j] = solve_triangular(Tc[:j, :j] - lam * np.eye(j), -Tc[:j, j])
            V = (Wc @ x)[:, None]
            lam_c = complex(lam.real) if real else lam
        else:
            lam_c = complex(np.mean(w[idx]))
            if real:
                lam_c = complex(lam_c.real)
                S = B - lam_c.real * np.eye(p)
            else:
                S = B - lam_c * np.eye(p)
            _, sig, Vh = np.linalg.svd(S)
            radius = float(np.max(np.abs(w[idx] - lam_c)))
            tol = max(null_tol, 2.0 * radius)
            if sig[p - m] > tol:
                raise _not_diagonalisable(lam_c, m, sig, tol, where)
            V = Vh[p - m:].conj().T
        G = U @ V
        if real:
            for g in G.T:
                if np.iscomplexobj(g):
                    k = int(np.argmax(np.abs(g)))
                    g = (g * (np.conj(g[k]) / abs(g[k]))).real
                items.append((abs(lam_c.real), (g / np.linalg.norm(g))[:, None],
                              [complex(lam_c.real)], np.array([[lam_c.real]])))
        else:
            if lam_c.imag < 0:  # report the eigenvalue with positive imaginary part
                lam_c, G = np.conj(lam_c), np.conj(G)
            a, b = lam_c.real, lam_c.imag
            for g in G.T:
                s = g @ g  # phase with real, nonnegative g^T g: Re g ⊥ Im g
                if s != 0:
                    g = g * np.exp(-0.5j * np.angle(s))
                u, v = g.real, g.imag
                nrm = float(np.sqrt(np.linalg.norm(u) * np.linalg.norm(v)))
                if not nrm > 0:
                    raise NotDiagonalizableError(
                        f"`A` is not diagonalisable (Assumption 2.1): the complex eigenvalue "
                        f"{_fmt(lam_c)} has a real eigenvector (numerically coinciding with its "
                        "conjugate's)")
                # A [u v] = [u v] [[a, b], [-b, a]] is kept by a common scaling of u and v
                items.append((abs(lam_c), np.stack([u / nrm, v / nrm], axis=1),
                              [lam_c, np.conj(lam_c)], np.array([[a, b], [-b, a]])))
    if sum(it[1].shape[1] for it in items) != p:  # pragma: no cover - defensive
        raise NotDiagonalizableError(
            f"`A` is not diagonalisable (Assumption 2.1): the eigenvector count on the {where} "
            f"space does not match its dimension {p} (eigenvalues {w})")
    return items


def _assemble(items_cs: list, items_u: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``Q = [Q_cs, Q_u]``, the eigenvalues and ``Lambda``; each part ordered by modulus."""
    cols, vals, blocks = [], [], []
    n_cs = 0
    for part, items in enumerate((items_cs, items_u)):
        order = np.argsort([it[0] for it in items], kind="stable")
        for i in order:
            _, c, v, bl = items[i]
            cols.append(c)
            vals.extend(v)
            blocks.append(bl)
            if part == 0:
                n_cs += c.shape[1]
    return (np.concatenate(cols, axis=1), np.array(vals, dtype=complex), block_diag(*blocks),
            n_cs)


def split_spectrum(
    A: Any,
    unit_tol: float = DEFAULT_UNIT_TOL,
    *,
    max_condition: float = DEFAULT_MAX_CONDITION,
    require_unstable: bool = True,
) -> SpectralSplit:
    """Split ``R^d`` into the center-stable and unstable spaces of ``A`` (Assumption 2.1).

    Parameters
    ----------
    A : array_like (d, d)
        The Jacobian ``Dg(x*)`` at a fixed point.  It may be singular (eigenvalue 0), may have
        repeated eigenvalues and may have eigenvalues of modulus exactly 1 (center directions).
    unit_tol : float
        An eigenvalue is unstable when ``|lambda| > 1 + unit_tol`` (finite, ``> 0``).  A cluster
        of (numerically) equal eigenvalues is classified as a whole, by its mean.
    max_condition : float
        Assumption 2.1 needs ``A`` diagonalisable over C.  A repeated eigenvalue whose
        eigenspace is too small raises :class:`NotDiagonalizableError` directly (see Notes);
        in addition, a returned eigenbasis ``Q`` with 2-norm condition number
        ``cond(Q) > max_condition`` (default 1e8; finite, ``>= 1``) is refused, e.g. a Jordan
        block of size >= 3 whose rounding splits its eigenvalues into nearly parallel
        eigenvectors.
    require_unstable : bool
        Raise :class:`NoUnstableDirectionError` when there is no unstable eigenvalue.

    Returns
    -------
    SpectralSplit

    Raises
    ------
    ShapeError, NonFiniteError
        ``A`` is not a finite square matrix.
    InputError
        ``unit_tol`` or ``max_condition`` is not a finite positive number (NaN included).
    NotDiagonalizableError
        A cluster's geometric multiplicity is below its algebraic one (the message gives the
        eigenvalue, both multiplicities and the singular values), or ``cond(Q)`` is too large.
    NoUnstableDirectionError
        No eigenvalue has modulus > 1 + unit_tol (and ``require_unstable``).

    Notes
    -----
    Symmetric ``A`` (to rounding: ``max|A - A^T| <= 1e-13 max|A|``) uses ``numpy.linalg.eigh``:
    orthonormal ``Q``, condition number 1.  Otherwise the real Schur route of the module
    docstring: eigenvalues within ``CLUSTER_RTOL |A|_2 = 1e-6 |A|_2`` of each other (single
    linkage) form one cluster -- this groups the ``~sqrt(eps |A|)`` splitting that rounding
    gives a Jordan block, and the ``~eps |A|`` (or finite-difference-noise) splitting of a
    semisimple repeated eigenvalue, including a spurious complex pair with tiny imaginary
    parts (a conjugation-symmetric cluster is real).  A cluster of size ``m`` around
    ``lambda_c`` is accepted when ``B - lambda_c I`` (``B`` = ``A`` on ``E_cs`` or ``E_u``) has
    ``m`` singular values ``<= max(NULL_RTOL |A|_2, 2 r)`` (``NULL_RTOL = 1e-8``, ``r`` the
    cluster radius; a normal cluster has them ``<= r``); all its eigenvalues are then reported
    as ``lambda_c`` and its eigenvectors are an orthonormal basis of that null space, so
    ``|A Q - Q Lambda| <= sqrt(m) max(1e-8 |A|_2, 2 r)`` for it.  A Jordan block
    ``[[lambda, nu], [0, lambda]]`` is refused once ``nu`` exceeds about ``1e-8 |A|_2``.
    Each complex pair ``a +- ib`` with eigenvector ``u + iw`` contributes the real columns
    ``u, w`` and the block ``[[a, b], [-b, a]]``.  Cost O(d^3) plus one SVD of the invariant
    space per repeated eigenvalue.

    Examples
    --------
    >>> import numpy as np
    >>> s = split_spectrum(np.diag([0.5, 0.0, 2.0]))
    >>> s.dim_cs, s.dim_u, s.eigenvalues.real.tolist()
    (2, 1, [0.0, 0.5, 2.0])
    >>> P = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    >>> s = split_spectrum(P @ np.diag([0.0, 0.0, 2.0]) @ np.linalg.inv(P))  # repeated 0
    >>> s.dim_cs, s.dim_u, s.condition_number < 10
    (2, 1, True)
    """
    M = _check_square(A)
    unit_tol = positive_float(unit_tol, "unit_tol")
    max_condition = positive_float(max_condition, "max_condition")
    if max_condition < 1:
        raise InputError(
            f"`max_condition` must be a finite number >= 1 (a condition number is >= 1), "
            f"got {max_condition!r}")
    d = M.shape[0]
    big = float(np.max(np.abs(M)))
    symmetric = bool(np.max(np.abs(M - M.T)) <= SYMMETRY_RTOL * big)
    if symmetric:
        w, V = np.linalg.eigh(0.5 * (M + M.T))
        unstable = np.abs(w) > 1.0 + unit_tol
        items_cs = [(abs(x), V[:, i:i + 1], [complex(x)], np.array([[x]]))
                    for i, x in enumerate(w) if not unstable[i]]
        items_u = [(abs(x), V[:, i:i + 1], [complex(x)], np.array([[x]]))
                   for i, x in enumerate(w) if unstable[i]]
    else:
        scale = float(np.linalg.norm(M, 2))
        cluster_tol, null_tol = CLUSTER_RTOL * scale, NULL_RTOL * scale
        T, Z = schur(M, output="real")
        w, partner = _schur_eigenvalues(T)
        select = np.zeros(d, dtype=bool)
        for idx in _clusters(w, cluster_tol):
            select[idx] = abs(np.mean(w[idx])) > 1.0 + unit_tol
        select |= select[partner]  # both eigenvalues of a 2x2 block move together
        # the leading Schur vectors after reordering span the invariant space of the leading
        # eigenvalues: unstable first gives E_u, center-stable first gives E_cs
        U_u, B_u = _leading_schur(T, Z, select, w)
        U_cs, B_cs = _leading_schur(T, Z, ~select, w)
        items_u = _invariant_eigenbasis(U_u, B_u, cluster_tol, null_tol, "unstable")
        items_cs = _invariant_eigenbasis(U_cs, B_cs, cluster_tol, null_tol, "center-stable")
    Q, ev, block, n_cs = _assemble(items_cs, items_u)
    cond = 1.0 if symmetric else float(np.linalg.cond(Q))
    if not np.isfinite(cond) or cond > max_condition:
        raise NotDiagonalizableError(
            f"`A` is not diagonalisable (Assumption 2.1): the eigenbasis has condition number "
            f"{cond:.3g} > max_condition={max_condition:.3g}; eigenvalues {np.round(ev, 12)}"
            " (a Jordan block or nearly coinciding eigenvalues with parallel eigenvectors)"
        )
    Q_inv = Q.T.copy() if symmetric else np.linalg.inv(Q)
    split = SpectralSplit(
        eigenvalues=ev, basis_cs=Q[:, :n_cs], basis_u=Q[:, n_cs:], block=block, Q_inv=Q_inv,
        condition_number=cond, unit_tol=float(unit_tol), symmetric=symmetric,
    )
    if require_unstable and split.dim_u == 0:
        raise NoUnstableDirectionError(
            "`A` has no eigenvalue of modulus > 1 (Assumption 2.1 needs one): largest modulus "
            f"{np.max(np.abs(ev)):.12g} <= 1 + unit_tol = {1 + unit_tol:.12g}; the fixed point is "
            "not a strict saddle of the map (for gradient descent: no negative Hessian eigenvalue)"
        )
    return split
