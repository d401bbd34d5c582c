"""``csm reproduce`` experiment for leaky ReLU networks (paper §5, MATH.md §5).

Claims checked: the carried-over critical points are critical and their saddles strict
(Lemma 5.3, least eigenvalue reported); Corollary 5.5 -- for a.e. step and a.e. initialisation,
GD runs that converge reach loss 0: no converged run is stuck at a positive loss (there are no
non-global local minima for leaky ReLU), and none converges to a saddle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import csm
from csm.experiments.kit import critical_point_claims, stable_set_sweep

REFERENCE = "Paper §5: Lemma 5.3, Corollary 5.5"


def run(config: csm.ExperimentConfig) -> csm.ExperimentResult:
    p = csm.get_problem("leaky_relu", N=4, slope=0.1)
    tables, claims = {}, []
    rows, cl = critical_point_claims(p, reference="Lemma 5.3", grad_tol=1e-12)
    tables["critical points (neuron-doubling reduction)"] = rows
    claims += cl
    if config.quick:
        steps, n, max_steps = [0.3], 400, 30_000
    else:
        steps, n, max_steps = [0.1, 0.3], 2000, 200_000
    rows, cl, ests = stable_set_sweep(p, steps, n, max_steps=max_steps, tol=1e-8,
                                      seed=config.seed, executor=config.executor,
                                      progress=config.progress, reference="Corollary 5.5",
                                      save_to=Path(config.out_dir) / "data" / "leaky_stable_set")
    tables["classes of the limits"] = rows
    claims += cl
    for gamma, est in zip(steps, ests):
        A = est.arrays
        conv = A["status"] == 0
        stuck = conv & (A["kind"] != "global_minimum")
        claims.append(csm.Claim(
            f"step {gamma}: every converged run reaches a global minimum (loss 0)",
            "Corollary 5.5",
            f"{int(conv.sum())} converged, {int(stuck.sum())} at a positive-loss critical point; "
            f"{int((A['status'] == 2).sum())} unconverged, median final loss of those "
            f"{float(np.median(A['loss'][A['status'] == 2])) if (A['status'] == 2).any() else 0:.2e}; "
            f"{int((A['status'] == 1).sum())} diverged (step too large for those starts)",
            int(stuck.sum()) == 0))
    return csm.ExperimentResult("leaky_relu", REFERENCE, claims, tables)


EXPERIMENT = csm.Experiment("leaky_relu", REFERENCE,
                            "strict saddles; GD converges to global minima only", run)
