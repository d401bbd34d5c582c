"""csm plugin ``matrix_recovery``: low-rank matrix recovery, Burer--Monteiro (paper §3.2).

A built-in plugin written as a third party would write one -- read it as a tutorial.

1. **Register** an entry point in the group ``"csm"`` (``pyproject.toml``)::

       [project.entry-points.csm]
       matrix_recovery = "csm_matrix_recovery"

   csm imports this module and calls the functions marked ``@csm.hookimpl``.  The plugin
   uses only public names of ``csm``; csm never imports the plugin.

2. **Offer problems** from :func:`csm_problems` as :class:`csm.ProblemFactory` objects.  The
   constructor's keyword parameters become
   ``csm.get_problem("matrix_recovery", n=6, r=2, m=60, loss="l2", seed=0)``; bad values raise
   :class:`csm.ParameterError` naming the parameter and what is accepted.

3. **Implement the problem** (:class:`MatrixRecovery`, a :class:`csm.ProblemBase`): batched
   ``_loss``, ``_gradient``, ``_hessian`` on ``(B, d)`` arrays, ``hvp``, ``sample``,
   ``critical_points``, ``classify``, ``local_map``.  When the natural variable is a matrix,
   fix and document the flattening: here ``theta = vec(U)`` row-major, ``theta[i*r + a] =
   U[i, a]`` (:meth:`MatrixRecovery.to_matrix` / :meth:`MatrixRecovery.to_theta`).  Modules:

   - :mod:`~csm_matrix_recovery.losses` -- full-observation, ℓ2- and ℓ1-sensing kernels
     (products with the ``(m, n^2)`` matrix of flattened sensing matrices);
   - :mod:`~csm_matrix_recovery.critical` -- critical points ``V_S Lambda_S^{1/2} R`` with
     their Hessian spectra in closed form; exact and Newton-located sensing critical points;
   - :mod:`~csm_matrix_recovery.classify` -- nearest critical ``O(r)``-orbit (Procrustes);
   - :mod:`csm.critical` (core) -- Newton refinement and kinds from Hessian spectra.

4. **Test** with ``csm.testing.check_problem(problem)`` plus tests against the closed forms.

5. **Use the instruments**, e.g. at the saddle ``S = {1}`` (curvature ``-lambda_2``)::

       >>> import csm
       >>> p = csm.get_problem("matrix_recovery", loss="full")
       >>> s = next(c for c in p.critical_points() if c.label == "saddle-S1")
       >>> W = csm.center_stable_manifold(p.local_map(s, 0.1), s.theta)  # doctest: +SKIP
       >>> W.dim_u                                                         # doctest: +SKIP
       1

Conventions: ``lambda_k = r - k + 1`` (distinct, well separated), eigenvectors from ``seed``;
the ℓ1 gradient is the a.e. gradient with ``sign(0) = 0``; initial points have i.i.d.
``N(0, 1)`` entries.  See ``docs/plugins/matrix_recovery.md`` and docs/theory.md §7.
"""

from __future__ import annotations

import csm

from .problem import MatrixRecovery

__all__ = ["MatrixRecovery", "csm_problems", "csm_experiments"]


@csm.hookimpl
def csm_problems() -> list[csm.ProblemFactory]:
    """The problem ``matrix_recovery`` (parameters ``n``, ``r``, ``m``, ``loss``, ``seed``)."""
    return [
        csm.ProblemFactory(
            "matrix_recovery",
            "low-rank matrix recovery U U^T ~ M* (Burer-Monteiro); full observation or "
            "Gaussian-sensing ℓ2 / ℓ1 loss (paper §3.2)",
            MatrixRecovery,
        )
    ]


@csm.hookimpl
def csm_experiments() -> list[csm.Experiment]:
    """The ``csm reproduce`` experiment of this plugin (see :mod:`.experiments`)."""
    from .experiments import EXPERIMENT

    return [EXPERIMENT]
