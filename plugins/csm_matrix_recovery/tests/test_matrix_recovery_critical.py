"""Matrix recovery: critical points, kinds, classification, center-stable manifolds.

References: numerically computed Hessian spectra (``numpy.linalg.eigvalsh``) against the
closed form of :func:`csm_matrix_recovery.critical.full_hessian_spectrum` (docs/theory.md §7), the
explicit unstable direction ``v_k e_j^T``, and for the manifold at ``S = {1}`` the exact
GD-invariance of the subspace ``{U : v_2^T U = 0}``: there GD sees only ``lambda_1 v_1 v_1^T``,
so orbits started near the saddle stay near it and lie on the center-stable manifold.
"""

from __future__ import annotations

import numpy as np
import pytest

import csm

N, R = 6, 2


def eig(p, theta):
    return np.linalg.eigvalsh(p.hessian(theta))


@pytest.fixture(scope="module")
def full():
    return csm.get_problem("matrix_recovery", n=N, r=R, loss="full", seed=0)


@pytest.fixture(scope="module")
def sens():
    return csm.get_problem("matrix_recovery", n=N, r=R, m=60, loss="l2", seed=0)


# -- full observation -----------------------------------------------------------------------

@pytest.mark.parametrize("n, r", [(6, 2), (5, 1), (5, 3), (4, 4)])
def test_full_critical_points_closed_form(n, r):
    from csm_matrix_recovery.critical import full_hessian_spectrum

    p = csm.get_problem("matrix_recovery", n=n, r=r, loss="full", seed=1)
    cps = p.critical_points()
    assert len(cps) == 2 ** r + 1  # every subset S, plus -U*
    lam = p.eigenvalues
    for c in cps:
        assert np.linalg.norm(p.gradient(c.theta)) <= 1e-10
        ev = eig(p, c.theta)
        S = tuple(k - 1 for k in c.info["eigenpairs"])
        assert np.allclose(ev, full_hessian_spectrum(lam, S, n), atol=1e-10)
        assert c.info["least_eigenvalue"] == pytest.approx(ev[0], abs=1e-10)
        assert c.info["n_negative"] == int(np.sum(ev < -1e-8))
        assert c.info["n_zero"] == int(np.sum(np.abs(ev) <= 1e-8))
        U = c.theta.reshape(n, r)
        V = p.eigenvectors
        P = sum(lam[k] * np.outer(V[:, k], V[:, k]) for k in S) if S else 0
        assert np.allclose(U @ U.T, P, atol=1e-13)
        if len(S) == r:
            assert c.kind == "global_minimum" and c.loss <= 1e-28
            assert c.info["n_negative"] == 0 and c.info["n_zero"] == r * (r - 1) // 2
        else:
            missing = [k for k in range(r) if k not in S]
            k = missing[0]  # the largest missing eigenvalue
            assert c.kind == "strict_saddle"
            assert c.info["least_eigenvalue"] == pytest.approx(-lam[k], abs=1e-12)
            # the direction v_k e_j^T (j a zero column) has curvature -lambda_k exactly
            D = np.zeros((n, r))
            D[:, len(S)] = p.eigenvectors[:, k]
            assert np.allclose(p.hvp(c.theta, D.ravel()), -lam[k] * D.ravel(), atol=1e-12)
            assert c.loss == pytest.approx(0.25 * sum(lam[j] ** 2 for j in missing), rel=1e-13)


def test_global_minimum_orbit_center_directions(full):
    """U* R is a global minimum for every orthogonal R; the orbit's tangent U* Omega
    (Omega skew) spans the r(r-1)/2 zero eigenvalues of the Hessian."""
    Ustar = full.u_star
    Rm = np.linalg.qr(np.random.default_rng(5).standard_normal((R, R)))[0]
    theta = (Ustar @ Rm).ravel()
    assert full.loss(theta) <= 1e-28 and np.linalg.norm(full.gradient(theta)) <= 1e-12
    Omega = np.array([[0.0, 1.0], [-1.0, 0.0]])
    T = (Ustar @ Omega).ravel()
    assert np.allclose(full.hvp(Ustar.ravel(), T), 0, atol=1e-13)
    gm = next(c for c in full.critical_points() if c.label == "global-min+")
    assert gm.info["n_zero"] == gm.info["orbit_dimension"] == 1
    got = full.classify(theta)
    assert (got.kind, got.label) == ("global_minimum", "global-min+")


def test_full_critical_set_is_complete(full):
    """Newton from random starts finds only points on listed O(r)-orbits (closed form complete)."""
    from csm.critical import locate_zeros

    X0 = np.random.default_rng(3).standard_normal((40, full.dim))
    X, gn = locate_zeros(full.gradient, full.hessian, X0)
    conv = gn <= 1e-12
    assert conv.sum() >= 25
    # tol 1e-3: along the quartic directions w e_c^T of a saddle (w ⟂ range M*, c a zero
    # column) the gradient is ~ t^3, so |grad| = 1e-12 still allows a distance ~ 1e-4
    got = full.classify(X[conv], tol=1e-3, grad_tol=1e-10)
    assert all(g.info["listed"] for g in got)
    assert {g.kind for g in got} <= {"global_minimum", "strict_saddle"}


