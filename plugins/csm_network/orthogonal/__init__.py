"""Orthogonal inputs from small initialisation (Boursier, Pillaud-Vivien, Flammarion, NeurIPS 2022,
arXiv 2206.00939) on the ``network`` plugin; the ``csm reproduce`` experiment
``network-orthogonal`` (issue 13 (d); docs/plugins/network.md, "Orthogonal inputs").

**The paper's setting.** One hidden ReLU layer *without biases*, ``h(x) = sum_j a_j relu(w_j . x)``,
square loss, inputs ``x_1, ..., x_n`` pairwise orthogonal, labels ``y_k != 0`` of both signs,
*balanced* initialisation at scale ``sigma``: ``w_j(0) = sigma g_j``, ``a_j(0) = s_j |w_j(0)|``,
``s_j = +-1``.  (A hidden bias is an input coordinate fixed to 1: the paper's network on
``x~ = (x, 1)``; it asks ``x~_k`` to be orthogonal.)

**On the plugin.**  The plugin's network always has hidden biases ``b_1`` and an output bias
``c = b_2``.  :class:`BiasFreeNetwork` is the paper's network through a documented
reparametrisation, without any change to the plugin:

* the plugin's hidden bias *is* the paper's constant input coordinate: with inputs ``x_k`` in
  ``R^d`` the plugin computes ``relu(W_1 x + b_1) = relu(W~ x~)``, ``W~ = [W_1, b_1]``, exactly the
  paper's first layer on ``x~_k = (x_k, 1)`` (``hidden_bias=True``; the data are then chosen with
  ``x~_k`` orthogonal, :func:`simplex_inputs`).  With ``hidden_bias=False`` the inputs themselves
  are orthogonal and ``b_1`` is frozen at 0;
* the output bias has no counterpart in the paper: it is **frozen at 0** -- the coordinates of
  :class:`BiasFreeNetwork` are the plugin's ``theta`` without it (and without ``b_1`` when
  ``hidden_bias=False``), ``embed`` puts zeros there.  ``L_model(v) = L_plugin(embed(v))`` and
  ``grad L_model(v) = restrict(grad L_plugin(embed(v)))`` exactly (the frozen coordinates are
  constants, not variables), so gradient descent on the model *is* gradient descent on the paper's
  network.  (Training ``c`` would change the dynamics: its gradient ``(2/m) sum_k r_k`` is not 0
  at the paper's saddles.)

The plugin's loss is ``(1/n) sum (h - y)^2``, twice the paper's ``(1/(2n)) sum (h - y)^2``: step
``gamma`` here is step ``2 gamma`` on the paper's loss; every rate below is for the plugin's loss.

**What orthogonality gives** (derived here from the paper's decoupling; docs/theory.md §1.11,
orthogonal inputs).  Write ``t_jk = w~_j . x~_k``.  The gradient of ``t_jk`` involves datum ``k``
only, so

* the *activation pattern* of a neuron can only lose data: a datum with ``t_jk < 0`` is frozen, one
  with ``s_j y_k < 0`` is driven to the kink and frozen there.  Its growing set is
  ``A_j = {k : s_j y_k > 0, t_jk(0) > 0}`` (:func:`growing_sets`);
* near 0 the pair (size along ``D_j = s_j sum_{k in A_j} y_k x~_k``, ``a_j``) is linear with
  multipliers ``1 +- gamma r_j``, ``r_j = (2/n) sqrt(sum_{k in A_j} y_k^2 |x~_k|^2)``: the neuron
  grows by ``lambda_j = 1 + gamma r_j`` per step and aligns with ``D_j`` (:func:`growth_rates`);
* positive and negative neurons never share a datum after the alignment: the loss splits as
  ``L = L_+ + L_-``, each class leaving 0 on its own clock ``log(1/sigma) / log lambda_class``
  (``lambda_class`` of the full pattern).  The plateaus are the saddle at 0, level
  ``L0 = (1/n) sum y_k^2``, then the saddle where the faster class is fitted and the slower class's
  neurons are 0, level ``L1 = (1/n) sum_{k in slower class} y_k^2``, then 0
  (:func:`predict`);
* the limit (``sigma -> 0``) is the minimum-norm interpolator
  ``f*(x~) = relu(u+ . x~) - relu(u- . x~)``, ``u+- = sum_{+-y_k > 0} |y_k| x~_k / |x~_k|^2``, of
  variation norm ``V* = |u+| + |u-|`` (= min of ``(1/2)|theta|^2`` over interpolators;
  :func:`min_norm_interpolator`).  At finite ``sigma`` the excess ``V/V* - 1`` decays like
  ``sigma^kappa``, ``kappa = 2 min (1 - log lambda_A / log lambda_class)`` over the sub-maximal
  growing sets ``A`` present at initialisation (their neurons grow until their class is fitted).

The initialisation condition used here (:func:`paper_condition`; our reading of what the paper's
high-probability statement needs -- its exact wording was not available to us): each class has a
neuron of its sign active at initialisation on all of its data.  Without it the limit is another
interpolator and the plateaus differ (the experiment's positive controls,
:func:`violate_condition`).

The experiment (:func:`run_orthogonal`, :data:`EXPERIMENT`) measures all of this per
initialisation with :func:`analyse`; docs/plugins/network.md lists its claims and criteria.

Modules: :mod:`.model` (data, :class:`BiasFreeNetwork`, closed forms, gradient-descent runs),
:mod:`.saddles` (certified saddles), :mod:`.experiment` (analysis, claims, figure); plateaus are
found by :func:`csm.small_init.detect_plateaus`.
"""

from __future__ import annotations

from csm.small_init import detect_plateaus

from .experiment import (EXPERIMENT, LABELS_A, LABELS_B, NORMS_B, SIGMAS, analyse, draw_start,
                         equivalence, run_orthogonal)
from .model import (REF, BiasFreeNetwork, MinNorm, Prediction, forward, gd_map, growing_sets,
                    growth_rates, min_norm_interpolator, orthogonal_model, paper_condition,
                    predict, run, simplex_inputs, variation_norm, violate_condition)
from .saddles import SaddleCertificate, certify_saddle, snap_to_saddle

__all__ = [
    "REF", "simplex_inputs", "BiasFreeNetwork", "orthogonal_model", "MinNorm",
    "min_norm_interpolator", "growing_sets", "growth_rates", "paper_condition",
    "violate_condition", "Prediction", "predict", "variation_norm", "forward", "gd_map", "run",
    "detect_plateaus", "SaddleCertificate", "snap_to_saddle", "certify_saddle", "analyse",
    "run_orthogonal", "EXPERIMENT", "LABELS_A", "LABELS_B", "NORMS_B", "SIGMAS", "draw_start",
    "equivalence",
]
