"""atan2_nonneg against numpy's float64 arctan2: accuracy over the whole range, special cases, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.optim.atan import atan2_nonneg

TOL = 2e-6  # the bound on |atan2_nonneg - atan2| (float64 truth)


def _max_error(y: np.ndarray, x: np.ndarray) -> float:
    got = np.asarray(jax.jit(atan2_nonneg)(y, x), np.float64)
    want = np.arctan2(np.asarray(y, np.float64), np.asarray(x, np.float64))
    assert np.all(np.isfinite(got))
    return float(np.max(np.abs(got - want)))


def test_dense_grid_float32():
    # Every angle in [-pi/2, pi/2] densely: unit-circle points plus a grid of ratios around 1.
    theta = np.linspace(-np.pi / 2, np.pi / 2, 200_001)
    y, x = np.sin(theta), np.abs(np.cos(theta))
    assert _max_error(y.astype(np.float32), x.astype(np.float32)) <= TOL
    yy, xx = np.meshgrid(np.linspace(-3, 3, 601), np.linspace(0, 3, 301))
    assert _max_error(yy.astype(np.float32), xx.astype(np.float32)) <= TOL


def test_log_uniform_magnitudes_and_signs_float32():
    rng = np.random.default_rng(0)
    n = 400_000
    y = 10.0 ** rng.uniform(-30, 30, n) * rng.choice([-1.0, 1.0], n)
    x = 10.0 ** rng.uniform(-30, 30, n)
    assert _max_error(y.astype(np.float32), x.astype(np.float32)) <= TOL
    # Ratios near 1 (both branches of the range reduction) at extreme magnitudes.
    x = np.abs(y) * 10.0 ** rng.uniform(-2, 2, n)
    assert _max_error(y.astype(np.float32), x.astype(np.float32)) <= TOL


def test_float64():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        y = 10.0 ** rng.uniform(-200, 200, 100_000) * rng.choice([-1.0, 1.0], 100_000)
        x = 10.0 ** rng.uniform(-200, 200, 100_000)
        out = atan2_nonneg(jnp.asarray(y), jnp.asarray(x))
        assert out.dtype == jnp.float64
        assert np.max(np.abs(np.asarray(out) - np.arctan2(y, x))) <= TOL


def test_bfloat16_computes_in_float32():
    y = jnp.asarray([1.0, -3.0, 0.5, 1e30, -1e-30], jnp.bfloat16)
    x = jnp.asarray([1.0, 1.0, 2.0, 1e-30, 1e30], jnp.bfloat16)
    out = atan2_nonneg(y, x)
    assert out.dtype == jnp.bfloat16
    want = np.arctan2(np.asarray(y, np.float64), np.asarray(x, np.float64))
    # Only the final rounding to bfloat16 (8 significant bits) remains; atan2(-1e-30, 1e30) underflows.
    np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=2**-8, atol=1e-38)


def test_special_cases_are_exact():
    y = jnp.asarray([0.0, -0.0, 1.0, -1.0, 1e-30, -1e30, 5.0], jnp.float32)
    x = jnp.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], jnp.float32)
    out = np.asarray(atan2_nonneg(y, x))
    half_pi = np.float32(np.pi / 2)
    np.testing.assert_array_equal(out, [0.0, 0.0, half_pi, -half_pi, half_pi, -half_pi, half_pi])
    assert not np.signbit(out[0])


def test_zero_numerator_is_zero():
    x = jnp.asarray([1e-30, 1.0, 1e30], jnp.float32)
    np.testing.assert_array_equal(np.asarray(atan2_nonneg(jnp.zeros(3), x)), np.zeros(3))


# Normal float32 numbers only: XLA flushes subnormals to zero, so those read as exact zeros.
@pytest.mark.parametrize("y", [1e-30, -1e-30, 1e30, -1e30, 3.4e38, -3.4e38, 1.2e-38])
@pytest.mark.parametrize("x", [0.0, 1.2e-38, 1e-30, 1.0, 1e30, 3.4e38])
def test_extremes_finite_and_accurate(y, x):
    out = atan2_nonneg(jnp.float32(y), jnp.float32(x))
    assert np.isfinite(out)
    assert abs(float(out) - np.arctan2(float(np.float32(y)), float(np.float32(x)))) <= TOL


def test_infinities_and_nan():
    inf = np.inf
    y = jnp.asarray([inf, -inf, 1.0, inf, np.nan, 1.0], jnp.float32)
    x = jnp.asarray([inf, inf, inf, 1.0, 1.0, np.nan], jnp.float32)
    out = np.asarray(atan2_nonneg(y, x), np.float64)
    np.testing.assert_allclose(out[:4], np.arctan2(np.asarray(y[:4]), np.asarray(x[:4])), atol=TOL)
    assert np.all(np.isnan(out[4:]))


def test_broadcasting_and_gradient_free_jit():
    y = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    x = jnp.float32(0.5)
    want = np.arctan2(np.asarray(y, np.float64), 0.5)
    np.testing.assert_allclose(np.asarray(jax.jit(atan2_nonneg)(y, x)), want, atol=TOL)


def test_branches_meet_continuously_at_equal_magnitudes():
    # |y| = x is where the range reduction switches branch (and where Adam-atan2's first step lands).
    with jax.enable_x64(True):
        x = jnp.asarray([1e-30, 1.0, 3.0, 1e30])
        at = np.asarray(atan2_nonneg(x, x))
        below = np.asarray(atan2_nonneg(x * (1 - 1e-12), x))
        above = np.asarray(atan2_nonneg(x * (1 + 1e-12), x))
    np.testing.assert_allclose(at, np.pi / 4, rtol=0, atol=1e-15)
    assert np.all(above - below < 1e-11)
    assert np.all(above >= below)


def test_coefficients_are_regenerated_by_the_committed_fit():
    """scripts/fit_atan.py (Remez exchange under P(1) = pi/4) reproduces the shipped polynomial."""
    import importlib.util
    import pathlib

    from paramlab.optim import atan

    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "fit_atan.py"
    spec = importlib.util.spec_from_file_location("fit_atan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    coefficients, max_error = module.fit()
    np.testing.assert_allclose(coefficients, atan._ATAN_COEFFS, rtol=0, atol=1e-10)
    assert max_error == pytest.approx(2.634e-7, rel=1e-3)
    assert sum(atan._ATAN_COEFFS) == pytest.approx(np.pi / 4, abs=1e-15)
