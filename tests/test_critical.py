"""csm.critical.find_critical_points: saddles found in any loss, deduplicated and certified."""

import numpy as np
import pytest

import csm
from csm.critical import find_critical_points


def test_relu_levels_from_gaussian_starts():
    """ReLU N = 4 on [0, 1], f(x) = x, 400 Gaussian starts.  Criterion (issue 11): the loss
    values found are the layer set {0, 1/972, 1/12} to 1e-10 (closed form rho^2 (beta -
    alpha)^3 / (12 (2n+1)^4), independent of csm), every point has |G| <= 1e-10 and a
    certificate, and every (level, kind) of the plugin's listed points at these levels is
    among the found ones."""
    p = csm.get_problem("relu", N=4)
    r = find_critical_points(p, 400, rng=0)
    assert r.success and r.n_converged >= 380
    layers = np.array([0.0, 1 / 972, 1 / 12])
    for lv in r.levels:
        assert np.min(np.abs(layers - lv)) <= 1e-10, lv
    assert {round(lv, 10) for lv in r.levels} == {round(v, 10) for v in layers}
    for c in r.points:
        assert c.info["grad_norm"] <= 1e-10 and c.info["certified_kind"] in csm.KINDS + ("degenerate",)
    found = {(round(c.loss, 10), c.kind) for c in r.points}
    for c in p.critical_points():
        if round(c.loss, 10) in {round(v, 10) for v in layers} and c.kind != "saddle":
            assert (round(c.loss, 10), c.kind) in found, (c.label, c.kind, c.loss)


def test_saddles_of_a_loss_without_listed_points():
    class Quartic(csm.ProblemBase):
        """L = (x^2 - 1)^2/4 + (y^2 - 1)^2/4: 9 critical points, 4 minima, 4 strict saddles, 1 max."""

        name = "two-wells"
        dim = 2

        def _loss(self, X):
            return ((X**2 - 1) ** 2).sum(1) / 4

        def _gradient(self, X):
            return X**3 - X

    r = find_critical_points(Quartic(), 200, starts=np.random.default_rng(0).uniform(-1.5, 1.5, (200, 2)))
    kinds = sorted(c.kind for c in r.points)
    assert kinds.count("local_minimum") == 4 and kinds.count("strict_saddle") == 4
    assert kinds.count("local_maximum") == 1 and len(r.points) == 9
    # the saddles are (+-1, 0), (0, +-1): independent check of location
    S = np.array(sorted(np.round(c.theta, 8).tolist() for c in r.points if c.kind == "strict_saddle"))
    np.testing.assert_allclose(np.abs(S).sum(1), 1.0, atol=1e-8)


def test_bad_inputs():
    p = csm.get_problem("relu", N=2)
    with pytest.raises(csm.InputError, match="`n`"):
        find_critical_points(p, 0)
    with pytest.raises(csm.InputError, match="starts"):
        find_critical_points(p, starts=np.zeros((0, p.dim)))
    with pytest.raises(csm.InputError, match="`gtol`"):
        find_critical_points(p, 10, gtol=-1)
