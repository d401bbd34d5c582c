"""The paper's bias-free network on the plugin, its closed forms and its gradient-descent runs
(docs/theory.md §1.11; overview in :mod:`csm_network.orthogonal`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

import csm

REF = ("Boursier, Pillaud-Vivien, Flammarion, Gradient flow dynamics of shallow ReLU networks for "
       "square loss and orthogonal inputs, NeurIPS 2022, arXiv 2206.00939")


# ------------------------------------------------------------------ data and the model
def simplex_inputs(n: int, dim: int | None = None, seed: int = 0) -> np.ndarray:
    """``n`` inputs ``x_k`` in ``R^dim`` (``dim >= n - 1``, default ``n - 1``) with ``(x_k, 1)``
    pairwise orthogonal: ``<x_k, x_l> = -1``, ``|x_k|^2 = n - 1`` (a regular simplex centred at 0,
    randomly rotated), so ``|x~_k|^2 = n``.

    Construction: an orthogonal ``n x n`` matrix ``H`` whose first column is ``1/sqrt(n)``, its
    other columns mapped into ``R^dim`` by a matrix with orthonormal columns;
    ``x~_k = sqrt(n) h_k``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise csm.InputError(f"`n` must be an integer >= 2, got {n!r}")
    dim = n - 1 if dim is None else dim
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < n - 1:
        raise csm.InputError(f"`dim` must be an integer >= n - 1 = {n - 1}, got {dim!r}")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A[:, 0] = 1.0
    H, R = np.linalg.qr(A)
    H = H * np.sign(np.diag(R))  # first column +1/sqrt(n)
    M, _ = np.linalg.qr(rng.standard_normal((dim, n - 1)))  # orthonormal columns
    return math.sqrt(n) * H[:, 1:] @ M.T


