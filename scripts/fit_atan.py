r"""Fit the arctangent polynomial of ``paramlab/optim/atan.py`` (``docs/reference.md`` §4).

``atan(t) ~= t * P(t^2)`` on ``[0, 1]`` with ``P`` of degree 6, minimising the maximum absolute error
under the constraint ``P(1) = pi/4`` (exact at ``t = 1``, so the two branches of the range reduction
meet without a jump). Writing ``P(s) = pi/4 + sum_{k>=1} c_k (s^k - 1)`` builds the constraint in; the
error ``e(t) = atan(t) - t P(t^2)`` then vanishes at ``t = 0`` and ``t = 1``, and the Remez exchange
algorithm finds the ``c_k`` for which ``e`` equioscillates on 7 interior points.

Usage: ``python scripts/fit_atan.py`` prints the coefficients of ``P`` (constant term first) and the
maximum error; ``tests/optim/test_atan.py`` runs :func:`fit` and compares with the shipped ones.
"""

from __future__ import annotations

import numpy as np

DEGREE = 6  # of P in s = t^2 (an odd polynomial of degree 13 in t)
GRID = np.linspace(0.0, 1.0, 400_001)


def _basis(t: np.ndarray) -> np.ndarray:
    """``t (t^(2k) - 1)`` for ``k = 1 .. DEGREE``: the columns multiplying the free coefficients."""
    return np.stack([t * (t ** (2 * k) - 1.0) for k in range(1, DEGREE + 1)], axis=-1)


def _error(free: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.arctan(t) - np.pi / 4 * t - _basis(t) @ free


def _extrema(err: np.ndarray) -> np.ndarray:
    """Indices into :data:`GRID` of the largest |error| in each run of constant sign (interior)."""
    sign = np.sign(err)
    runs = np.split(np.arange(1, len(err) - 1), np.nonzero(np.diff(sign[1:-1]))[0] + 1)
    return np.array([run[np.argmax(np.abs(err[run]))] for run in runs if len(run)])


def fit(iterations: int = 30) -> tuple[np.ndarray, float]:
    """``(coefficients of P, constant term first; max |error| on the grid)``."""
    n = DEGREE + 1  # reference points: DEGREE coefficients and the levelled error E
    points = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)  # Chebyshev nodes in (0, 1)
    for _ in range(iterations):
        system = np.concatenate([_basis(points), ((-1.0) ** np.arange(n))[:, None]], axis=1)
        solution = np.linalg.solve(system, np.arctan(points) - np.pi / 4 * points)
        free = solution[:-1]
        err = _error(free, GRID)
        peaks = _extrema(err)
        if len(peaks) < n:
            break
        while len(peaks) > n:  # drop the smaller end until exactly n alternating peaks remain
            peaks = peaks[1:] if abs(err[peaks[0]]) < abs(err[peaks[-1]]) else peaks[:-1]
        points = GRID[peaks]
    coefficients = np.concatenate([[np.pi / 4 - free.sum()], free])
    return coefficients, float(np.max(np.abs(_error(free, GRID))))


if __name__ == "__main__":
    coefficients, max_error = fit()
    for c in coefficients:
        print(repr(float(c)))
    print(f"max |atan(t) - t P(t^2)| on [0, 1]: {max_error:.4g}")
