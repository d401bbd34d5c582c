"""The cutoff of Lemma 6.1 (docs/theory.md, "The cutoff").

``chi_eps(z) = eta(|z| / eps) z`` with the C-infinity step ``eta`` (1 on ``[0, 1]``, 0 on
``[2, inf)``).  The Lyapunov--Perron operator acts on the cut-off remainder ``r o chi_eps``, which
is globally Lipschitz although ``r`` need not be.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bump", "bump_derivative", "cutoff", "CUTOFF_LIPSCHITZ", "CUTOFF_GROWTH"]


def _smooth_zero(t: np.ndarray) -> np.ndarray:
    """``exp(-1/t)`` for ``t > 0``, else 0 (C-infinity)."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    pos = t > 0
    out[pos] = np.exp(-1.0 / t[pos])
    return out


def bump(s: np.ndarray) -> np.ndarray:
    """The C-infinity step ``eta`` of Lemma 6.1: 1 on ``[0, 1]``, 0 on ``[2, inf)``.

    ``eta(s) = f(2 - s) / (f(2 - s) + f(s - 1))`` with ``f(t) = exp(-1/t)`` (t > 0).
    ``max |eta'| = 2`` (at ``s = 1.5``), as Lemma 6.1 requires.
    """
    s = np.asarray(s, dtype=float)
    a = _smooth_zero(2.0 - s)
    b = _smooth_zero(s - 1.0)
    return a / (a + b)


def bump_derivative(s: np.ndarray) -> np.ndarray:
    """``eta'(s)`` in closed form (zero outside ``(1, 2)``)."""
    s = np.asarray(s, dtype=float)
    out = np.zeros_like(s)
    m = (s > 1.0) & (s < 2.0)
    t1, t2 = 2.0 - s[m], s[m] - 1.0
    a, b = np.exp(-1.0 / t1), np.exp(-1.0 / t2)
    da = -a / t1**2  # d/ds f(2 - s) = -f'(2 - s)
    db = b / t2**2
    out[m] = (da * (a + b) - a * (da + db)) / (a + b) ** 2
    return out


def cutoff(Z: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``chi_eps`` and the pieces of its derivative at rows of ``Z (S, n)``.

    Returns ``(W, eta, seta, U)``: ``W = chi(Z)``, ``eta = eta(|z|/eps)``,
    ``seta = s eta'(s)`` and ``U = z/|z|`` (0 at z = 0), so that
    ``D chi(z) v = eta v + seta (u . v) u`` (a symmetric matrix with singular values
    ``|eta|`` and ``|eta + s eta'|``).
    """
    nz = np.linalg.norm(Z, axis=1)
    s = nz / eps
    eta = bump(s)
    seta = s * bump_derivative(s)
    U = Z / np.where(nz > 0, nz, 1.0)[:, None]
    return eta[:, None] * Z, eta, seta, U


def _sup_on_grid(f) -> float:
    s = np.linspace(0.0, 2.0, 400001)
    return float(np.max(f(s, bump(s), bump_derivative(s)))) * (1.0 + 1e-9)


#: Lipschitz constant of ``chi`` (any eps): sup over s of ``max(|eta|, |eta + s eta'|)``.
CUTOFF_LIPSCHITZ = _sup_on_grid(lambda s, e, de: np.maximum(np.abs(e), np.abs(e + s * de)))

#: ``sup_s s eta(s) max(|eta(s)|, |eta(s) + s eta'(s)|)``: with ``|Dr(w)| <= M' |w|`` this
#: bounds ``|D(r o chi_eps)(z)| <= M' eps CUTOFF_GROWTH`` (docs/theory.md, "A proved kappa").
CUTOFF_GROWTH = _sup_on_grid(
    lambda s, e, de: s * e * np.maximum(np.abs(e), np.abs(e + s * de)))
