"""Argument checks and pytree helpers shared by every paramlab package (jax, numpy and optax only).

Every check raises a one-line ``ValueError`` naming the argument or parameter path at fault. Checks
of numbers skip traced values (``optax.inject_hyperparams`` passes hyperparameters as tracers), so a
transformation validates what it can see at construction time and stays jittable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "check_choice",
    "check_float_params",
    "check_fraction",
    "check_in_unit_interval",
    "check_learning_rate",
    "check_non_negative",
    "check_positive",
    "check_same_paths",
    "check_scalar_tree",
    "check_updates_match",
    "check_widths",
    "flatten_with_paths",
    "is_absent",
    "is_shared_scalar",
    "path_str",
    "per_leaf_tree",
    "resolve_per_leaf",
    "sort_key",
    "strict_json",
    "tree_all_finite",
]


def check_choice(value: Any, choices: Iterable[str], name: str) -> None:
    """Require ``value in choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")


def _is_concrete(value: Any) -> bool:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return True
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return not isinstance(value, jax.core.Tracer)
    return False


def _check(value: Any, name: str, ok: Callable[[float], bool], bound: str) -> None:
    if _is_concrete(value) and not ok(float(value)):
        raise ValueError(f"{name} must be {bound}, got {value!r}.")


def check_in_unit_interval(value: Any, name: str) -> None:
    """Require ``0 <= value < 1`` for concrete values (NaN fails every check)."""
    _check(value, name, lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def check_fraction(value: Any, name: str) -> None:
    """Require ``0 <= value <= 1`` for concrete values (NaN fails)."""
    _check(value, name, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def check_positive(value: Any, name: str) -> None:
    """Require a finite ``value > 0`` for concrete values."""
    _check(value, name, lambda v: math.isfinite(v) and v > 0.0, "> 0 and finite")


def check_non_negative(value: Any, name: str) -> None:
    """Require a finite ``value >= 0`` for concrete values."""
    _check(value, name, lambda v: math.isfinite(v) and v >= 0.0, ">= 0 and finite")


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
    """A schedule (any callable), or a finite number ``>= 0``."""
    if not callable(value):
        if not _is_concrete(value) and not isinstance(value, jax.core.Tracer):
            raise ValueError(f"{name} must be a number or an optax schedule, got {value!r}.")
        check_non_negative(value, name)


def check_updates_match(updates: Any, params: Any) -> None:
    """Require updates with the parameters' paths and shapes, naming the leaf that differs.

    A trace-time check (shapes are static), so it costs nothing inside ``jit``.
    """
    wanted = dict(flatten_with_paths(params, "params", is_leaf=is_absent))
    given = dict(flatten_with_paths(updates, "updates", is_leaf=is_absent))
    check_same_paths(given, wanted, "the updates")
    for path, p in wanted.items():
        if is_absent(p) or is_absent(given[path]):
            continue
        if np.shape(given[path]) != np.shape(p):
            raise ValueError(f"update {path} has shape {np.shape(given[path])}, its parameter {np.shape(p)}.")


def check_float_params(params: Any) -> None:
    """Refuse integer or boolean parameters: their updates would silently round to zero."""
    for path, p in flatten_with_paths(params, "params", is_leaf=is_absent):
        if not is_absent(p) and not jnp.issubdtype(jnp.result_type(p), jnp.inexact):
            raise ValueError(
                f"parameter {path} has dtype {jnp.result_type(p)}; optimizers need float parameters."
            )


def check_widths(widths: Sequence[int], name: str = "widths") -> list[int]:
    """Distinct positive integers, as a list of Python ints."""
    widths = list(widths)
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1]
    if not widths or bad or len(set(widths)) != len(widths):
        raise ValueError(f"{name} must be distinct positive integers, got {widths!r}.")
    return [int(w) for w in widths]


def is_absent(x: Any) -> bool:
    """``None`` and the ``optax.MaskedNode`` that ``optax.masked`` / ``optax.partition`` leave."""
    return x is None or isinstance(x, optax.MaskedNode)


def is_shared_scalar(value: Any) -> bool:
    """One scalar for every leaf (a Python number, 0-d array or tracer) rather than a per-leaf tree."""
    if isinstance(value, (int, float, np.number)):
        return True
    return isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0


def resolve_per_leaf(value: Any, like: Any) -> Any:
    """A per-leaf argument given as a tree or as ``params -> tree`` (optax's ``mask`` idiom)."""
    return value(like) if callable(value) else value


def per_leaf_tree(value: Any, like: Any) -> Any:
    """A per-leaf argument as a tree shaped like ``like``: a shared scalar is broadcast, a
    ``params -> tree`` function is called on ``like``, a tree is returned unchanged."""
    if is_shared_scalar(value):
        return jax.tree.map(lambda _: value, like)
    return resolve_per_leaf(value, like)


def path_str(keypath: Sequence[Any]) -> str:
    """``"a/b/0/c"`` from a JAX key path (dict keys, attributes, sequence indices).

    A trailing ``.value`` attribute (an ``nnx.Variable``'s or a Linen metadata box's) is dropped, so
    boxed and unboxed Linen trees, NNX states and flat dicts keyed by such strings name a parameter
    alike.
    """
    keys = list(keypath)
    while keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    parts = []
    for key in keys:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def flatten_with_paths(tree: Any, what: str = "tree", is_leaf: Any = None) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` in flatten order; ``ValueError`` if two leaves share a path."""
    pairs = [(path_str(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]]
    seen: set[str] = set()
    for path, _ in pairs:
        if path in seen:
            raise ValueError(f"{what}: two leaves have the same path {path!r}.")
        seen.add(path)
    return pairs


def check_same_paths(given: Iterable[str], wanted: Iterable[str], name: str) -> None:
    """Require a per-leaf argument's paths ``given`` to be the parameters' paths ``wanted``."""
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        raise ValueError(
            f"{name} does not match the parameters: missing entries for {missing[:5]}, "
            f"entries for unknown parameters {extra[:5]}."
        )


def check_scalar_tree(tree: Any, params: Any, name: str, non_negative: bool = False) -> None:
    """Require ``tree`` to have the structure of ``params`` with scalar leaves (``>= 0`` if asked).

    The ``ValueError`` names the first parameter path whose entry is missing, extra, not a scalar or
    negative.
    """
    flat = lambda t: jax.tree_util.tree_flatten_with_path(t, is_leaf=lambda x: x is None)[0]
    param_paths = {jax.tree_util.keystr(p): leaf for p, leaf in flat(params)}
    tree_paths = {jax.tree_util.keystr(p): leaf for p, leaf in flat(tree)}
    check_same_paths(tree_paths, param_paths, name)
    for path, leaf in tree_paths.items():
        if np.ndim(leaf) != 0:
            raise ValueError(
                f"{name}{path} must be a scalar, got shape {np.shape(leaf)} "
                f"(parameter shape {np.shape(param_paths[path])})."
            )
        if non_negative:
            check_non_negative(leaf, f"{name}{path}")
        else:
            _check(leaf, f"{name}{path}", math.isfinite, "finite")


def tree_all_finite(tree: Any) -> jax.Array:
    """A boolean scalar: every floating-point leaf of ``tree`` is finite (integer leaves ignored)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def sort_key(key: tuple) -> tuple:
    """A sort key for tuples mixing numbers and strings: numbers first, in numeric order."""
    return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in key)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (``nan``, ``inf``) replaced by ``None``: valid JSON
    (RFC 8259 has no ``NaN`` / ``Infinity``); the readers of paramlab's files take ``None`` as
    "no finite value" (e.g. a diverged run's loss)."""
    if isinstance(value, Mapping):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    return value
