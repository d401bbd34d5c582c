"""Spectral split of a fixed point's Jacobian (Assumption 2.1, MATH.md §1.1).

``A = Dg(x*) = Q Lambda Q^{-1}`` with ``Lambda`` real block diagonal (1x1 blocks for real
eigenvalues, 2x2 blocks ``[[a, b], [-b, a]]`` for complex pairs ``a +- ib``).  The columns of
``Q`` are unit vectors; the first ``dim_cs`` span the center-stable space ``E_cs``
(``|lambda| <= 1``), the others the unstable space ``E_u`` (``|lambda| > 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import block_diag

from .errors import (
    NonFiniteError,
    NotDiagonalizableError,
    NoUnstableDirectionError,
    ShapeError,
)
from .problem import to_jsonable

__all__ = ["SpectralSplit", "split_spectrum", "DEFAULT_UNIT_TOL", "DEFAULT_MAX_CONDITION"]

#: ``|lambda| > 1 + unit_tol`` counts as unstable.
DEFAULT_UNIT_TOL = 1e-9
#: Eigenbasis condition numbers above this are treated as "not diagonalisable".
DEFAULT_MAX_CONDITION = 1e8


@dataclass(frozen=True)
class SpectralSplit:
    """The splitting ``R^d = E_cs (+) E_u`` of Assumption 2.1.

    Attributes
    ----------
    eigenvalues : ndarray of complex, shape (d,)
        Center-stable eigenvalues first (by increasing modulus), then unstable ones.
    basis_cs, basis_u : ndarray, shapes (d, dim_cs), (d, dim_u)
        Real unit-column bases of ``E_cs`` and ``E_u`` (orthonormal when ``A`` is symmetric).
    block : ndarray (d, d)
        The real block-diagonal ``Lambda`` with ``A = Q Lambda Q^{-1}``, ``Q = [basis_cs, basis_u]``.
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
        """Smallest modulus of an unstable eigenvalue (``lambda_min`` of MATH.md §1.3)."""
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
        The Jacobian ``Dg(x*)`` at a fixed point.  It may be singular (eigenvalue 0) and may
        have eigenvalues of modulus exactly 1 (center directions).
    unit_tol : float
        An eigenvalue is unstable when ``|lambda| > 1 + unit_tol``.
    max_condition : float
        Assumption 2.1 needs ``A`` diagonalisable over C.  Numerically this is judged by the
        2-norm condition number of the unit-column eigenbasis ``Q``: a Jordan block gives
        ``cond(Q) ~ 1/sqrt(eps) ~ 1e8`` or more, so ``cond(Q) > max_condition`` (default 1e8)
        raises :class:`NotDiagonalizableError`.
    require_unstable : bool
        Raise :class:`NoUnstableDirectionError` when there is no unstable eigenvalue.

    Returns
    -------
    SpectralSplit

    Raises
    ------
    ShapeError, NonFiniteError
        ``A`` is not a finite square matrix.
    NotDiagonalizableError
        The eigenbasis is (numerically) singular.
    NoUnstableDirectionError
        No eigenvalue has modulus > 1 + unit_tol (and ``require_unstable``).

    Notes
    -----
    Symmetric ``A`` (gradient-descent maps) use ``numpy.linalg.eigh``: orthonormal ``Q``,
    condition number 1.  Otherwise ``numpy.linalg.eig``; each complex pair ``a +- ib`` with
    eigenvector ``u + iw`` contributes the real columns ``u, w`` and the block
    ``[[a, b], [-b, a]]``.  Cost O(d^3).

    Examples
    --------
    >>> import numpy as np
    >>> s = split_spectrum(np.diag([0.5, 0.0, 2.0]))
    >>> s.dim_cs, s.dim_u, s.eigenvalues.real.tolist()
    (2, 1, [0.0, 0.5, 2.0])
    """
    M = _check_square(A)
    d = M.shape[0]
    symmetric = bool(np.allclose(M, M.T, rtol=0, atol=1e-13 * max(1.0, np.abs(M).max())))
    if symmetric:
        w, V = np.linalg.eigh(0.5 * (M + M.T))
        cols = [V[:, i:i + 1] for i in range(d)]
        vals = [complex(x) for x in w]
        blocks = [np.array([[x]]) for x in w]
    else:
        w, V = np.linalg.eig(M)
        scale = max(1.0, float(np.max(np.abs(w))))
        cols, vals, blocks = [], [], []
        used = np.zeros(d, dtype=bool)
        for i in np.argsort(-w.imag, kind="stable"):
            if used[i]:
                continue
            lam, v = w[i], V[:, i]
            if abs(lam.imag) <= 1e-12 * scale:
                k = int(np.argmax(np.abs(v)))
                v = v * (np.conj(v[k]) / abs(v[k]))
                vr = v.real / np.linalg.norm(v.real)
                cols.append(vr[:, None])
                vals.append(complex(lam.real))
                blocks.append(np.array([[lam.real]]))
                used[i] = True
            else:
                if lam.imag < 0:  # conjugate of a pair already handled
                    used[i] = True
                    continue
                # mark the conjugate partner as used
                partner = np.argmin(np.abs(w - np.conj(lam)) + used * 1e300)
                used[i] = used[partner] = True
                a, b = lam.real, lam.imag
                u, ww = v.real, v.imag
                # keep A [u w] = [u w] [[a, b], [-b, a]] while normalising columns jointly
                nrm = np.sqrt(np.linalg.norm(u) * np.linalg.norm(ww))
                cols.append(np.stack([u / nrm, ww / nrm], axis=1))
                vals.extend([lam, np.conj(lam)])
                blocks.append(np.array([[a, b], [-b, a]]))
    mods = [abs(v) for v in vals]
    # order the blocks: center-stable (by modulus) then unstable (by modulus)
    block_mod = []
    k = 0
    for bl in blocks:
        block_mod.append(mods[k])
        k += bl.shape[0]
    order = np.argsort(block_mod, kind="stable")
    unstable_blk = [block_mod[i] > 1.0 + unit_tol for i in order]
    Qcols, Ev, Bl = [], [], []
    starts = np.cumsum([0] + [b.shape[0] for b in blocks])
    for i in order:
        Qcols.append(cols[i])
        Ev.extend(vals[starts[i]:starts[i + 1]])
        Bl.append(blocks[i])
    Q = np.concatenate(Qcols, axis=1)
    n_cs = int(sum(b.shape[0] for b, u in zip(Bl, unstable_blk) if not u))
    block = block_diag(*Bl)
    cond = 1.0 if symmetric else float(np.linalg.cond(Q))
    if not np.isfinite(cond) or cond > max_condition:
        raise NotDiagonalizableError(
            f"`A` is not diagonalisable (Assumption 2.1): the eigenbasis has condition number "
            f"{cond:.3g} > max_condition={max_condition:.3g}; eigenvalues {np.round(np.array(Ev), 12)}"
            " (a Jordan block or nearly coinciding eigenvalues with parallel eigenvectors)"
        )
    Q_inv = Q.T.copy() if symmetric else np.linalg.inv(Q)
    ev = np.array(Ev, dtype=complex)
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
