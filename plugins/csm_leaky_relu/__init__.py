"""csm plugin ``leaky_relu``: shallow leaky ReLU networks, integral loss (paper §5, docs/theory.md §5).

A second example of a csm plugin -- this one is built *on another plugin*: the leaky loss is
the ReLU loss of a network with twice as many neurons, ``L_leaky = L_relu,2N o D`` (the
neuron-doubling map ``D`` of docs/theory.md §5), so it imports :class:`csm_relu.ReluProblem` and
reuses its exact integrals (plugin-to-plugin imports of public names are fine; both are
ordinary packages).

1. **Register** through the entry point ``leaky_relu = "csm_leaky_relu"`` of the group
   ``"csm"`` in ``pyproject.toml``; :func:`csm_problems` below offers the factory.
2. **Implement** :class:`LeakyReluProblem` (a :class:`csm.ProblemBase`): loss, gradient
   ``D^T G(D theta)``, Hessian ``D^T H D``, ``hvp``, ``sample``, ``critical_points``,
   ``classify``, ``critical_values``, ``local_map`` (plain: no modification is needed, §5);
   the classification of critical points for affine targets is in :mod:`.critical`, the
   independent checks of it in :mod:`.verify`.
3. **Test** with ``csm.testing.check_problem(problem)`` plus the reduction identities.

    >>> import csm
    >>> p = csm.get_problem("leaky_relu", N=2, slope=0.1)
    >>> [c.label for c in p.critical_points()][5:8]         # after layer 0 and k = 1
    ['leaky-zigzag-k1-left', 'leaky-zigzag-k2-left', 'leaky-zigzag-n1']
    >>> [round(float(v), 6) for v in p.critical_values()]   # closed form
    [0.083333, 0.022489, 0.008448, 0.000781, 0.0]

See ``docs/plugins/leaky_relu.md``.
"""

from __future__ import annotations

import csm

from .problem import LeakyReluProblem

__all__ = ["LeakyReluProblem", "csm_problems", "csm_experiments"]


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    """The ``leaky_relu`` problem (paper §5)."""
    return [csm.ProblemFactory(
        "leaky_relu",
        "shallow leaky ReLU network, exact integral L2 loss via the neuron-doubling reduction "
        "to ReLU (paper §5)",
        LeakyReluProblem,
    )]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    """The ``csm reproduce`` experiments of this plugin (see :mod:`.experiments`)."""
    from .experiments import EXPERIMENT

    return [EXPERIMENT]
