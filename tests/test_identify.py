"""csm.identify: limits named without being told what they are (spectral certificates)."""

import numpy as np
import pytest

import csm
from csm.identify import certify_limits, identify_limits
from csm.problem import CriticalPoint, ProblemBase
from csm.testing import RotatedQuartic


class Cubic(ProblemBase):
    """L = x^3/3 + (y^2 + z^2)/2: a non-strict saddle at 0 attracting exactly {x0 > 0}."""

    name = "cubic-saddle"
    dim = 3

    def _loss(self, X):
        return X[:, 0] ** 3 / 3 + 0.5 * (X[:, 1] ** 2 + X[:, 2] ** 2)

    def _gradient(self, X):
        return np.stack([X[:, 0] ** 2, X[:, 1], X[:, 2]], 1)


class Hyperbola(ProblemBase):
    """L = (ab - 1)^2 / 2: a continuum of global minima (the curve ab = 1)."""

    name = "hyperbola"
    dim = 2
    min_loss = 0.0

    def _loss(self, X):
        return 0.5 * (X[:, 0] * X[:, 1] - 1) ** 2

    def _gradient(self, X):
        r = X[:, 0] * X[:, 1] - 1
        return np.stack([r * X[:, 1], r * X[:, 0]], 1)


def cube(rng, n):
    return rng.uniform(-1, 1, (n, 3))


def box(rng, n):
    return rng.uniform(-1.5, 1.5, (n, 2))


def test_non_strict_saddle_found_without_listed_points():
    """Truth: runs with x0 > 0 converge to the saddle (probability exactly 1/2), the others
    diverge.  Criterion fixed before the run: the 95% CI contains 1/2, no run is called a
    minimum, at most 5% undecided."""
    est = csm.estimate_stable_set(Cubic(), 0.5, cube, n=400, chunk_size=200)
    assert est.saddle_ci[0] <= 0.5 <= est.saddle_ci[1]
    assert est.kind_counts["local_minimum"] == est.kind_counts["global_minimum"] == 0
    assert est.undecided_count <= 0.05 * est.n
    assert est.via_counts == {"spectrum": est.saddle_count}
    # the same runs, named one by one: x0 > 0 => saddle; x0 < -1e-3 => not (between, the
    # escape x_{k+1} = x_k - x_k^2/2 takes over 10^3 steps and |G| = x^2 < tol meanwhile)
    x0 = est.arrays["theta0"][:, 0]
    saddle = est.arrays["kind"] == "saddle"
    assert np.all(saddle[x0 > 0]) and not np.any(saddle[x0 < -1e-3])


def test_continuum_of_minima_is_global():
    est = csm.estimate_stable_set(Hyperbola(), 0.1, box, n=400, chunk_size=200)
    conv = est.arrays["status"] == csm.stable_sets.CONVERGED
    glob = est.arrays["kind"] == "global_minimum"
    assert glob[conv].mean() >= 0.95
    assert est.saddle_count == 0 and est.undecided_count == 0
    # positive control: without min_loss the same limits are (certified) local minima
    class NoInf(Hyperbola):
        min_loss = None

    cert = certify_limits(NoInf(), est.arrays["theta"][conv][:20])
    assert set(cert.kind) == {"local_minimum"} and np.all(cert.n_null == 1)


def test_strict_saddle_certificate_reports_eigenpair():
    p = Hyperbola()
    cert = certify_limits(p, np.zeros((1, 2)))
    assert cert.kind[0] == "strict_saddle"
    # H(0) = -[[0, 1], [1, 0]]: eigenvalue -1 along (1, 1)/sqrt(2), independent of csm
    assert cert.least_eigenvalue[0] == pytest.approx(-1.0, abs=1e-6)
    assert abs(abs(cert.eigenvector[0] @ np.array([1, 1]) / np.sqrt(2)) - 1) < 1e-6


def test_cross_check_flags_a_wrongly_listed_kind():
    class Mislabelled(Hyperbola):
        def critical_points(self):
            return [CriticalPoint(np.zeros(2), "local_minimum", 0.5, "origin")]

    ident = identify_limits(Mislabelled(), np.zeros((1, 2)))
    assert ident.kind[0] == "local_minimum" and ident.via[0] == "critical_point"
    assert ident.certified_kind[0] == "strict_saddle" and ident.disagree[0]


def test_matrix_free_certificate_at_d_10000():
    pb = RotatedQuartic(10_000, 3, coupling=0.5, seed=0)
    cert = certify_limits(pb, np.zeros((1, 10_000)))
    assert cert.kind[0] == "strict_saddle"
    exact = float(pb.a.min())  # Hessian at 0 is R diag(a) R^T
    assert abs(cert.least_eigenvalue[0] - exact) <= 1e-6 * abs(exact)


def test_bad_inputs_are_clear_errors():
    class NaNHessian(Hyperbola):
        def _hessian(self, X):
            return np.full((X.shape[0], 2, 2), np.nan)

    with pytest.raises(csm.NonFiniteError, match="Hessian"):
        certify_limits(NaNHessian(), np.array([[1.0, 1.0]]))

    class WrongInf(Hyperbola):
        min_loss = 1.0

    with pytest.raises(csm.InputError, match="min_loss"):
        certify_limits(WrongInf(), np.array([[1.0, 1.0]]))
