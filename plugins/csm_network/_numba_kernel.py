"""Optional compiled kernels of the ``network`` plugin (ReLU-like activations, any depth).

Imported by :mod:`csm_network.engine` only when numba is importable and the environment
variable ``CSM_DISABLE_NUMBA`` is unset (or ``0``/empty); the NumPy code of ``engine`` stays the
tested reference (``plugins/csm_network/tests/test_engine_paths.py`` compares the two).

Scope: a ReLU-like activation ``sigma(z) = alpha_+ z`` for ``z > 0``, ``alpha_- z`` otherwise
(``relu``: ``(0, 1)``, ``leaky_relu:a``: ``(a, 1)``, ``linear``: ``(1, 1)``), with the engine's
convention at the kink (``sigma'(0) = alpha_-``, the left piece); other activations take the
NumPy path.  Sample weights ``WT``: one row ``(1, m)`` for all networks or one per network
``(B, m)``; the loss is ``sum_i w_i |N(x_i) - y_i|^2`` (``w_i = 1/m`` for the mean).

Every kernel runs over the batch one network at a time, with everything of a network in L1/L2
cache and the batch streamed once:

* **one hidden layer, few inputs and outputs** (``(d_0, h, k)``, ``d_0, k <= 8``): per neuron
  ``j`` one fused pass over the samples forward (``z_j = b_j + W_j x``, four input columns per
  pass, then ``f += v_j sigma(z_j)``) and one backward (``grad v_j``, ``grad b_j`` and four
  columns of ``grad W_j`` per pass); :func:`scalar_loss_grad` / :func:`scalar_hvp` for widths
  ``(1, h, 1)`` (nothing stored per neuron), ``K1_LOSS_GRAD[d_0]`` / ``K1_HVP[d_0]`` for
  one output (one kernel per input width, every column in the same pass: :mod:`csm_network._nk_k1`),
  :func:`shallow_loss_grad` / :func:`shallow_hvp` otherwise;
* **any depth** (:func:`mlp_loss_grad` / :func:`mlp_hvp`): the products of the wide layers by
  BLAS (``np.dot`` into preallocated buffers), a thin first or last layer (``<= THIN`` wide)
  by fused loops, bias + activation and ``delta sigma'`` + bias gradient as one pass each.

The Hessian-vector product is Pearlmutter's R-operator on the same passes (``sigma'' = 0`` for
a ReLU-like activation, so only ``sigma'`` enters).  Every inner loop runs over the samples
(contiguous, vectorised by LLVM); the sums over samples are vectorised too, which needs
reassociation: ``fastmath={"reassoc", "contract", "nsz"}`` (sums in another order and fused
multiply-adds: results agree with the NumPy path to rounding, about 1e-15 relative; no
approximation of functions, and inf/nan behave as in NumPy since neither ``nnan`` nor ``ninf``
is set).  A pre-activation that is exactly 0 selects ``alpha_-`` on both paths; one that
rounds to either side of 0 depending on the order of the sum may select different pieces.

Every kernel is generic in the floating dtype: float64, or float32 for float32 parameters
(data, weights and buffers in the parameters' dtype; constants and accumulators typed from it,
``dt.type(0)``, so that no float64 literal promotes a float32 loop).
"""

from __future__ import annotations

from ._nk_k1 import K1_HVP, K1_LOSS_GRAD
from ._nk_mlp import THIN, mlp_hvp, mlp_loss_grad
from ._nk_shallow import scalar_hvp, scalar_loss_grad, shallow_hvp, shallow_loss_grad

__all__ = ["scalar_loss_grad", "scalar_hvp", "K1_LOSS_GRAD", "K1_HVP", "shallow_loss_grad",
           "shallow_hvp", "mlp_loss_grad", "mlp_hvp", "THIN"]