def test_full_classify(full):
    rng = np.random.default_rng(0)
    for c in full.critical_points():
        Rm = np.linalg.qr(rng.standard_normal((R, R)))[0]
        for theta in (c.theta, (c.theta.reshape(N, R) @ Rm).ravel()):
            got = full.classify(theta)
            assert got.kind == c.kind
            # ±U* lie on one O(r)-orbit: either label names it
            assert got.label == c.label or {got.label, c.label} == {"global-min+", "global-min-"}
    assert full.classify(rng.standard_normal(full.dim)).kind == "not_critical"
    s = next(c for c in full.critical_points() if c.label == "saddle-S1")
    assert full.classify(s.theta + 1e-3).kind == "not_critical"
    batch = full.classify(np.stack([s.theta, full.u_star.ravel()]))
    assert [b.kind for b in batch] == ["strict_saddle", "global_minimum"]


def test_center_stable_manifold_at_saddle_S1(full):
    """S = {1}: one unstable direction v_2 e_2^T (curvature -lambda_2 = -1), dim_cs = 11 of which
    5 are center directions (zero Hessian eigenvalues)."""
    pytest.importorskip("csm.manifold")
    s = next(c for c in full.critical_points() if c.label == "saddle-S1")
    step = 0.1
    W = csm.center_stable_manifold(full.local_map(s, step), s.theta)
    assert (W.dim_u, W.dim_cs) == (1, N * R - 1)
    assert s.info["n_zero"] == 5 and s.info["least_eigenvalue"] == -1.0
    assert np.allclose(W.eigenvalues_u, [1 + step * 1.0], rtol=1e-10)
    v2 = full.eigenvectors[:, 1]
    rng = np.random.default_rng(1)
    D = rng.standard_normal((12, N, R))
    D -= v2[None, :, None] * np.einsum("i,bia->ba", v2, D)[:, None, :]  # v2^T D = 0
    D = D.reshape(12, -1)
    D *= 0.3 * W.radius / np.linalg.norm(D, axis=1, keepdims=True)
    assert np.max(np.abs(W.offset(s.theta + D))) <= 1e-10
    # off the invariant subspace along the unstable direction: offset = ±t
    E = np.zeros((N, R))
    E[:, 1] = v2
    t = 0.2 * W.radius
    assert np.allclose(np.abs(W.offset(s.theta + D[0] + t * E.ravel())), t, rtol=1e-6)
    assert W.verify(n=16, deltas=(1e-2 * W.radius, 1e-4 * W.radius)).passed


# -- sensing losses -------------------------------------------------------------------------

def test_l2_sensing_exact_critical_points(sens):
    cps = {c.label: c for c in sens.critical_points()}
    o = cps["origin"]
    assert np.all(sens.gradient(o.theta) == 0)
    ev = eig(sens, o.theta)
    assert o.info["least_eigenvalue"] == pytest.approx(ev[0], abs=1e-12)
    assert o.kind == ("strict_saddle" if ev[-1] > 1e-8 else "local_maximum")
    # hess at 0 is S0 ⊗ I_r with S0 = -(1/m) sum_k y_k A_k
    S0 = -np.einsum("k,kij->ij", sens.y, sens.A) / sens.m
    assert np.allclose(ev, np.sort(np.repeat(np.linalg.eigvalsh(S0), R)), atol=1e-12)
    for lab, U in (("global-min+", sens.u_star), ("global-min-", -sens.u_star)):
        c = cps[lab]
        assert c.kind == "global_minimum" and c.loss <= 1e-28
        assert np.linalg.norm(sens.gradient(U.ravel())) <= 1e-12
        ev = eig(sens, c.theta)
        assert ev[0] >= -1e-10 and c.info["n_zero"] == R * (R - 1) // 2  # orbit directions only


def test_l2_sensing_newton_located_saddles(sens):
    located = [c for c in sens.critical_points() if c.info.get("numerically_located")]
    assert {c.info["started_from"] for c in located} <= {"saddle-S1", "saddle-S2"}
    assert len(located) >= 1
    for c in located:
        g = np.linalg.norm(sens.gradient(c.theta))
        assert g <= 1e-9
        ev = eig(sens, c.theta)
        assert c.kind == "strict_saddle" and ev[0] < -1e-8 < 1e-8 < ev[-1]
        assert c.info["least_eigenvalue"] == pytest.approx(ev[0], abs=1e-10)
        assert c.info["n_negative"] == int(np.sum(ev < -1e-8))
        # the O(r) orbit of a rank-1 U in R^{n x 2} is 1-dimensional: one zero eigenvalue
        assert c.info["rank"] == 1 and c.info["n_zero"] == c.info["orbit_dimension"] == 1
        assert sens.classify(c.theta).label == c.label


