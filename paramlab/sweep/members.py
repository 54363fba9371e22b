"""A sweep's members: hyperparameter values and a seed per member, checked before anything compiles.

Specified in ``docs/training.md`` §8.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["check_members", "member_seed", "product_members"]


def product_members(seeds: Sequence[int] = (0,), **hyperparameters: Sequence[float]) -> list[dict[str, Any]]:
    """The Cartesian product of hyperparameter values and seeds, as member dicts.

    ``product_members(seeds=(0, 1), learning_rate=(1e-3, 2e-3))`` gives four members, the seed
    varying fastest: ``{"learning_rate": 1e-3, "seed": 0}``, ``{"learning_rate": 1e-3, "seed": 1}``, ...
    """
    names = list(hyperparameters)
    for name, values in hyperparameters.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or not list(values):
            raise ValueError(f"hyperparameter {name!r} needs a non-empty sequence of values, got {values!r}.")
    if not list(seeds):
        raise ValueError("seeds must be a non-empty sequence of integers.")
    return [
        {**dict(zip(names, combo[:-1])), "seed": int(combo[-1])}
        for combo in itertools.product(*(hyperparameters[n] for n in names), seeds)
    ]


def hyperparameter_names(optimizer_fn: Callable[..., Any], members: Sequence[Mapping[str, Any]]) -> list[str]:
    """The swept names (member keys except ``seed``), checked against ``optimizer_fn``'s signature."""
    if not members:
        raise ValueError("members is empty: a sweep needs at least one setting.")
    names = [k for k in members[0] if k != "seed"]
    for i, member in enumerate(members):
        if sorted(k for k in member if k != "seed") != sorted(names):
            raise ValueError(f"members[{i}] has keys {sorted(member)}, members[0] has {sorted(members[0])}.")
        for name in names:
            value = member[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"members[{i}][{name!r}] must be a number, got {value!r}.")
    accepted = inspect.signature(optimizer_fn).parameters
    unknown = [n for n in names if n not in accepted]
    if unknown:
        raise ValueError(
            f"members name hyperparameters {unknown} that optimizer_fn does not take ({list(accepted)})."
        )
    return names


def _check_member_values(
    optimizer_fn: Callable[..., Any], members: Sequence[Mapping[str, Any]], names: list[str]
) -> None:
    """Build each distinct member's optimizer from its Python numbers, so that the optimizer's own
    checks (a NaN or negative learning rate, a decay outside its range, ...) name the member and the
    argument; inside the compiled sweep the same values are traced and cannot be checked."""
    seen = set()
    for i, member in enumerate(members):
        values = tuple(float(member[n]) for n in names)
        if values in seen:
            continue
        seen.add(values)
        try:
            optimizer_fn(**dict(zip(names, values)))
        except ValueError as error:
            raise ValueError(f"members[{i}] ({dict(zip(names, values))}): {error}") from error


def member_seed(member: Mapping[str, Any]) -> int:
    seed = member.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"a member's seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def check_members(optimizer_fn: Callable[..., Any], members: Sequence[Mapping[str, Any]]) -> list[str]:
    """The swept hyperparameter names, after checking every member's keys, values and seed."""
    names = hyperparameter_names(optimizer_fn, members)
    _check_member_values(optimizer_fn, members, names)
    for member in members:
        member_seed(member)
    return names
