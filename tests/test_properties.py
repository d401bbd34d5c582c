"""Property-based tests of the public API (issue 15): random shapes, dtypes, NaN/inf placements
and parameter values must either work or raise a :class:`csm.CsmError` naming the argument --
never another exception, never a hang.

Each property runs a bounded number of examples with a deadline, so the module stays well
under a minute on two cores.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import csm
from csm.cli import main
from csm.problem import ProblemBase

SETTINGS = settings(max_examples=40, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, float("nan"), float("inf"), -float("inf")]),
)
weird_values = st.one_of(weird_floats, st.integers(-5, 5), st.text(max_size=4), st.none(),
                         st.booleans(), st.lists(st.floats(), max_size=3))


class Saddle(ProblemBase):
    """L = x^2/2 - y^2/2 + y^4/4 (strict saddle at 0, minima at (0, +-1))."""

    name = "saddle-toy"
    dim = 2

    def _loss(self, X):
        return 0.5 * X[:, 0] ** 2 - 0.5 * X[:, 1] ** 2 + 0.25 * X[:, 1] ** 4

    def _gradient(self, X):
        return np.stack([X[:, 0], -X[:, 1] + X[:, 1] ** 3], 1)


def planar():
    return csm.Map(lambda X: np.stack([0.5 * X[:, 0], 2 * X[:, 1] + X[:, 0] ** 2], 1), dim=2)


def _accepts_or_names(exc: BaseException, names: tuple[str, ...]) -> None:
    assert isinstance(exc, csm.CsmError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert any(n in msg or n.strip("`") in msg for n in names), msg


@SETTINGS
@given(name=st.sampled_from(["radius", "tol", "unit_tol", "max_condition", "contraction_target",
                             "max_radius", "fixed_point_tol", "max_iter", "n_lipschitz", "safety"]),
       value=weird_values)
def test_manifold_parameters(name, value):
    try:
        m = csm.center_stable_manifold(planar(), np.zeros(2), **{name: value})
    except Exception as exc:  # noqa: BLE001 - the property: only CsmError naming the argument
        _accepts_or_names(exc, (f"`{name}`", "radius", "kappa", "horizon"))
    else:
        assert 0 <= m.contraction < 1 and math.isfinite(m.radius)


@SETTINGS
@given(shape=st.sampled_from([(2,), (1, 2), (3,), (2, 2), (0,), (2, 1, 1)]),
       fill=weird_floats, dtype=st.sampled_from([float, complex, int, object]))
@example(shape=(2,), fill=1.3407726740064012e+154, dtype=float)  # |x| overflowed: found by hypothesis
@example(shape=(2,), fill=9.480751908109177e+153, dtype=float)
def test_manifold_fixed_point_arrays(shape, fill, dtype):
    try:
        x = np.full(shape, fill, dtype=dtype) if dtype is not int or math.isfinite(fill) else np.zeros(shape, int)
    except (OverflowError, ValueError):
        return
    try:
        csm.center_stable_manifold(planar(), x)
    except Exception as exc:  # noqa: BLE001
        _accepts_or_names(exc, ("`fixed_point`",))


@SETTINGS
@given(step=weird_values, n=weird_values, tol=weird_values, confidence=weird_values,
       target=st.one_of(st.none(), st.text(max_size=12), st.integers(), st.lists(st.text(max_size=5), max_size=2)))
def test_stable_set_parameters(step, n, tol, confidence, target):
    def sampler(rng, m):
        return rng.uniform(-1, 1, (m, 2))

    try:
        est = csm.estimate_stable_set(Saddle(), step, sampler, n=n, tol=tol, confidence=confidence,
                                      target=target, max_steps=50, chunk_size=8)
    except Exception as exc:  # noqa: BLE001
        _accepts_or_names(exc, ("`step`", "`n`", "`tol`", "`confidence`", "`target`", "schedule"))
    else:
        assert est.n == n


@SETTINGS
@given(shape=st.sampled_from([(8, 2), (2, 8), (8, 3), (8,), (7, 2)]),
       bad=st.sampled_from([None, float("nan"), float("inf"), 1j]))
def test_stable_set_sampler_outputs(shape, bad):
    def sampler(rng, m):
        X = rng.uniform(-1, 1, shape).astype(complex if bad == 1j else float)
        if bad is not None and X.size:
            X.flat[0] = bad
        return X

    try:
        csm.estimate_stable_set(Saddle(), 0.1, sampler, n=8, max_steps=20, chunk_size=8)
    except Exception as exc:  # noqa: BLE001
        _accepts_or_names(exc, ("`sampler",))


@SETTINGS
@given(n=weird_values, fill=weird_floats)
def test_measure_checks(n, fill):
    def sampler(rng, m):
        X = rng.standard_normal((m, 2))
        X[0, 0] = fill
        return X

    try:
        csm.check_jacobian_nondegenerate(planar(), sampler, n)
    except Exception as exc:  # noqa: BLE001
        _accepts_or_names(exc, ("`n`", "`sampler`", "NaN", "infinity", "sampler"))


@SETTINGS
@given(params=st.lists(st.tuples(st.sampled_from(["N", "interval", "target", "init_scale", "bogus"]),
                                 weird_values), max_size=2))
def test_problem_parameters(params):
    kw = dict(params)
    try:
        p = csm.get_problem("relu", **kw)
    except Exception as exc:  # noqa: BLE001
        _accepts_or_names(exc, tuple(f"`{k}`" for k in kw) + tuple(kw) + ("parameter",))
    else:
        assert p.dim == 3 * p.N + 1


@settings(max_examples=30, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(["stable-set", "relu", "-n", "0", "-1", "3", "--step", "x",
                                      "geometric:0.1", "--workers", "--tol", "nan", "-p", "N=0",
                                      "N=2", "--json", "--momentum", "1.5", "manifold", "--radius",
                                      "--find", "list", "check"]), max_size=7))
def test_cli_argument_parsing_never_tracebacks(argv, capsys):
    if "stable-set" in argv and "-n" not in argv:
        argv = argv + ["-n", "3"]
    if "manifold" in argv and "--find" in argv:
        return  # a full search: covered elsewhere
    try:
        code = main(argv + ["--quiet"])
    except SystemExit as exc:  # --help / --version only
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 1, 2), code
    assert "Traceback" not in err
