"""csm plugin ``network``: fully connected networks on finite data (paper §3, §3.3).

``csm.get_problem("network", widths=(d_in, h_1, ..., d_out), activation="relu", inputs=X,
targets=Y)`` (or ``data="file.npz" | "grid:m" | "teacher:m,seed" | "orthogonal:m"``) is the
empirical squared loss ``L(theta) = (1/m) sum_i |N_theta(x_i) - y_i|^2`` with exact, batched
loss, gradient (backpropagation, ``relu'(0) = 0``) and Hessian-vector products (R-operator).

Module map:

- :mod:`~csm_network.activations` -- relu, leaky_relu:a, relu^k, square, linear and user
  piecewise polynomials (validated continuous);
- :mod:`~csm_network.data` -- arrays, ``.npz`` files and the generators;
- :mod:`~csm_network.engine` -- the batched kernels (parameter order in its docstring);
- :mod:`~csm_network.problem` -- :class:`NetworkProblem`;
- :mod:`~csm_network.stationarity` -- directional stationarity and escape neurons (Wu, Simsek,
  Ged, arXiv 2402.05626, §3--§4);
- :mod:`~csm_network.regions` -- activation patterns and genuine differentiable local minima
  (Liu, arXiv 2002.04763);
- :mod:`~csm_network.embedding` -- network embedding from width ``N`` into ``N + 1``
  (arXiv 2402.05626, §5);
- :mod:`~csm_network.experiments` -- the ``csm reproduce`` experiments of issue 12
  (``network-zigzag``, ``network-escape``, ``network-genuine-minima``, ``network-embedding``).

Documentation: ``docs/plugins/network.md``.
"""

from __future__ import annotations

import csm

from .activations import Activation, parse_activation, piecewise
from .problem import NetworkProblem

__all__ = ["NetworkProblem", "Activation", "parse_activation", "piecewise", "csm_problems",
           "csm_experiments"]


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    """The ``network`` problem (paper §3)."""
    return [csm.ProblemFactory(
        "network",
        "fully connected network (any depth, relu / leaky_relu / relu^k / square / linear / "
        "piecewise polynomial), empirical squared loss on finite data (paper §3)",
        NetworkProblem,
    )]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    """The ``csm reproduce`` experiments of this plugin (see :mod:`.experiments`)."""
    from .experiments import EXPERIMENTS

    return list(EXPERIMENTS)
