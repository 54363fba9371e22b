"""Per-parameter scaling primitives driven by a parametrization.

A parametrization (see :mod:`paramlab.parametrization`) produces, for every parameter, a learning-rate
multiplier, an Adam epsilon and a weight-decay rate. These transformations apply such per-leaf scalars
inside an ordinary ``optax.chain``:

* :func:`scale_by_tree` multiplies each update leaf by its own scalar: ``u_l <- s_l * u_l``.
* :func:`scale_by_adam_per_param_eps` is Adam's preconditioner with a per-leaf epsilon ``eps_l``:
  ``u_l = m_hat_l / (sqrt(v_hat_l + eps_root) + eps_l)`` (Kingma & Ba, 2015; per-layer epsilon from
  Everett et al., 2024, section on epsilon underflow).
* :func:`add_decayed_weights_per_param` adds ``wd_l * param_l`` to the update. Placed *before* the
  learning-rate scaling it gives the AdamW convention (decay multiplied by the learning rate,
  Loshchilov & Hutter, 2019).
* :func:`decay_weights_independent_of_lr` subtracts ``wd_l * param_l`` from the final update. Placed
  *after* the learning-rate scaling it gives the "independent" convention (decay not multiplied by the
  learning rate), which keeps the equilibrium norm fixed when the learning rate is swept.

The scalar trees must have the same structure as the parameters; a mismatch is a ``ValueError``
naming the first path that differs. Each may also be given as a function ``params -> tree`` (optax's
``mask`` idiom), called on the tree the transformation sees, so one optimizer serves any layout of
the same parameters (e.g. inside ``optax.partition``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramlab.optim.common import (
    check_float_params,
    check_in_unit_interval,
    check_learning_rate,
    check_non_negative,
    check_scalar_tree,
    is_absent,
    is_shared_scalar,
    per_leaf_tree,
)

__all__ = [
    "add_decayed_weights_per_param",
    "adam_per_param_eps",
    "decay_weights_independent_of_lr",
    "scale_by_adam_per_param_eps",
    "scale_by_tree",
]


def _scalar_tree_map(fn, scalars: Any, updates: Any, *rest: Any) -> Any:
    """Map ``fn(scalar, update, *rest)`` over updates, passing ``None``/masked updates through unchanged."""
    return jax.tree.map(
        lambda u, s, *r: u if is_absent(u) else fn(s, u, *r),
        updates,
        scalars,
        *rest,
        is_leaf=is_absent,
    )


def _hide_masked(tree: Any, params: Any) -> Any:
    """Replace the entries of ``tree`` under parameters hidden by ``optax.masked``/``optax.partition``.

    Those wrappers hand the inner transformation params with ``optax.MaskedNode`` in place of the
    parameters (or subtrees) it does not own; a scalar tree written for the full parameters then has
    entries for them, which are dropped here before the structure check.
    """
    flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_absent)[0]
    hidden = [path for path, leaf in flat if isinstance(leaf, optax.MaskedNode)]
    if not hidden:
        return tree
    return jax.tree_util.tree_map_with_path(
        lambda path, s: optax.MaskedNode() if any(path[: len(h)] == h for h in hidden) else s, tree
    )


def scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
    """Multiply each update leaf by its own scalar: ``u_l <- s_l * u_l``.

    Args:
      multipliers: a pytree with the parameters' structure whose leaves are Python floats or 0-d
        arrays (for instance a plan's learning-rate multipliers ``(n/n0)^(-c_l)``).

    Returns:
      A stateless ``optax.GradientTransformation``.
    """

    def init_fn(params):
        check_scalar_tree(
            _hide_masked(per_leaf_tree(multipliers, params), params), params, "multipliers", non_negative=True
        )
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        scaled = _scalar_tree_map(
            lambda s, u: (s * u).astype(u.dtype), per_leaf_tree(multipliers, updates), updates
        )
        return scaled, state

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByAdamPerParamEpsState(NamedTuple):
    """State of :func:`scale_by_adam_per_param_eps`: step count and the two moment EMAs."""

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adam_per_param_eps(
    eps: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Adam's preconditioner with a per-parameter epsilon.

    ``m_t = b1 m + (1-b1) g``, ``v_t = b2 v + (1-b2) g^2``, bias-corrected ``m_hat``, ``v_hat``, and
    ``u_l = m_hat_l / (sqrt(v_hat_l + eps_root) + eps_l)``. With every ``eps_l`` equal this is exactly
    ``optax.scale_by_adam``.

    Args:
      eps: a float (shared) or a pytree of non-negative scalars matching the parameters, e.g.
        ``eps_0 * (n/n0)^(-g_l)`` so that epsilon tracks the gradient scale of each layer.
      b1: first-moment decay, in [0, 1).
      b2: second-moment decay, in [0, 1).
      eps_root: added inside the square root (as in optax).
      mu_dtype: optional dtype of the first moment.
    """
    check_in_unit_interval(b1, "b1")
    check_in_unit_interval(b2, "b2")
    check_non_negative(eps_root, "eps_root")
    if is_shared_scalar(eps):
        check_non_negative(eps, "eps")
    mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

    def init_fn(params):
        check_float_params(params)
        if not is_shared_scalar(eps):
            check_scalar_tree(
                _hide_masked(per_leaf_tree(eps, params), params), params, "eps", non_negative=True
            )
        mu = optax.tree.zeros_like(params, dtype=mu_dtype)
        nu = optax.tree.zeros_like(params)
        return ScaleByAdamPerParamEpsState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        eps_tree = per_leaf_tree(eps, updates)
        new_updates = _scalar_tree_map(
            lambda e, m, v: (m / (jnp.sqrt(v + eps_root) + e)).astype(m.dtype),
            eps_tree,
            mu_hat,
            nu_hat,
        )
        mu = optax.tree.cast(mu, mu_dtype)
        return new_updates, ScaleByAdamPerParamEpsState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_per_param_eps(
    learning_rate: optax.ScalarOrSchedule,
    eps: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformation:
    """Adam with a per-parameter epsilon: :func:`scale_by_adam_per_param_eps` then ``-learning_rate``."""
    check_learning_rate(learning_rate)
    return optax.chain(
        scale_by_adam_per_param_eps(eps, b1=b1, b2=b2, eps_root=eps_root, mu_dtype=mu_dtype),
        optax.scale_by_learning_rate(learning_rate),
    )


def add_decayed_weights_per_param(rates: Any) -> optax.GradientTransformation:
    """Add ``wd_l * param_l`` to each update leaf (per-leaf weight-decay rates).

    Place it before ``optax.scale_by_learning_rate`` for the AdamW convention in which the decay is
    multiplied by the (scheduled) learning rate: ``p <- p - lr * (u + wd_l * p)``.

    Args:
      rates: a float or a pytree of non-negative scalars matching the parameters.
    """

    return _weight_decay(rates, sign=1.0, name="add_decayed_weights_per_param")


def decay_weights_independent_of_lr(rates: Any) -> optax.GradientTransformation:
    """Subtract ``wd_l * param_l`` from each (final) update leaf: decay independent of the LR.

    Place it after ``optax.scale_by_learning_rate``: ``p <- p - lr * u - wd_l * p``. Sweeping the
    learning rate then leaves the per-step shrink factor ``(1 - wd_l)`` unchanged.

    Args:
      rates: a float or a pytree of non-negative scalars matching the parameters.
    """

    return _weight_decay(rates, sign=-1.0, name="decay_weights_independent_of_lr")


def _weight_decay(rates: Any, sign: float, name: str) -> optax.GradientTransformation:
    """``u_l <- u_l + sign * wd_l * param_l``, the shared body of both weight-decay conventions."""

    def init_fn(params):
        _check_rates(rates, params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(f"{name} needs params: pass params to update().")
        rate_tree = per_leaf_tree(rates, updates)
        new = _scalar_tree_map(lambda r, u, p: (u + sign * r * p).astype(u.dtype), rate_tree, updates, params)
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)


def _check_rates(rates: Any, params: Any) -> None:
    if is_shared_scalar(rates):
        check_non_negative(rates, "rates")
    else:
        check_scalar_tree(
            _hide_masked(per_leaf_tree(rates, params), params), params, "rates", non_negative=True
        )
