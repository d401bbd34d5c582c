"""The one answer to "what is this limit?" (docs/theory.md §8.1, "Identifying a limit").

A limit ``theta`` of gradient descent is named, in this order:

1. ``problem.classify(theta)`` when the problem has one and it does not say ``"not_critical"``;
2. the loss layer: the nearest value of ``problem.critical_values()`` within ``loss_tol``
   (used by transition graphs for plateaus, which are near but not at critical points; off
   for stable sets);
3. the nearest entry of ``problem.critical_points()`` within ``match_tol``;
4. the **spectral certificate** of the limit itself (:func:`certify_limits`), which needs
   nothing from the plugin but a gradient: the Hessian spectrum at ``theta`` with a tolerance
   model tied to the gradient norm there, and a higher-order probe along the null directions.

The certificate is also computed for runs named by 1.-3. as a cross-check; a run whose
listed kind (saddle or not) disagrees with its own certificate is flagged.

Tolerance model
---------------
At a point with gradient norm ``g`` near a critical point, an eigenvalue ``h`` of the Hessian
is resolved when ``|h| > zero_tol``,

    zero_tol = max(4 sqrt(g S), 1e3 eps_mach S, fd)      S = max(1, max |eigenvalue|),

``fd = sqrt(eps_mach) S`` when the Hessian comes from finite differences of the gradient.  The
first term covers degenerate critical points: for ``L = x^3/3`` a point with gradient ``g = x^2``
has Hessian ``2x = 2 sqrt(g)``; the others are round-off.  Along every null direction ``v``
(``|h| <= zero_tol``) the loss is probed at ``t = 1e-6, 1e-5, ..., 1e-2, 3e-2, 1e-1`` times
``max(1, |theta|)``, both signs: **descent** is ``L(theta + t v) - L(theta) < -(|G.v| t +
zero_tol t^2 / 2 + noise)`` at some ``t`` -- a decrease that neither the remaining gradient nor
the unresolved curvature explains -- with the loss strictly below ``L(theta)`` at every smaller
``t`` too (a higher-order saddle decreases from the start; a flat direction that only a large
push turns into descent, such as a dead ReLU neuron revived, does not).

Outcomes: ``global_minimum`` (the loss is within ``loss_tol`` of the problem's declared
infimum ``min_loss``: nothing lies below, whatever a one-sided Hessian of a non-smooth loss
says), ``strict_saddle`` (an eigenvalue below ``-zero_tol``; the eigenvalue and eigenvector
are reported), ``saddle`` (semi-definite, descent found along a null direction), ``local_minimum`` (no descent, positive definite or flat along the probed null
directions), ``local_maximum`` (all eigenvalues below ``-zero_tol``), and ``degenerate`` where
the probe could not cover the null space (more than ``MAX_NULL`` null directions and no descent
found along ``MAX_NULL`` random combinations of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_batch, positive_float
from .errors import InputError, NonFiniteError
from .problem import KINDS, CriticalPoint

__all__ = [
    "SADDLE_KINDS",
    "UNDECIDED_KINDS",
    "Certificates",
    "certify_limits",
    "hessian_spectrum",
    "Identification",
    "identify_limits",
    "listed_points",
    "nearest",
    "DENSE_MAX_DIM",
    "loss_level",
    "critical_values",
    "MAX_NULL",
]

#: Kinds of critical points counted as "converged into a saddle" (not a local minimum).
SADDLE_KINDS = ("strict_saddle", "saddle", "local_maximum")

#: Kinds of a converged run that no test could decide.
UNDECIDED_KINDS = ("degenerate", "unidentified")

#: Largest dimension whose Hessian is formed densely (batched ``eigh``).
DENSE_MAX_DIM = 400

#: Null directions probed one by one; beyond, random combinations of them.
MAX_NULL = 16

#: Lanczos eigenpairs asked for at each end of the spectrum in matrix-free mode.
_LANCZOS_K = 6

_EPS = float(np.finfo(float).eps)


# ---------------------------------------------------------------------------------------
# listed critical points
# ---------------------------------------------------------------------------------------
def listed_points(problem: Any, d: int) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """``(theta (K, d), labels, kinds, layers)`` of ``problem.critical_points()`` (may be empty).

    Raises :class:`~csm.InputError` when an entry is not a :class:`~csm.CriticalPoint` of
    dimension ``d``.
    """
    getter = getattr(problem, "critical_points", None)
    cps = list(getter()) if callable(getter) else []
    if not cps:
        return np.zeros((0, d)), (), (), ()
    rows, layers = [], []
    for i, c in enumerate(cps):
        if not isinstance(c, CriticalPoint):
            raise InputError(f"`problem.critical_points()` entry {i} must be a csm.CriticalPoint, "
                             f"got {type(c).__name__}")
        t = np.asarray(c.theta, dtype=float).reshape(-1)
        if t.shape != (d,):
            raise InputError(f"`problem.critical_points()` entry {i} ({c.label!r}) has dimension "
                             f"{t.shape[0]}, the problem has dim {d}")
        rows.append(t)
        lay = (c.info or {}).get("layer")
        layers.append(-1 if lay is None else int(lay))
    return (np.stack(rows), tuple(str(c.label) for c in cps), tuple(str(c.kind) for c in cps),
            tuple(layers))


def nearest(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest center for each point (``(m,)``, ``(m,)``)."""
    m, K = points.shape[0], centers.shape[0]
    if K == 0 or m == 0:
        return np.zeros(m, dtype=np.int64), np.full(m, np.inf)
    j = np.empty(m, dtype=np.int64)
    dist = np.empty(m)
    c2 = np.einsum("ij,ij->i", centers, centers)
    block = max(1, 4_000_000 // K)  # bound the (block, K) distance matrix to ~32 MB
    for a in range(0, m, block):
        P = points[a:a + block]
        D2 = np.einsum("ij,ij->i", P, P)[:, None] - 2.0 * P @ centers.T + c2[None, :]
        jj = np.argmin(D2, axis=1)
        j[a:a + block] = jj
        dist[a:a + block] = np.linalg.norm(P - centers[jj], axis=1)  # exact, no cancellation
    return j, dist


# ---------------------------------------------------------------------------------------
# the Hessian spectrum
# ---------------------------------------------------------------------------------------
def _fd_hessian(problem: Any, X: np.ndarray) -> np.ndarray:
    from .maps import fd_jacobian

    H = fd_jacobian(lambda Y: np.asarray(problem.gradient(Y), dtype=float), X)
    return 0.5 * (H + np.swapaxes(H, 1, 2))


def _hvp_operator(problem: Any, theta: np.ndarray):
    """``v -> H v`` at ``theta`` from ``problem.hvp`` or central differences of the gradient."""
    d = theta.shape[0]
    hvp = getattr(problem, "hvp", None)
    if callable(hvp):
        def mv(V: np.ndarray) -> np.ndarray:
            return np.asarray(hvp(np.broadcast_to(theta, V.shape), V), dtype=float)
        return mv, False
    h = np.sqrt(_EPS) * max(1.0, float(np.linalg.norm(theta)))

    def mv_fd(V: np.ndarray) -> np.ndarray:
        P = np.concatenate([theta + h * V, theta - h * V])
        G = np.asarray(problem.gradient(P), dtype=float).reshape(2, V.shape[0], d)
        return (G[0] - G[1]) / (2 * h)
    return mv_fd, True


def hessian_spectrum(problem: Any, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Eigenvalues/eigenvectors of the Hessian at rows of ``X``, the scale and whether FD was used.

    Dense ``eigh`` (batched) up to :data:`DENSE_MAX_DIM` -- from ``problem.hessian`` or
    central differences of the gradient; above, Lanczos (``eigsh``) on Hessian-vector
    products: the largest eigenvalue (scale, 3 digits) and the smallest, or the
    :data:`_LANCZOS_K` smallest when that one is not clearly negative (then ``n_negative`` and
    the null directions come from those).
    Returns ``(evals, evecs, scale, fd)``: per point ascending eigenvalues (all, or the
    smallest ones) with eigenvectors as columns, ``S = max(1, max |eig|)`` and a flag.

    Raises :class:`~csm.NonFiniteError` when the Hessian has NaN or infinite entries.
    """
    B, d = X.shape
    if d <= DENSE_MAX_DIM:
        fd = not callable(getattr(problem, "hessian", None))
        H = None
        if not fd:
            try:
                H = np.asarray(problem.hessian(X), dtype=float).reshape(B, d, d)
            except NotImplementedError:
                fd = True
        if fd:
            H = _fd_hessian(problem, X)
        if not np.all(np.isfinite(H)):
            bad = int(np.nonzero(~np.isfinite(H).reshape(B, -1).all(axis=1))[0][0])
            raise NonFiniteError(f"the Hessian at the limit {X[bad]!r} has NaN or infinite entries")
        w, V = np.linalg.eigh(0.5 * (H + np.swapaxes(H, 1, 2)))
        scale = np.maximum(1.0, np.max(np.abs(w), axis=1))
        return list(w), list(V), scale, np.full(B, fd)
    from scipy.sparse.linalg import LinearOperator, eigsh

    evals, evecs, scale, fds = [], [], np.ones(B), np.zeros(B, dtype=bool)
    for i in range(B):
        mv, fd = _hvp_operator(problem, X[i])

        def matvec(v: np.ndarray, mv=mv) -> np.ndarray:
            V = np.atleast_2d(np.asarray(v, dtype=float).T).reshape(-1, d)
            out = mv(V)
            if not np.all(np.isfinite(out)):
                raise NonFiniteError(f"the Hessian-vector product at the limit {X[i][:4]!r}... "
                                     "returned NaN or infinity")
            return out.T if np.ndim(v) == 2 else out[0]

        op = LinearOperator((d, d), matvec=matvec, matmat=matvec, dtype=float)
        v0 = np.ones(d) / np.sqrt(d)
        # the scale needs 3 digits; the least eigenvalue many.  The smallest first: a clearly
        # negative one decides (n_negative then counts the computed eigenvalues only);
        # otherwise the null space needs the _LANCZOS_K smallest.
        top = eigsh(op, k=1, which="LA", tol=1e-3, v0=v0, return_eigenvectors=False)
        w, V = eigsh(op, k=1, which="SA", tol=1e-10, v0=v0)
        S = max(1.0, float(np.abs(top[0])), float(np.max(np.abs(w))))
        if not w.min() < -1e-6 * S:
            w, V = eigsh(op, k=min(_LANCZOS_K, d - 1), which="SA", tol=1e-8, v0=v0)
        order = np.argsort(w)
        evals.append(w[order])
        evecs.append(V[:, order])
        scale[i], fds[i] = S, fd
    return evals, evecs, scale, fds


# ---------------------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    """Per-point spectral certificates (arrays of length ``B``; see the module docstring)."""

    kind: np.ndarray  # str
    least_eigenvalue: np.ndarray
    eigenvector: np.ndarray  # (B, d): eigenvector of the least eigenvalue
    n_negative: np.ndarray
    n_null: np.ndarray
    zero_tol: np.ndarray
    descent: np.ndarray  # bool: the probe found descent along a null direction
    loss: np.ndarray


def certify_limits(problem: Any, X: Any, *, grad_norm: Any = None, min_loss: float | None = None,
                   loss_tol: float | None = None) -> Certificates:
    """Spectral certificates of the points ``X (B, d)`` (module docstring: rules and tolerances).

    Parameters
    ----------
    problem : Problem
        Needs ``loss`` and ``gradient``; ``hessian`` / ``hvp`` are used when present.
    X : array (B, d) or (d,)
        The limits.
    grad_norm : array (B,), optional
        ``|G|`` at the limits (computed when omitted).
    min_loss : float, optional
        The problem's infimum (default ``problem.min_loss`` when declared): a loss within
        ``loss_tol`` of it makes a minimum global.
    loss_tol : float, optional
        Default ``1e-10 max(1, |min_loss|)``.

    Raises
    ------
    NonFiniteError
        The Hessian (or HVP) is NaN or infinite at a limit.
    InputError
        ``min_loss`` exceeds an observed loss by more than ``loss_tol``.
    """
    d = int(problem.dim)
    X, _ = as_batch(X, d, name="X")
    B = X.shape[0]
    if grad_norm is None:
        grad_norm = np.linalg.norm(np.asarray(problem.gradient(X), dtype=float).reshape(B, d), axis=1)
    gn = np.asarray(grad_norm, dtype=float).reshape(B)
    L = np.asarray(problem.loss(X), dtype=float).reshape(B)
    if min_loss is None:
        min_loss = getattr(problem, "min_loss", None)
    if min_loss is not None:
        min_loss = float(min_loss)
        ltol = (positive_float(loss_tol, "loss_tol") if loss_tol is not None
                else 1e-10 * max(1.0, abs(min_loss)))
        if np.any(L < min_loss - ltol):
            raise InputError(f"`min_loss` = {min_loss:.12g} exceeds an observed loss "
                             f"{float(L.min()):.12g}: the declared infimum is wrong")
    evals, evecs, S, fd = hessian_spectrum(problem, X)
    zt = np.maximum.reduce([4.0 * np.sqrt(np.maximum(gn, 0.0) * S), 1e3 * _EPS * S,
                            np.where(fd, np.sqrt(_EPS) * S, 0.0)])
    kind = np.empty(B, dtype=object)
    least = np.array([float(w[0]) for w in evals])
    vec = np.stack([V[:, 0] for V in evecs])
    n_neg = np.array([int(np.sum(w < -zt[i])) for i, w in enumerate(evals)])
    n_null = np.array([int(np.sum(np.abs(w) <= zt[i])) for i, w in enumerate(evals)])
    descent = np.zeros(B, dtype=bool)
    G = np.asarray(problem.gradient(X), dtype=float).reshape(B, d)
    # probe the null directions (all points at once)
    probe_dirs, owner = [], []
    rng = np.random.default_rng(0)
    covered = np.ones(B, dtype=bool)
    for i in range(B):
        null = evecs[i][:, np.abs(evals[i]) <= zt[i]]
        if null.shape[1] == 0 or n_neg[i] > 0:
            continue
        if null.shape[1] > MAX_NULL:
            comb = rng.standard_normal((null.shape[1], MAX_NULL))
            null = null @ (comb / np.linalg.norm(comb, axis=0))
            covered[i] = False
        probe_dirs.append(null.T)
        owner.append(np.full(null.shape[1], i))
    if probe_dirs:
        Vd = np.concatenate(probe_dirs)
        own = np.concatenate(owner)
        ts = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1])
        tscale = np.maximum(1.0, np.linalg.norm(X[own], axis=1))
        gv = np.abs(np.sum(G[own] * Vd, axis=1))[:, None]
        noise = 64 * _EPS * np.maximum(np.abs(L[own]), 1e-300)[:, None] + 1e-300
        dec = np.zeros(len(own), dtype=bool)
        for sign in (1.0, -1.0):
            T = sign * ts[None, :] * tscale[:, None]  # (m, 7), increasing |t|
            P = X[own][:, None, :] + T[:, :, None] * Vd[:, None, :]
            with np.errstate(all="ignore"):
                Lp = np.asarray(problem.loss(P.reshape(-1, d)), dtype=float).reshape(T.shape)
            dL = Lp - L[own][:, None]
            explained = gv * np.abs(T) + 0.5 * zt[own][:, None] * T**2 + noise
            # descent: beyond what gradient and unresolved curvature explain at some scale, and
            # strictly negative at every smaller scale (a flat stretch, as for a dead neuron
            # that a large push revives, is not descent from the point itself)
            below = np.logical_and.accumulate(dL < -noise, axis=1)
            dec |= np.any(below & (dL < -explained), axis=1)
        np.logical_or.at(descent, own, dec)
    at_min = np.zeros(B, dtype=bool)
    if min_loss is not None:
        at_min = L <= min_loss + ltol
    for i in range(B):
        w = evals[i]
        if at_min[i]:  # nothing lies below the infimum, whatever a (one-sided) Hessian says
            kind[i] = "global_minimum"
        elif n_neg[i] > 0:
            kind[i] = "local_maximum" if (n_neg[i] == d) else "strict_saddle"
        elif descent[i]:
            kind[i] = "saddle"
        elif n_null[i] == 0 or covered[i]:
            kind[i] = "local_minimum"
        else:
            kind[i] = "degenerate"
        del w
    return Certificates(kind=kind.astype(str), least_eigenvalue=least, eigenvector=vec,
                        n_negative=n_neg, n_null=n_null, zero_tol=zt, descent=descent, loss=L)


# ---------------------------------------------------------------------------------------
# identification
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identification:
    """What each limit is: arrays of length ``B``.

    ``label``, ``kind``, ``layer`` (-1 none), ``via`` (``"classify"``, ``"critical_point"``,
    ``"critical_values"``, ``"spectrum"`` or ``"none"``), ``certified_kind`` (the spectral
    certificate, ``""`` where not computed), ``least_eigenvalue`` (NaN where not computed),
    ``disagree`` (the listed kind and the certificate disagree on "saddle or not"),
    ``cp_index`` (index into ``problem.critical_points()``, -1 none) and ``info_index``
    (the Morse index a ``classify`` result reports in ``info["index"]``, -1 none).
    """

    label: np.ndarray
    kind: np.ndarray
    layer: np.ndarray
    via: np.ndarray
    certified_kind: np.ndarray
    least_eigenvalue: np.ndarray
    disagree: np.ndarray
    cp_index: np.ndarray
    info_index: np.ndarray


def loss_level(value: float, digits: int = 3) -> str:
    """A loss value as a class name: ``digits`` significant digits, ``"0"`` at or below 1e-8.

    Limits found only by their spectrum are grouped by kind and this level (a converged run's
    loss differs from the critical value by far less than the rounding, but by more than
    round-off: ``3.284e-10`` and ``3.289e-10`` are the same saddle of ``x^3/3``).
    """
    if not np.isfinite(value):
        return str(value)
    return "0" if abs(value) <= 1e-8 else f"{value:.{digits}g}"


def critical_values(problem: Any) -> np.ndarray:
    """``problem.critical_values()`` as a float array (mapping values in order; empty if none)."""
    cv = _critical_values(problem)
    return np.zeros(0) if cv is None else cv[0]


def _critical_values(problem: Any) -> tuple[np.ndarray, list[str]] | None:
    f = getattr(problem, "critical_values", None)
    if not callable(f):
        return None
    vals = f()
    if isinstance(vals, dict):
        names = [str(k) for k in vals]
        arr = np.asarray(list(vals.values()), dtype=float)
    else:
        arr = np.asarray(list(vals), dtype=float).reshape(-1)
        names = ["zero loss" if v == 0 else f"layer {i}" for i, v in enumerate(arr)]
    if arr.size == 0:
        return None
    return arr, names


def identify_limits(problem: Any, X: Any, *, grad_norm: Any = None, match_tol: float = 1e-2,
                    use_classify: bool = True, use_layers: bool = False,
                    loss_tol: float | None = None, certify: bool = True,
                    listed: tuple | None = None) -> Identification:
    """Name every limit in ``X (B, d)`` (module docstring: the order of the rules).

    ``listed`` may pass the result of :func:`listed_points` (computed once by callers that
    identify many batches).  With ``certify=False`` only rules 1.-3. are used and undecided
    limits are ``"unidentified"``.
    """
    d = int(problem.dim)
    X, _ = as_batch(X, d, name="X")
    B = X.shape[0]
    label = np.array(["unidentified"] * B, dtype=object)
    kind = np.array(["unidentified"] * B, dtype=object)
    layer = np.full(B, -1, dtype=np.int64)
    via = np.array(["none"] * B, dtype=object)
    cp_index = np.full(B, -1, dtype=np.int64)
    info_index = np.full(B, -1, dtype=np.int64)
    todo = np.ones(B, dtype=bool)
    classify = getattr(problem, "classify", None)
    if use_classify and callable(classify):
        for i in range(B):
            c = classify(X[i])
            k = getattr(c, "kind", None)
            if not isinstance(k, str) or (k not in KINDS and k != "not_critical"):
                raise InputError(f"`problem.classify` must return a csm.Classification with a kind in "
                                 f"{KINDS + ('not_critical',)}, got {c!r}")
            if k != "not_critical":
                label[i], kind[i], via[i] = str(c.label), k, "classify"
                layer[i] = -1 if c.layer is None else int(c.layer)
                idx = (c.info or {}).get("index")
                info_index[i] = -1 if idx is None else int(idx)
                todo[i] = False
    cp_theta, cp_label, cp_kind, cp_layer = listed if listed is not None else listed_points(problem, d)
    cp_loss = (np.asarray(problem.loss(cp_theta), dtype=float).reshape(-1) if use_layers and len(cp_theta)
               else np.zeros(0))
    cv = _critical_values(problem) if use_layers else None
    rest = np.nonzero(todo)[0]
    if cv is not None and rest.size:
        vals, names = cv
        if loss_tol is None:
            u = np.unique(vals)
            tol = 0.1 * (np.min(np.diff(u)) if u.size > 1 else max(1.0, abs(float(u[0]))))
        else:
            tol = loss_tol
        with np.errstate(all="ignore"):
            L = np.asarray(problem.loss(X[rest]), dtype=float).reshape(-1)
        for i, li in zip(rest, L):
            if not np.isfinite(li):
                continue
            jj = int(np.argmin(np.abs(vals - li)))
            if abs(vals[jj] - li) <= tol:
                kinds = [k for k, lv in zip(cp_kind, cp_loss) if abs(lv - vals[jj]) <= tol]
                kind[i] = max(set(kinds), key=kinds.count) if kinds else "unknown"
                label[i], layer[i], via[i] = names[jj], jj, "critical_values"
                todo[i] = False
    rest = np.nonzero(todo)[0]
    if rest.size and cp_theta.shape[0]:
        j, dist = nearest(X[rest], cp_theta)
        hit = dist <= match_tol
        for i, jj in zip(rest[hit], j[hit]):
            label[i], kind[i], layer[i], via[i] = cp_label[jj], cp_kind[jj], cp_layer[jj], "critical_point"
            cp_index[i] = jj
            todo[i] = False
    cert_kind = np.array([""] * B, dtype=object)
    least = np.full(B, np.nan)
    disagree = np.zeros(B, dtype=bool)
    if certify and B:
        cert = certify_limits(problem, X, grad_norm=grad_norm)
        cert_kind[:] = cert.kind
        least[:] = cert.least_eigenvalue
        for i in np.nonzero(todo)[0]:
            k = cert.kind[i]
            kind[i], via[i] = k, "spectrum"
            label[i] = f"{k} L={loss_level(cert.loss[i])}"
        listed_saddle = np.isin(kind, SADDLE_KINDS)
        cert_saddle = np.isin(cert.kind, SADDLE_KINDS)
        decided = ~np.isin(cert.kind, UNDECIDED_KINDS) & (via != "spectrum") & ~np.isin(kind, ("unknown",))
        disagree = decided & (listed_saddle != cert_saddle)
    return Identification(label=label.astype(str), kind=kind.astype(str), layer=layer,
                          via=via.astype(str), certified_kind=cert_kind.astype(str),
                          least_eigenvalue=least, disagree=disagree, cp_index=cp_index,
                          info_index=info_index)