class BiasFreeNetwork(csm.ProblemBase):
    """The paper's network ``h(x) = sum_j a_j relu(w~_j . x~)`` as the plugin's problem with its
    output bias (and, with ``hidden_bias=False``, its hidden biases) frozen at 0 (module docstring).

    Parameters
    ----------
    problem : NetworkProblem
        One hidden ``relu`` layer, one output (``csm.get_problem("network", widths=(d, N, 1),
        activation="relu", inputs=X, targets=y)``).
    hidden_bias : bool
        True: the plugin's ``b_1`` is trained and plays the constant input coordinate,
        ``x~ = (x, 1)``; False: ``b_1`` is frozen at 0 and ``x~ = x``.

    Coordinates: the plugin's ``theta`` without the frozen entries, in the plugin's order
    (``W_1`` row-major, [``b_1``], ``W_2``).  :meth:`embed` / :meth:`restrict` convert;
    :meth:`neurons` / :meth:`from_neurons` give ``(W~ (N, D), a (N,))``.
    """

    def __init__(self, problem: Any, hidden_bias: bool = True) -> None:
        widths = tuple(getattr(problem, "widths", ()))
        act = getattr(getattr(problem, "activation", None), "kind", None)
        if len(widths) != 3 or widths[2] != 1 or act != "relu":
            raise csm.InputError(
                "BiasFreeNetwork needs the network plugin's problem with one hidden relu layer and "
                f"one output, got widths={widths} and activation={act!r}")
        self.net = problem
        self.hidden_bias = bool(hidden_bias)
        d, N, _ = widths
        self.N, self.d = N, d
        mask = problem.pack([(np.zeros((N, d)), np.full(N, 0.0 if hidden_bias else 1.0)),
                             (np.zeros((1, N)), np.ones(1))])
        self.free = np.nonzero(mask == 0.0)[0]
        self.dim = int(self.free.size)
        X = problem.inputs
        self.inputs_aug = np.hstack([X, np.ones((X.shape[0], 1))]) if hidden_bias else X.copy()
        self.labels = problem.targets[:, 0].copy()
        self.n = X.shape[0]
        self.name = "network-bias-free"
        self.min_loss = 0.0
        G = self.inputs_aug @ self.inputs_aug.T
        off = np.abs(G - np.diag(np.diag(G))).max() if self.n > 1 else 0.0
        #: largest |<x~_k, x~_l>| / (|x~_k| |x~_l|) over k != l: the orthogonality the results need
        self.orthogonality_defect = float(off / np.diag(G).max())

    def __repr__(self) -> str:
        return (f"<BiasFreeNetwork N={self.N} n={self.n} hidden_bias={self.hidden_bias} "
                f"(output bias frozen at 0) of {self.net!r}>")

    # -------------------------------------------------------------- coordinates
    def embed(self, theta: Any) -> np.ndarray:
        """The plugin's ``theta`` (frozen entries 0) from the model's coordinates (``(d,)`` or
        ``(B, d)``)."""
        T = np.asarray(theta, dtype=float)
        out = np.zeros(T.shape[:-1] + (self.net.dim,))
        out[..., self.free] = T
        return out

    def restrict(self, theta: Any) -> np.ndarray:
        """The model's coordinates of a plugin ``theta`` (its frozen entries must be 0)."""
        T = np.asarray(theta, dtype=float)
        frozen = np.setdiff1d(np.arange(self.net.dim), self.free)
        if np.any(T[..., frozen] != 0.0):
            raise csm.InputError("`theta` has a non-zero output bias (or hidden bias with "
                                 "hidden_bias=False): not a point of the bias-free network")
        return T[..., self.free].copy()

    def neurons(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(W~ (N, D), a (N,))`` of one point: rows ``w~_j`` (with ``b_j`` last when
        ``hidden_bias``) and output weights."""
        (W1, b1), (W2, _) = self.net.unpack(self.embed(np.asarray(theta, dtype=float)))
        Wt = np.hstack([W1, b1[:, None]]) if self.hidden_bias else W1
        return Wt, W2[0].copy()

    def from_neurons(self, Wt: Any, a: Any) -> np.ndarray:
        """The model's coordinates of ``(W~ (N, D), a (N,))``."""
        Wt, a = np.asarray(Wt, dtype=float), np.asarray(a, dtype=float)
        W1, b1 = (Wt[:, :-1], Wt[:, -1]) if self.hidden_bias else (Wt, np.zeros(self.N))
        return self.net.pack([(W1, b1), (a[None, :], np.zeros(1))])[self.free]

    # -------------------------------------------------------------- the problem
    def _loss(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.net.loss(self.embed(X)), dtype=float).reshape(-1)

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.net.gradient(self.embed(X)), dtype=float)[:, self.free]

    def realization(self, theta: Any, x: Any) -> np.ndarray:
        """``h(x)`` for plugin inputs ``x (k, d)``: ``(k,)``."""
        return np.asarray(self.net.realization(self.embed(theta), x), dtype=float)[:, 0]

    def sample(self, rng: Any, n: int) -> np.ndarray:
        """The paper's balanced initialisation (scale 1): ``w~_j ~ N(0, I_D / D)``,
        ``a_j = s_j |w~_j|``, ``s_j = +-1`` with probability 1/2."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        D = self.inputs_aug.shape[1]
        out = np.empty((int(n), self.dim))
        for i in range(int(n)):
            Wt = rng.standard_normal((self.N, D)) / math.sqrt(D)
            s = np.where(rng.random(self.N) < 0.5, -1.0, 1.0)
            out[i] = self.from_neurons(Wt, s * np.linalg.norm(Wt, axis=1))
        return out


def orthogonal_model(labels: Sequence[float], width: int, *, hidden_bias: bool = True,
                     dim: int | None = None, norms: Sequence[float] | None = None,
                     seed: int = 0) -> BiasFreeNetwork:
    """The paper's setting on the plugin: ``csm.get_problem("network", widths=(d, width, 1),
    activation="relu", inputs=X, targets=labels)`` wrapped in :class:`BiasFreeNetwork`.

    ``hidden_bias=True``: ``X = simplex_inputs(n, dim, seed)`` (``(x_k, 1)`` orthogonal, norms
    ``sqrt(n)``; ``norms`` not accepted).  ``hidden_bias=False``: the rows of the plugin's
    ``data="orthogonal:n,seed"`` generator (orthonormal, ``d = dim``, default ``n``) scaled by
    ``norms`` (default 1).
    """
    y = np.asarray(labels, dtype=float).reshape(-1)
    n = y.size
    if (n < 2 or not np.all(np.isfinite(y)) or np.any(y == 0)
            or not (np.any(y > 0) and np.any(y < 0))):
        raise csm.InputError(f"`labels` must be at least two finite non-zero numbers of both signs "
                             f"(the paper's setting), got {labels!r}")
    if hidden_bias:
        if norms is not None:
            raise csm.InputError("`norms` is only used with hidden_bias=False (the simplex inputs "
                                 "have |x~_k|^2 = n)")
        X = simplex_inputs(n, dim, seed)
    else:
        d = n if dim is None else dim
        base = csm.get_problem("network", widths=(d, 1, 1), data=f"orthogonal:{n},{seed}")
        s = np.ones(n) if norms is None else np.asarray(norms, dtype=float).reshape(-1)
        if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise csm.InputError(f"`norms` must be {n} positive numbers, got {norms!r}")
        X = base.inputs * s[:, None]
    q = csm.get_problem("network", widths=(X.shape[1], int(width), 1), activation="relu",
                        inputs=X, targets=y)
    return BiasFreeNetwork(q, hidden_bias=hidden_bias)


# ------------------------------------------------------------------ closed forms
@dataclass(frozen=True)
class MinNorm:
    """The minimum-norm interpolator ``f*(x~) = relu(u_plus . x~) - relu(u_minus . x~)`` and its
    variation norm ``norm = |u_plus| + |u_minus|`` (also the least ``(1/2)|theta|^2``)."""

    u_plus: np.ndarray
    u_minus: np.ndarray
    norm: float

    def __call__(self, Xt: Any) -> np.ndarray:
        Xt = np.asarray(Xt, dtype=float)
        return np.maximum(Xt @ self.u_plus, 0.0) - np.maximum(Xt @ self.u_minus, 0.0)


def min_norm_interpolator(model: BiasFreeNetwork) -> MinNorm:
    """``u+- = sum_{+-y_k > 0} |y_k| x~_k / |x~_k|^2`` (docs/theory.md §1.11).

    Why (orthogonal ``x~_k``, ``e_k = x~_k / |x~_k|``): neuron ``j`` adds ``s_j (v_j . x~_k)_+`` to
    datum ``k``, ``v_j = |a_j| w~_j``, ``s_j = sign a_j``, and ``|a_j| |w~_j| = |v_j| >= |p_j|``,
    ``p_j = ((v_j . e_k)_+)_k`` in ``R^n_+``.  Interpolation forces ``sum_{s_j > 0} p_jk >=
    y_k / |x~_k|`` on the positive data (the negative neurons only subtract), so by the triangle
    inequality ``sum_{s_j > 0} |v_j| >= |(y_k / |x~_k|)_{y_k > 0}| = |u+|``, and likewise ``|u-|``.
    Equality needs every ``v_j`` in the span with ``v_j . x~_k >= 0``, the ``p_j`` of a sign
    parallel and no cancellation: ``v_j = c_j u+-`` with ``sum c_j = 1``, so the minimiser's
    *function* is unique.  ``(1/2)|theta|^2 >= sum_j |a_j| |w~_j|`` with equality when balanced.
    """
    Xt, y = model.inputs_aug, model.labels
    w = np.abs(y) / np.sum(Xt * Xt, axis=1)
    up = (w * (y > 0)) @ Xt
    um = (w * (y < 0)) @ Xt
    return MinNorm(up, um, float(np.linalg.norm(up) + np.linalg.norm(um)))


def growing_sets(model: BiasFreeNetwork, theta0: Any) -> np.ndarray:
    """``(N, n)`` bool: ``A_j = {k : s_j y_k > 0, w~_j(0) . x~_k > 0}``, the data neuron ``j`` can
    grow on from ``theta0`` (signs ``s_j = sign a_j(0)``)."""
    Wt, a = model.neurons(theta0)
    Z = Wt @ model.inputs_aug.T
    return (Z > 0) & (np.sign(a)[:, None] * model.labels[None, :] > 0)


def growth_rates(model: BiasFreeNetwork, sets: np.ndarray) -> np.ndarray:
    """``r = (2/n) sqrt(sum_{k in A} y_k^2 |x~_k|^2)`` for each row of ``sets`` (``(B, n)`` bool):
    a neuron with growing set ``A`` grows by ``1 + gamma r`` per gradient step near 0."""
    c2 = model.labels**2 * np.sum(model.inputs_aug**2, axis=1)
    return 2.0 / model.n * np.sqrt(np.asarray(sets, dtype=float) @ c2)


def paper_condition(model: BiasFreeNetwork, theta0: Any) -> dict[str, int]:
    """Neurons whose growing set is their whole class, per class (``{"positive": .., "negative":
    ..}``): the paper's condition asks at least one in each."""
    A = growing_sets(model, theta0)
    _, a = model.neurons(theta0)
    P, Nn = model.labels > 0, model.labels < 0
    return {"positive": int(np.sum((a > 0) & np.all(A[:, P], axis=1))),
            "negative": int(np.sum((a < 0) & np.all(A[:, Nn], axis=1)))}


