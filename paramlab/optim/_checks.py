"""Argument checks shared by paramlab's optimizers: clear ``ValueError`` s naming the argument."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def check_in_unit_interval(value: Any, name: str) -> None:
    """Require ``0 <= value < 1`` for concrete values (traced values, e.g. under inject_hyperparams, pass)."""
    if _is_concrete(value) and not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def check_positive(value: Any, name: str) -> None:
    """Require ``value > 0`` for concrete values."""
    if _is_concrete(value) and not float(value) > 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")


def check_non_negative(value: Any, name: str) -> None:
    """Require ``value >= 0`` for concrete values."""
    if _is_concrete(value) and not float(value) >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")


def _is_concrete(value: Any) -> bool:
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return not isinstance(value, jax.core.Tracer)
    return False


def check_scalar_tree(tree: Any, params: Any, name: str, non_negative: bool = False) -> None:
    """Check that ``tree`` has the structure of ``params`` with scalar leaves.

    Raises a ``ValueError`` naming the first parameter path whose entry is missing, extra or not a
    scalar, or (with ``non_negative``) negative.
    """
    param_paths = {jax.tree_util.keystr(p): leaf for p, leaf in _leaves_with_paths(params)}
    tree_paths = {jax.tree_util.keystr(p): leaf for p, leaf in _leaves_with_paths(tree)}
    missing = sorted(set(param_paths) - set(tree_paths))
    extra = sorted(set(tree_paths) - set(param_paths))
    if missing or extra:
        raise ValueError(
            f"{name} does not match the parameters: missing entries for {missing[:5]}, "
            f"entries for unknown parameters {extra[:5]}."
        )
    for path, leaf in tree_paths.items():
        if np.ndim(leaf) != 0:
            raise ValueError(
                f"{name}{path} must be a scalar, got shape {np.shape(leaf)} "
                f"(parameter shape {np.shape(param_paths[path])})."
            )
        if non_negative:
            check_non_negative(leaf, f"{name}{path}")


def _leaves_with_paths(tree: Any):
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
