"""The one batched iteration engine: orbits of any map, exit times, trajectories.

Every instrument that iterates a map (manifold verification, escape rates and times, stable
sets, transition graphs) runs its orbits here, so the stopping conventions are the same
everywhere:

* an **exit time** is the first ``k >= 1`` with ``norm(g^k(x)) > radius``; ``-1`` means the orbit
  did not leave within ``n_steps`` (``NEVER_LEFT``);
* finished orbits leave the batch, so the work per step is proportional to the orbits still
  running.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._validation import check_finite, positive_int

__all__ = ["NEVER_LEFT", "exit_times", "trajectories"]

#: Exit time of an orbit that stayed for all ``n_steps`` steps.
NEVER_LEFT = -1


def exit_times(g: Callable[[np.ndarray], np.ndarray], X: np.ndarray, n_steps: int,
               norm: Callable[[np.ndarray], np.ndarray], radius: float | np.ndarray) -> np.ndarray:
    """First ``k`` in ``1..n_steps`` with ``norm(g^k(x)) > radius`` for each row of ``X``.

    Parameters
    ----------
    g : callable
        The batched map ``(B, d) -> (B, d)``.
    X : ndarray (B, d)
        Starting points (not modified).
    n_steps : int
        Largest number of steps.
    norm : callable
        ``norm(Y) -> (B,)`` distances that define the ball (e.g. the eigen-norm around ``x*``).
    radius : float or ndarray (B,)
        The ball's radius (per orbit if an array).

    Returns
    -------
    ndarray of int (B,)
        Exit steps, :data:`NEVER_LEFT` where the orbit stayed ``n_steps`` steps.  A NaN or
        infinite iterate counts as having left.
    """
    n_steps = positive_int(n_steps, "n_steps")
    Y = np.array(X, dtype=float, copy=True)
    B = Y.shape[0]
    rad = np.broadcast_to(np.asarray(radius, dtype=float), (B,))
    out = np.full(B, NEVER_LEFT, dtype=int)
    idx = np.arange(B)
    for k in range(1, n_steps + 1):
        if idx.size == 0:
            break
        Y = np.asarray(g(Y), dtype=float)
        with np.errstate(invalid="ignore"):
            left = ~(norm(Y) <= rad[idx])  # NaN counts as left
        out[idx[left]] = k
        keep = ~left
        idx, Y = idx[keep], Y[keep]
    return out


def trajectories(g: Callable[[np.ndarray], np.ndarray], X: np.ndarray, n_steps: int, *,
                 every: int = 1, observe: Callable[[np.ndarray], Any] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Iterate ``g`` from every row of ``X`` and record every ``every``-th iterate.

    Returns ``(steps, values)`` with ``values[i] = observe(g^{steps[i]}(X))`` (default: the
    iterates themselves), ``steps = 0, every, 2 every, ..., n_steps``.  Raises
    :class:`~csm.NonFiniteError` if an iterate becomes NaN or infinite.
    """
    n_steps = positive_int(n_steps, "n_steps", minimum=0)
    every = positive_int(every, "every")
    obs = observe or (lambda Y: Y.copy())
    Y = np.array(X, dtype=float, copy=True)
    steps, values = [0], [obs(Y)]
    for k in range(1, n_steps + 1):
        Y = check_finite(np.asarray(g(Y), dtype=float), "map (while iterating)", Y)
        if k % every == 0 or k == n_steps:
            steps.append(k)
            values.append(obs(Y))
    return np.asarray(steps), np.asarray(values)