def violate_condition(model: BiasFreeNetwork, theta0: Any, datum: int, *, which: str = "full"
                      ) -> tuple[np.ndarray, int]:
    """``theta0`` with neurons of the sign of ``y_datum`` reflected across ``x~_datum``
    (``w~ -> w~ - 2 (w~ . x~)/|x~|^2 x~``: only the sign of the pre-activation on ``datum``
    flips, so ``datum`` leaves their growing sets).

    ``which="full"``: the neurons whose growing set is their whole class -- afterwards no neuron
    covers the class and the paper's condition fails (the class is fitted by neurons of
    different growing sets: another plateau, a limit that is not of minimal norm);
    ``which="all"``: every such neuron active on ``datum`` -- no neuron can grow on it and
    gradient descent stops at loss ``y_datum^2 / n`` or above.  Returns the point and the number
    of neurons reflected."""
    if which not in ("full", "all"):
        raise csm.InputError(f"`which` must be 'full' or 'all', got {which!r}")
    Wt, a = model.neurons(theta0)
    A = growing_sets(model, theta0)
    y = model.labels
    cls = (y > 0) if y[datum] > 0 else (y < 0)
    pick = (np.sign(a) == np.sign(y[datum])) & A[:, datum]
    if which == "full":
        pick &= np.all(A[:, cls], axis=1)
    x = model.inputs_aug[datum]
    Wt = Wt.copy()
    Wt[pick] -= 2.0 * np.outer(Wt[pick] @ x, x) / (x @ x)
    return model.from_neurons(Wt, a), int(pick.sum())