def test_l2_sensing_saddles_approach_full_observation_saddles():
    """With many measurements the located saddles are close to the full-observation ones
    (same orbit, Procrustes distance ~ sqrt(dof/m))."""
    from csm_matrix_recovery.classify import orbit_distance

    p = csm.get_problem("matrix_recovery", n=N, r=R, m=6000, loss="l2", seed=0)
    f = csm.get_problem("matrix_recovery", n=N, r=R, loss="full", seed=0)
    ref = {c.label: c.theta.reshape(N, R) for c in f.critical_points()}
    located = [c for c in p.critical_points() if c.info.get("numerically_located")]
    assert {c.label for c in located} == {"saddle-S1", "saddle-S2"}
    for c in located:
        d = orbit_distance(c.theta.reshape(1, N, R), ref[c.label][None])[0, 0]
        assert d < 0.1
        fc = next(x for x in f.critical_points() if x.label == c.label)
        assert c.info["least_eigenvalue"] == pytest.approx(fc.info["least_eigenvalue"], abs=0.1)
        # the full-observation zero eigenvalues that are not orbit directions (quartic
        # directions w e_c^T, w ⟂ range M*) may tip either way under the sensing perturbation
        extra = fc.info["n_zero"] - fc.info["orbit_dimension"]
        assert fc.info["n_negative"] <= c.info["n_negative"] <= fc.info["n_negative"] + extra


def test_l1_sensing_critical_points():
    p = csm.get_problem("matrix_recovery", n=N, r=R, m=60, loss="l1", seed=0)
    cps = {c.label: c for c in p.critical_points()}
    assert set(cps) == {"origin", "global-min+", "global-min-"}
    o = cps["origin"]
    assert np.all(p.gradient(o.theta) == 0)
    # smooth at 0 (every y_k != 0); a.e. Hessian = true Hessian there: check by FD of gradient
    h = 1e-6
    H = p.hessian(o.theta)
    Hfd = np.stack([(p.gradient(h * e) - p.gradient(-h * e)) / (2 * h) for e in np.eye(p.dim)], 1)
    assert np.allclose(H, Hfd, atol=1e-8)
    assert o.info["least_eigenvalue"] == pytest.approx(np.linalg.eigvalsh(H)[0], abs=1e-12)
    for lab in ("global-min+", "global-min-"):
        c = cps[lab]
        assert c.kind == "global_minimum" and c.info["smooth"] is False
        assert np.all(p.gradient(c.theta) == 0) and c.loss <= 1e-14
        assert p.classify(c.theta + 1e-7).kind == "global_minimum"


def test_center_stable_manifold_at_sensing_saddle(sens):
    pytest.importorskip("csm.manifold")
    s = next(c for c in sens.critical_points() if c.info.get("numerically_located"))
    step = 0.5 / eig(sens, s.theta)[-1]
    W = csm.center_stable_manifold(sens.local_map(s, step), s.theta)
    assert W.dim_u == s.info["n_negative"] and W.dim_cs == sens.dim - W.dim_u
    # graph points are mapped onto the graph (invariance) and stay in the ball for a long time
    ver = W.verify(n=16, deltas=(1e-2 * W.radius,))
    assert ver.invariance_residual <= 1e-9
    assert ver.graph_stay_min >= 100


def test_conformance_other_shapes():
    testing = pytest.importorskip("csm.testing")
    for kw in (dict(n=3, r=1, loss="full"), dict(n=4, r=3, m=50, loss="l2"),
               dict(n=3, r=3, loss="full")):
        assert testing.check_problem(csm.get_problem("matrix_recovery", **kw)).passed


def test_large_rank_lists_a_subset_family():
    """For r > 8 only S = {1..s} and {1..r} minus one index are listed (2r + 1 points)."""
    from csm_matrix_recovery.critical import MAX_R_ALL_SUBSETS

    r = MAX_R_ALL_SUBSETS + 1
    p = csm.get_problem("matrix_recovery", n=r + 1, r=r, loss="full", seed=0)
    cps = p.critical_points()
    assert len(cps) == (r + 1) + (r - 1) + 1
    assert len({c.label for c in cps}) == len(cps)
    for c in cps[::4]:
        assert np.linalg.norm(p.gradient(c.theta)) <= 1e-10


def test_underdetermined_sensing_zero_loss_points_are_global_minima():
    """m = 3 < dof: Newton from the full-observation saddles may land on the (large) zero-loss
    set; such points are global minima (the loss is >= 0), not saddles."""
    p = csm.get_problem("matrix_recovery", n=4, r=3, m=3, loss="l2", seed=0)
    located = [c for c in p.critical_points() if c.info.get("numerically_located")]
    assert any(c.kind == "global_minimum" for c in located)  # e.g. from S = {1, 2}
    for c in p.critical_points():
        assert np.linalg.norm(p.gradient(c.theta)) <= 1e-9
        if c.loss <= 1e-20:
            assert c.kind == "global_minimum"
        else:
            assert c.kind != "global_minimum"
