"""csm plugin ``relu``: shallow ReLU networks with the integral loss (paper §4, docs/theory.md §2--§4).

This package is a built-in plugin written exactly as a third party would write one, so it
doubles as a short tutorial on writing a csm plugin.

1. **Register.**  ``pyproject.toml`` declares an entry point in the group ``"csm"``::

       [project.entry-points.csm]
       relu = "csm_relu"

   csm imports this module and calls the functions marked ``@csm.hookimpl`` below.  The plugin
   imports only public names of ``csm`` (never the other way round).

2. **Offer problems.**  :func:`csm_problems` returns :class:`csm.ProblemFactory` objects: name,
   one-line description and a constructor whose keyword parameters become
   ``csm.get_problem("relu", N=4, interval=(0, 1), target=(0, 1))`` (and ``-p N=4`` on the
   command line).  The constructor validates every value and raises :class:`csm.ParameterError`
   naming the parameter.

3. **Implement the problem.**  :class:`ReluProblem` subclasses :class:`csm.ProblemBase` and
   implements the batched kernels ``_loss``, ``_gradient``, ``_hessian`` on ``(B, d)`` arrays
   (the base class accepts ``(d,)`` or ``(B, d)``), plus ``hvp``, ``sample(rng, n)``,
   ``critical_points()``, ``classify(theta)``, ``critical_values()`` and
   ``local_map(point, step)``.  Module map:

   - :mod:`~csm_relu._engine` -- exact piecewise-polynomial integrals, ``O(N log N)`` per
     network (sorted breakpoints, prefix sums), fully vectorised over a batch;
   - :mod:`~csm_relu.neurons` -- the neuron classes of Definition 4.1 with a stated tolerance;
   - :mod:`~csm_relu.critical` -- the closed-form critical points of Proposition 4.5;
   - :mod:`~csm_relu.problem` -- the problem, the modified gradient ``G_J`` of §4 and
     its Jacobian, classification.

4. **Check conformance** in the plugin's tests with one line,
   ``csm.testing.check_problem(problem)``, then test against independent references
   (adaptive quadrature, finite differences, the paper's closed forms).

5. **Use the instruments**, e.g. the center-stable manifold at a zigzag saddle::

       >>> import csm
       >>> p = csm.get_problem("relu", N=4)
       >>> s = next(c for c in p.critical_points() if c.label == "zigzag-n1-inactive")
       >>> s.info["n_negative"], round(s.info["least_eigenvalue"], 4)
       (2, -0.0267)
       >>> W = csm.center_stable_manifold(p.local_map(s, 0.1), s.theta)  # doctest: +SKIP
       >>> W.dim_u                                                         # doctest: +SKIP
       2

Conventions (details in ``docs/plugins/relu.md``): ``theta = (w, b, v, c)``; the gradient is
the paper's ``G`` with ``relu'(0) = 0``; neuron types use the tolerance of
:mod:`csm_relu.neurons`; initial networks are ``N(0, init_scale^2 I)``.
"""

from __future__ import annotations

import csm

from .neurons import NEURON_KINDS, NeuronTypes
from .problem import ReluProblem

__all__ = ["ReluProblem", "NeuronTypes", "NEURON_KINDS", "csm_problems", "csm_experiments"]


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    """The ``relu`` problem (paper §4)."""
    return [csm.ProblemFactory(
        "relu",
        "shallow ReLU network, exact integral L2 loss on [alpha, beta] against a polynomial "
        "target (paper §4)",
        ReluProblem,
    )]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    """The ``csm reproduce`` experiments of this plugin (see :mod:`.experiments`)."""
    from .experiments import EXPERIMENTS

    return list(EXPERIMENTS)