@dataclass(frozen=True)
class Prediction:
    """The paper's picture for one initialisation and step (plugin loss, gradient descent).

    ``levels`` ``(L0, L1)``; ``first`` the class fitted first ("positive"/"negative");
    ``rate`` per class (full growing set); ``exit_slope`` per level: steps per e-fold of
    ``1/sigma`` until the plateau ends, ``1/log(1 + gamma r_class)``; ``length_slope[L1]`` =
    ``exit_slope[L1] - exit_slope[L0]``; ``kappa`` (gradient descent) and ``kappa_flow``
    (gradient flow, ``log(1 + gamma r) -> gamma r``) the exponent of ``V/V* - 1 ~ sigma^kappa``
    (inf when no sub-maximal growing set is present); ``neuron_rates`` ``r_j`` (0: does not
    grow); ``sets`` the growing sets.
    """

    step: float
    levels: tuple
    first: str
    rate: dict
    exit_slope: dict
    length_slope: dict
    kappa: float
    kappa_flow: float
    neuron_rates: np.ndarray
    sets: np.ndarray
    limit: MinNorm = field(repr=False, default=None)


def predict(model: BiasFreeNetwork, theta0: Any, step: float) -> Prediction:
    """:class:`Prediction` from the closed forms (module docstring)."""
    y = model.labels
    P, Nn = y > 0, y < 0
    rate = {"positive": float(growth_rates(model, P[None])[0]),
            "negative": float(growth_rates(model, Nn[None])[0])}
    if abs(rate["positive"] - rate["negative"]) <= 1e-9 * max(rate.values()):
        raise csm.InputError("the two classes grow at the same rate: the paper's two plateaus "
                             "merge (choose labels with sum_+ y^2 |x~|^2 != sum_- y^2 |x~|^2)")
    first = max(rate, key=rate.get)
    slow = "negative" if first == "positive" else "positive"
    L0 = float(np.mean(y * y))
    L1 = float(np.sum(y[Nn if slow == "negative" else P] ** 2) / model.n)
    lam = {k: math.log1p(step * r) for k, r in rate.items()}
    exit_slope = {L0: 1.0 / lam[first], L1: 1.0 / lam[slow]}
    sets = growing_sets(model, theta0)
    rj = growth_rates(model, sets)
    _, a = model.neurons(theta0)
    kap, kap_f = math.inf, math.inf
    for cls, mask in (("positive", P), ("negative", Nn)):
        mine = (np.sign(a) == (1.0 if cls == "positive" else -1.0)) & sets.any(axis=1)
        sub = mine & ~np.all(sets[:, mask], axis=1)
        if sub.any():
            r_sub = float(rj[sub].max())
            kap = min(kap, 2.0 * (1.0 - math.log1p(step * r_sub) / lam[cls]))
            kap_f = min(kap_f, 2.0 * (1.0 - r_sub / rate[cls]))
    return Prediction(float(step), (L0, L1), first, rate, exit_slope,
                      {L1: exit_slope[L1] - exit_slope[L0]}, kap, kap_f, rj, sets,
                      min_norm_interpolator(model))


