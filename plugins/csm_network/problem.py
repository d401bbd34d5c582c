"""The ``network`` problem: fully connected networks on finite data (paper §3, §3.3).

``L(theta) = (1/m) sum_i |N_theta(x_i) - y_i|^2`` for a network of widths
``(d_in, h_1, ..., h_{L-1}, d_out)`` with activation ``sigma`` on the hidden layers (the output
layer is affine).  Loss, gradient and Hessian-vector products are exact and batched
(:mod:`csm_network.engine`); the landscape analyses of the neighbouring papers live in
:mod:`~csm_network.stationarity` (Wu, Simsek, Ged, arXiv 2402.05626),
:mod:`~csm_network.regions` (Liu, arXiv 2002.04763) and :mod:`~csm_network.embedding`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

import csm
import csm.params

from . import _array_api, engine
from .activations import Activation, parse_activation
from .data import resolve_data

if TYPE_CHECKING:  # the analyses import scipy.optimize: loaded on first use only
    from .embedding import Embedding
    from .regions import RegionMinimum
    from .stationarity import Stationarity

__all__ = ["NetworkProblem"]


def _widths(widths: Any) -> tuple[int, ...]:
    if isinstance(widths, np.ndarray) and widths.ndim == 1:
        widths = widths.tolist()
    ok = isinstance(widths, (tuple, list)) and len(widths) >= 2 and all(
        not isinstance(w, bool) and isinstance(w, (int, np.integer)) for w in widths)
    if not ok or min(widths) < 1:
        raise csm.ParameterError(
            f"network: parameter `widths` must be a sequence (d_in, h_1, ..., d_out) of at least "
            f"two integers >= 1, got {widths!r}")
    return tuple(int(w) for w in widths)


class NetworkProblem(csm.ProblemBase):
    """Fully connected network, empirical squared loss on finite data (paper §3).

    Parameters
    ----------
    widths : sequence of int, default (1, 3, 1)
        ``(d_in, h_1, ..., h_{L-1}, d_out)``; every entry ``>= 1``.
    activation : str or dict or Activation, default "relu"
        See :mod:`csm_network.activations`.
    inputs, targets : array_like, optional
        ``(m, d_in)`` and ``(m, d_out)`` (1-D when the width is 1).
    data : str, optional
        ``"file.npz"``, ``"grid:m"``, ``"teacher:m,seed"`` or ``"orthogonal:m"`` instead of the
        arrays (see :mod:`csm_network.data`); default ``"grid:8"`` when nothing is given.
    target : str, optional
        Target of ``data="grid:m"``: ``"affine:rho,s"`` or ``"poly:c0,c1,..."``.
    init_scale : float, default 1.0
        :meth:`sample` draws ``W_l, b_l`` entrywise ``N(0, init_scale^2 / d_{l-1})``.

    Attributes
    ----------
    inputs, targets : ndarray
        ``X (m, d_in)``, ``Y (m, d_out)``.
    min_loss : float or None
        Declared only when known: 0 for teacher data (the teacher is a global minimum), for
        constant targets, for one hidden layer of ``relu`` with ``d_in = 1``, distinct inputs
        and ``h_1 >= m - 1`` (interpolation), and for affine data with a ReLU-like activation
        and hidden widths ``>= min(d_in, d_out)``; the affine least-squares residual for
        ``linear`` activation with such widths.

    Conventions
    -----------
    ``theta`` order: ``(W_1 row-major, b_1, ..., W_L, b_L)`` (:meth:`pack`).  Gradient:
    backpropagation with ``sigma'`` at a breakpoint taken from the left piece (``relu'(0) = 0``).
    :meth:`hvp` / :meth:`hessian`: exact Hessian of the polynomial piece of ``L`` that this
    convention selects (the true Hessian wherever no pre-activation sits on a breakpoint).

    Precision: float64 throughout, except that a float32 NumPy ``theta`` is computed in
    float32 by :meth:`loss`, :meth:`gradient`, :meth:`loss_and_gradient` and :meth:`hvp` (data
    and sample weights rounded to float32, results float32; sums in float32, so about 1e-6
    relative) -- the precision of a float32 PyTorch training loop, for batched GD at twice
    the SIMD width.  :meth:`hessian` and the analyses (:meth:`stationarity`, regions, critical
    points) are float64 always.

    Examples
    --------
    >>> import csm
    >>> p = csm.get_problem("network", widths=(1, 3, 1), data="grid:5")
    >>> p.dim, p.inputs.shape
    (10, (5, 1))
    """

    finite_only = True  # NaN or infinite theta: a NonFiniteError naming the row
    float32 = True  # float32 theta computed in float32 (see "Precision")

    def __init__(self, widths: Sequence[int] = (1, 3, 1), activation: Any = "relu",
                 inputs: Any = None, targets: Any = None, data: Any = None, target: Any = None,
                 init_scale: float = 1.0) -> None:
        self.widths = _widths(widths)
        self.activation: Activation = parse_activation(activation)
        self.init_scale = csm.params.positive(init_scale, "init_scale", owner="network")
        self._lay = engine.Layout(self.widths)
        if data is None and inputs is None and targets is None:
            data = "grid:8" if self.widths[0] == 1 and self.widths[-1] == 1 else None
        spec = resolve_data(self.widths, inputs, targets, data, target, self._forward_layers)
        self.inputs, self.targets, self.data_source = spec.X, spec.Y, spec.source
        self._XT = np.ascontiguousarray(spec.X.T)
        self._YT = np.ascontiguousarray(spec.Y.T)[None]
        self.teacher = None if spec.teacher_layers is None else self.pack(spec.teacher_layers)
        self.name = "network"
        self.dim = self._lay.dim
        self.m = spec.X.shape[0]
        self.min_loss = self._known_min_loss()
        self._critical: list[csm.CriticalPoint] | None = None
        self._xp_kernels: _array_api.XpKernels | None = None

    def _forward_layers(self, layers: list, X: np.ndarray) -> np.ndarray:
        T = engine.Layout(self.widths).pack(layers)[None]
        return engine.forward(self._lay, self.activation, T, np.ascontiguousarray(X.T))[0].T

    def __repr__(self) -> str:
        return (f"<NetworkProblem widths={self.widths} activation={self.activation.name} "
                f"data={self.data_source}>")

    # ------------------------------------------------------------------ structure
    @property
    def n_hidden_layers(self) -> int:
        return len(self.widths) - 2

    @property
    def shallow(self) -> bool:
        """One hidden layer (the setting of the stationarity and region analyses)."""
        return len(self.widths) == 3

    def pack(self, layers: Sequence[tuple[Any, Any]]) -> np.ndarray:
        """``theta (d,)`` from ``[(W_1, b_1), ..., (W_L, b_L)]`` (``W_l``: ``(d_l, d_{l-1})``)."""
        if len(layers) != self._lay.n_layers:
            raise csm.InputError(f"`layers` must hold {self._lay.n_layers} (W, b) pairs, got "
                                 f"{len(layers)}")
        for l, ((W, b), (_, _, shp)) in enumerate(zip(layers, self._lay.slices)):
            if np.shape(W) != shp or np.shape(b) != (shp[0],):
                raise csm.ShapeError(f"`layers[{l}]` must be (W {shp}, b ({shp[0]},)), got shapes "
                                     f"{np.shape(W)} and {np.shape(b)}")
        return self._lay.pack(layers)

    def unpack(self, theta: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_1, b_1), ..., (W_L, b_L)]`` from ``theta (d,)`` (copies)."""
        return self._lay.unpack(self._point(theta))

    def with_width(self, hidden: int) -> "NetworkProblem":
        """The same data and activation with one hidden layer of ``hidden`` neurons."""
        if not self.shallow:
            raise csm.InputError("`with_width` needs a network with one hidden layer, widths are "
                                 f"{self.widths}")
        wide = NetworkProblem((self.widths[0], int(hidden), self.widths[-1]), self.activation,
                              inputs=self.inputs, targets=self.targets,
                              init_scale=self.init_scale)
        if wide.min_loss is None and self.min_loss == 0.0 and hidden >= self.widths[1]:
            wide.min_loss = 0.0  # a zero neuron embeds the narrower network's global minimum
        return wide

    # ------------------------------------------------------------------ validation

    def _point(self, theta: Any) -> np.ndarray:
        X, single = self._batch(theta)
        if not single:
            raise csm.ShapeError(f"`theta` must be one point of shape ({self.dim},), got a batch "
                                 f"of shape {X.shape}")
        return X[0]

    # ------------------------------------------------------------------ kernels
    @property
    def n_samples(self) -> int:
        """``m``, the number of data points (the length of a ``sample_weights`` vector)."""
        return self.m

    def _weights(self, sample_weights: Any, B: int) -> np.ndarray | None:
        """``None`` or validated float64 weights ``(1, m)`` / ``(B, m)``."""
        if sample_weights is None:
            return None
        return csm.stochastic.sample_weights(sample_weights, B, self.m)

    def _loss(self, X: np.ndarray) -> np.ndarray:
        return engine.loss(self._lay, self.activation, X, self._XT, self._YT)

    def _gradient(self, X: np.ndarray) -> np.ndarray:
        return engine.loss_and_gradient(self._lay, self.activation, X, self._XT, self._YT)[1]

    def _hessian(self, X: np.ndarray) -> np.ndarray:
        d = self.dim
        Xr = np.repeat(X, d, axis=0)
        E = np.tile(np.eye(d), (X.shape[0], 1))
        H = engine.hvp(self._lay, self.activation, Xr, E, self._XT, self._YT).reshape(-1, d, d)
        return 0.5 * (H + np.swapaxes(H, 1, 2))

    # ------------------------------------------------------------------ array-API inputs
    def _namespace(self, *arrays: Any) -> Any:
        """The array-API namespace of non-NumPy inputs (torch, CuPy, ...), else None."""
        return csm.backends.array_namespace(*arrays, names=("theta", "v", "sample_weights"),
                                            allow_numpy=True)

    def _xp_batch(self, xp: Any, theta: Any, name: str = "theta") -> tuple[Any, bool]:
        """``(X (B, d), single)`` of an array-API array, validated as :meth:`_batch` does."""
        return csm.backends.xp_batch(xp, theta, self.dim, name)

    def _xp_weights(self, xp: Any, w: Any, B: int, like: Any) -> Any:
        """Sample weights for an array-API batch: validated as :meth:`_weights`, ``(1|B, m)`` in
        ``like``'s namespace, dtype and device."""
        if w is None:
            return None
        if csm.backends.array_namespace(w) is None:  # NumPy, scalars, sequences
            w = self._weights(w, B)
            return xp.asarray(w, dtype=like.dtype, device=csm.backends.device(like))
        m = self.m
        shape = tuple(w.shape)
        if len(shape) == 1 and shape[0] == m:
            w = xp.reshape(w, (1, m))
        elif not (len(shape) == 2 and shape[1] == m and shape[0] in (1, B)):
            raise csm.ShapeError(
                f"`sample_weights` must have shape (m,) = ({m},) or (B, m) = ({B}, {m}) (one "
                f"weight vector per point of the batch), got shape {shape}")
        w = xp.astype(w, like.dtype)
        if not bool(xp.all(xp.isfinite(w))):
            raise csm.NonFiniteError("`sample_weights` contains NaN or infinity")
        if bool(xp.any(w < 0)):
            raise csm.InputError("`sample_weights` must be non-negative")
        return w

    def _xp(self) -> _array_api.XpKernels:
        if self._xp_kernels is None:
            self._xp_kernels = _array_api.XpKernels(self._lay, self.activation, self.inputs,
                                                    self.targets)
        return self._xp_kernels

    # ------------------------------------------------------------------ public kernels
    def loss(self, theta: Any, sample_weights: Any = None) -> Any:
        """``L(theta) = (1/m) sum_i |N_theta(x_i) - y_i|^2``; with ``sample_weights`` ``w``
        (``(m,)``, or ``(B, m)``: one vector per network) ``sum_i w_i |N_theta(x_i) - y_i|^2``.

        A float for ``theta (d,)``, ``(B,)`` for a batch.  A non-NumPy array-API array (a torch
        tensor on any device, CuPy, ...; needs ``array-api-compat``) is computed in its
        namespace, device and dtype and gives an array of the same kind (0-d for one network).
        """
        xp = self._namespace(theta, sample_weights)
        if xp is not None:
            X, single = self._xp_batch(xp, theta)
            L = self._xp().loss(xp, X, self._xp_weights(xp, sample_weights, X.shape[0], X))
            return L[0] if single else L
        if sample_weights is None:
            return super().loss(theta)
        X, single = self._batch(theta, keep_float32=True)
        L = engine.loss(self._lay, self.activation, X, self._XT, self._YT,
                        self._weights(sample_weights, X.shape[0]))
        return float(L[0]) if single else L

    def gradient(self, theta: Any) -> Any:
        """Gradient (backpropagation, ``sigma'`` from the left piece at a kink): ``(d,)`` or
        ``(B, d)``; array-API inputs as in :meth:`loss`."""
        xp = self._namespace(theta)
        if xp is None:
            return super().gradient(theta)
        X, single = self._xp_batch(xp, theta)
        G = self._xp().loss_and_gradient(xp, X)[1]
        return G[0, ...] if single else G

    def loss_and_gradient(self, theta: Any, sample_weights: Any = None) -> tuple[Any, Any]:
        """Loss and gradient in one pass (what a gradient-descent step needs).

        ``sample_weights``: ``None`` (the mean over the ``m`` data points), or non-negative
        weights ``w`` of shape ``(m,)`` (all networks) or ``(B, m)`` (row ``b`` for network
        ``b`` of the batch): then ``L_b = sum_i w_bi |N_b(x_i) - y_i|^2`` and its gradient --
        a minibatch ``I`` of size ``s`` is ``w = 1_I / s``.  Computed in the same batched pass.
        Array-API inputs (torch, CuPy, ...) as in :meth:`loss`: both results of the input's
        kind, on its device.
        """
        xp = self._namespace(theta, sample_weights)
        if xp is not None:
            X, single = self._xp_batch(xp, theta)
            L, G = self._xp().loss_and_gradient(
                xp, X, self._xp_weights(xp, sample_weights, X.shape[0], X))
            return (L[0], G[0, ...]) if single else (L, G)
        X, single = self._batch(theta, keep_float32=True)
        L, G = engine.loss_and_gradient(self._lay, self.activation, X, self._XT, self._YT,
                                        self._weights(sample_weights, X.shape[0]))
        return (float(L[0]), G[0]) if single else (L, G)

    def hvp(self, theta: Any, v: Any, sample_weights: Any = None) -> Any:
        """Rowwise ``H(theta_b) v_b`` by the R-operator; ``(d,)`` or ``(B, d)`` each (a single one
        is broadcast).  Cost about two to three gradients.  ``sample_weights`` as in
        :meth:`loss_and_gradient` (the Hessian of the weighted loss); array-API inputs (both
        of one kind) as in :meth:`loss`."""
        xp = self._namespace(theta, v, sample_weights)
        if xp is not None:
            X, Vv, single = csm.backends.xp_pair(xp, theta, v, self.dim)
            out = self._xp().hvp(xp, X, Vv, self._xp_weights(xp, sample_weights, X.shape[0], X))
            return out[0, ...] if single else out
        X, V, single = self._pair(theta, v, keep_float32=True)
        if not np.all(np.isfinite(X)) or not np.all(np.isfinite(V)):
            raise csm.NonFiniteError("`theta` or `v` contains NaN or infinity")
        out = engine.hvp(self._lay, self.activation, X, V, self._XT, self._YT,
                         self._weights(sample_weights, X.shape[0]))
        return out[0] if single else out

    def realization(self, theta: Any, x: Any) -> np.ndarray:
        """``N_theta(x)`` for inputs ``x (n, d_in)``: ``(n, d_out)``, or ``(B, n, d_out)``."""
        X, single = self._batch(theta)
        xx = np.asarray(x, dtype=float)
        if xx.ndim == 1 and self.widths[0] == 1:
            xx = xx[:, None]
        if xx.ndim != 2 or xx.shape[1] != self.widths[0]:
            raise csm.ShapeError(f"`x` must have shape (n, {self.widths[0]}), got {xx.shape}")
        F = engine.forward(self._lay, self.activation, X, np.ascontiguousarray(xx.T))
        F = F.transpose(0, 2, 1)
        return F[0] if single else F

    # ------------------------------------------------------------------ facts
    def _known_min_loss(self) -> float | None:
        Y = self.targets
        if self.teacher is not None or np.ptp(Y, axis=0).max() == 0.0:
            return 0.0
        a = self.activation
        hid = self.widths[1:-1]
        if (a.kind == "relu" and self.shallow and self.widths[0] == 1
                and np.unique(self.inputs[:, 0]).size == self.m and hid[0] >= self.m - 1):
            return 0.0  # piecewise-linear interpolation through the sorted data
        if (a.relu_like is None or a.relu_like[1] == 0.0
                or min(hid) < min(self.widths[0], self.widths[-1])):
            return None
        A = np.hstack([self.inputs, np.ones((self.m, 1))])
        R = Y - A @ np.linalg.lstsq(A, Y, rcond=None)[0]
        aff = float(np.sum(R * R) / self.m)
        if a.kind == "linear":
            return aff  # the network is an affine map of full enough rank: least squares
        # every neuron in its linear regime (large biases) realises any affine map
        return 0.0 if aff <= 1e-28 * max(1.0, float(np.sum(Y * Y))) else None

    def critical_points(self) -> list[csm.CriticalPoint]:
        """Known critical points (computed once).

        * ``"teacher"`` (teacher data): global minimum, loss 0;
        * one hidden layer, ReLU-like activation: ``"zero-neurons"`` (all hidden weights and
          output weights 0, output bias = mean target) and, for ``relu``, ``"all-dead"``
          (``W_1 = 0``, ``b_1 = -1``: every neuron strictly inactive; output weights 0, output
          bias = mean target), with the kind decided by :meth:`stationarity` (listed only when
          decided).
        """
        if self._critical is None:
            self._critical = self._find_critical()
        return list(self._critical)

    def _find_critical(self) -> list[csm.CriticalPoint]:
        out = []
        if self.teacher is not None:
            out.append(csm.CriticalPoint(self.teacher, "global_minimum", float(self.loss(self.teacher)),
                                         "teacher", {"source": self.data_source}))
        rl = self.activation.relu_like
        if not (self.shallow and rl is not None):
            return out
        from .stationarity import special_points

        for label, theta in special_points(self).items():
            rep = self.stationarity(theta)
            L = float(self.loss(theta))
            if not rep.stationary or rep.local_minimum is None:
                continue
            if self.min_loss is not None and L <= self.min_loss + 1e-12:
                kind = "global_minimum"
            else:
                kind = "local_minimum" if rep.local_minimum else "saddle"
            out.append(csm.CriticalPoint(theta, kind, L, label, {
                "escape_neurons": [e.index for e in rep.escape_neurons],
                "reference": "Wu, Simsek, Ged, arXiv 2402.05626"}))
        return out

    # ------------------------------------------------------------------ landscape analyses
    def stationarity(self, theta: Any, *, tol: float = 1e-9) -> "Stationarity":
        """Directional stationarity and escape neurons (Wu, Simsek, Ged, arXiv 2402.05626).

        See :func:`csm_network.stationarity.stationarity`."""
        from .stationarity import stationarity

        return stationarity(self, self._point(theta), tol=tol)

    def activation_pattern(self, theta: Any, *, tol: float = 0.0) -> np.ndarray:
        """Signs of the pre-activations (Liu, arXiv 2002.04763): ``(N, m)`` int8 for one network,
        ``(B, N, m)`` for a batch; ``+1`` active (``z > tol``), ``-1`` inactive, ``0`` on the kink."""
        from .regions import activation_pattern

        X, single = self._batch(theta)
        P = activation_pattern(self, X, tol=tol)
        return P[0] if single else P

    def region_minimum(self, pattern: Any, *, tol: float = 1e-9) -> "RegionMinimum":
        """Least-squares minimum of the differentiable region ``pattern`` (Liu, arXiv 2002.04763).

        See :func:`csm_network.regions.region_minimum`."""
        from .regions import region_minimum

        return region_minimum(self, pattern, tol=tol)

    def differentiable_local_minima(self, *, tol: float = 1e-9, max_combinations: int = 20000
                                    ) -> "list[RegionMinimum]":
        """All genuine differentiable local minima (Liu, arXiv 2002.04763); small data only.

        See :func:`csm_network.regions.differentiable_local_minima`."""
        from .regions import differentiable_local_minima

        return differentiable_local_minima(self, tol=tol, max_combinations=max_combinations)

    def embed(self, theta: Any, kind: str = "zero", **kw: Any) -> "Embedding":
        """Embed into width ``N + 1`` and compare types (arXiv 2402.05626, §5).

        See :func:`csm_network.embedding.embed`."""
        from .embedding import embed

        return embed(self, theta, kind, **kw)

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: Any, n: int) -> np.ndarray:
        """``n`` networks, ``W_l, b_l`` entrywise ``N(0, init_scale^2 / d_{l-1})`` (absolutely
        continuous).  ``rng``: a numpy Generator or an int seed."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise csm.InputError(f"`n` must be an integer >= 0, got {n!r}")
        scale = np.empty(self.dim)
        for (sw, sb, shp) in self._lay.slices:
            scale[sw] = scale[sb] = self.init_scale / np.sqrt(shp[1])
        return rng.standard_normal((int(n), self.dim)) * scale
