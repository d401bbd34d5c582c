"""csm plugin ``phase_retrieval``: phase retrieval with ℓ2, ℓ1 and population losses (paper §3.1).

This package is a built-in plugin written exactly as a third party would write one, so it
doubles as a short tutorial.

1. **Register.**  ``pyproject.toml`` declares an entry point in the group ``"csm"``::

       [project.entry-points.csm]
       phase_retrieval = "csm_phase_retrieval"

   csm imports this module and calls its hook implementations (below, marked with
   ``@csm.hookimpl``).  The plugin imports only public names of ``csm``; csm never imports it.

2. **Offer problems.**  :func:`csm_problems` returns :class:`csm.ProblemFactory` objects: a
   name, a one-line description and a constructor whose keyword parameters (with defaults)
   become ``csm.get_problem("phase_retrieval", n=8, m=64, loss="l2", seed=0)`` and
   ``csm ... -p n=8``.  The constructor validates every value and raises
   :class:`csm.ParameterError` naming the parameter and what is accepted.

3. **Implement the problem.**  :class:`PhaseRetrieval` subclasses :class:`csm.ProblemBase`
   and implements batched ``_loss``, ``_gradient``, ``_hessian`` on ``(B, d)`` arrays (the base
   class accepts ``(d,)`` or ``(B, d)``), plus ``hvp``, ``sample(rng, n)``,
   ``critical_points()``, ``classify(theta)`` and ``local_map(point, step)``.  Module map:

   - :mod:`~csm_phase_retrieval.losses` -- the three losses as batched kernels (matrix
     products over the ``m`` measurements, no Python loops);
   - :mod:`~csm_phase_retrieval.critical` -- the critical points: closed form for the
     population loss (0, ±x*, the saddle sphere), exact and Newton-located ones for the
     empirical losses;
   - :mod:`csm.critical` (core) -- batched Levenberg--Marquardt/Newton on the gradient and
     kinds from Hessian eigenvalues, shared by every plugin;
   - :mod:`~csm_phase_retrieval.classify` -- nearest known critical point, for GD end points.

4. **Check conformance** in the plugin's tests with one line,
   ``csm.testing.check_problem(problem)``, then add tests against the closed forms.

5. **Use the instruments**, e.g. the center-stable manifold at a population saddle::

       >>> import csm
       >>> p = csm.get_problem("phase_retrieval", n=4, loss="population")
       >>> s = next(c for c in p.critical_points() if c.kind == "strict_saddle")
       >>> W = csm.center_stable_manifold(p.local_map(s, 0.1), s.theta)  # doctest: +SKIP
       >>> (W.dim_u, W.dim_cs)                                             # doctest: +SKIP
       (1, 3)

Conventions: ``x* = g/|g|`` with ``g ~ N(0, I_n)`` from ``seed`` (so ``|x*| = 1``); the ℓ1
gradient is the a.e. gradient with ``sign(0) = 0``; initial points are ``N(0, I_n)``.
See ``docs/plugins/phase_retrieval.md`` and docs/theory.md §6.
"""

from __future__ import annotations

import csm

from .problem import PhaseRetrieval

__all__ = ["PhaseRetrieval", "csm_problems", "csm_experiments"]


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    """The problem ``phase_retrieval`` (parameters ``n``, ``m``, ``loss``, ``seed``)."""
    return [
        csm.ProblemFactory(
            "phase_retrieval",
            "phase retrieval y_i = <a_i, x*>^2, Gaussian a_i; ℓ2 / ℓ1 empirical or population "
            "ℓ2 loss (paper §3.1)",
            PhaseRetrieval,
        )
    ]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    """The ``csm reproduce`` experiment of this plugin (see :mod:`.experiments`)."""
    from .experiments import EXPERIMENT

    return [EXPERIMENT]