def variation_norm(model: BiasFreeNetwork, theta: Any) -> float:
    """``sum_j |a_j| |w~_j|`` (the paper's variation norm of the realised network's parameters)."""
    Wt, a = model.neurons(theta)
    return float(np.sum(np.abs(a) * np.linalg.norm(Wt, axis=1)))


def forward(model: BiasFreeNetwork, theta: Any, Xt: Any | None = None) -> np.ndarray:
    """``sum_j a_j relu(w~_j . x~)`` by a plain NumPy pass (independent of the plugin's engine),
    on the training inputs by default."""
    Wt, a = model.neurons(theta)
    Xt = model.inputs_aug if Xt is None else np.asarray(Xt, dtype=float)
    return np.maximum(Xt @ Wt.T, 0.0) @ a


# ------------------------------------------------------------------ dynamics
def gd_map(model: BiasFreeNetwork, step: float):
    """The batched gradient-descent map ``v -> v - gamma grad L_model(v)``."""
    def g(Y: np.ndarray) -> np.ndarray:
        return Y - step * np.asarray(model.gradient(Y), dtype=float)
    return g


def run(model: BiasFreeNetwork, theta0: Any, sigmas: Sequence[float], step: float,
        n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradient descent from ``sigma theta0`` for each ``sigma`` (:func:`csm.orbits.trajectories`):
    ``(T (R, n_steps + 1, d), losses (R, n_steps + 1))``."""
    from csm.orbits import trajectories

    sig = np.asarray(sigmas, dtype=float)
    T = trajectories(gd_map(model, step), sig[:, None] * np.asarray(theta0, dtype=float)[None],
                     n_steps)
    L = np.asarray(model.loss(T.reshape(-1, model.dim)), dtype=float).reshape(T.shape[:2])
    return T, L
