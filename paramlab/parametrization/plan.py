"""A parametrization applied to a model: per-parameter init, forward multiplier, LR, epsilon, decay.

:class:`Plan` joins a :class:`~paramlab.parametrization.Parametrization` with a model's specs
(:func:`~paramlab.parametrization.infer_spec`); :mod:`.scales` computes every parameter's factors.
At the base width and depth every factor is exactly 1.0, so any parametrization reproduces the base
model bit for bit. The plan applies its factors (init, forward,
per-leaf trees); the optimizers are :mod:`paramlab.optim`'s, fed those trees.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax
from flax.core import FrozenDict

from paramlab import optim
from paramlab.optim.common import flatten_with_paths, is_absent, path_str
from paramlab.parametrization.recipe import Parametrization
from paramlab.parametrization.scales import ParamScales, compute_scales
from paramlab.parametrization.spec import FIXED, ParamSpec
from paramlab.parametrization.tables import Exponent, depth_factor

__all__ = ["ParamScales", "Plan"]

_JSON_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)


@dataclasses.dataclass(frozen=True, repr=False)
class Plan:
    """A :class:`Parametrization` applied to ``specs`` (``{path: ParamSpec}``); ``scales`` computed.

    Build it with :func:`paramlab.parametrization.make_plan` or from :func:`infer_spec`'s output.
    Its methods take any pytree with the specs' leaf paths (Linen dicts, ``FrozenDict``,
    ``nnx.State``), or a Linen variables dict holding the parameters under ``"params"``.
    """

    specs: Mapping[str, ParamSpec]
    parametrization: Parametrization
    scales: Mapping[str, ParamScales] = dataclasses.field(init=False)

    def __post_init__(self):
        specs = self.specs
        if not isinstance(specs, Mapping):
            specs = {spec.path: spec for spec in specs}
        specs = dict(specs)
        for path, spec in specs.items():
            if not isinstance(spec, ParamSpec) or spec.path != path:
                raise ValueError(f"Plan: specs[{path!r}] must be a ParamSpec with that path, got {spec!r}.")
        if not specs:
            raise ValueError("Plan: no parameters.")
        if not isinstance(self.parametrization, Parametrization):
            raise ValueError(
                f"Plan: parametrization must be a Parametrization, got {self.parametrization!r}."
            )
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "scales", compute_scales(specs, self.parametrization))

    def __repr__(self) -> str:
        p = self.parametrization
        return f"Plan({p.name}, {p.optimizer}, alignment={p.alignment!r}, {len(self.specs)} parameters)"

    # ---- per-parameter trees -------------------------------------------------------------------

    def values(self, field: str) -> dict[str, float]:
        """``{path: value}`` of one :class:`ParamScales` field."""
        if field not in {f.name for f in dataclasses.fields(ParamScales)}:
            raise ValueError(f"unknown plan field {field!r}.")
        return {path: getattr(s, field) for path, s in self.scales.items()}

    def tree(self, field: str, like: Any) -> Any:
        """A tree shaped like ``like`` (parameters, gradients) holding ``field``'s scalars.

        A leaf whose shape is not its spec's is an error naming it (the plan belongs to another model).
        """
        values = self.values(field)
        return self._map(like, self._shape_checked(lambda path, leaf: values[path]))

    def fan_axes(self, like: Any) -> Any:
        """A tree of :class:`~paramlab.optim.FanAxes` shaped like ``like`` (from the specs)."""
        axes = lambda path, leaf: self.specs[path].fan_axes
        return self._map(like, self._shape_checked(axes))

    def roles(self, like: Any) -> Any:
        """A tree of role names shaped like ``like`` (for per-role metrics)."""
        return self._map(like, lambda path, leaf: self.specs[path].role)

    # ---- init and forward ----------------------------------------------------------------------

    def rescale_init(self, params: Any) -> Any:
        """The parametrization's initial parameters from the model's own init: ``s_l * p_l``."""
        scales = self.values("init")
        return self._on_params(params, lambda path, p: _scale(p, scales[path]))

    def effective_params(self, params: Any) -> Any:
        """The weights the forward pass uses: ``m_l * p_l`` (factors of exactly 1 are skipped)."""
        mults = self.values("multiplier")
        return self._on_params(params, lambda path, p: _scale(p, mults[path]))

    def wrap_apply(self, apply_fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(params_or_variables, *args, **kwargs) = apply_fn(effective, *args, **kwargs)``.

        Works for ``linen_module.apply`` (variables with a ``"params"`` collection, other collections
        passed through) and any function whose first argument is the parameter tree.
        """

        def apply(tree: Any, *args: Any, **kwargs: Any) -> Any:
            return apply_fn(self.effective_params(tree), *args, **kwargs)

        return apply

    def tied_readout_multiplier(self, path: str) -> float:
        """The logits factor for a readout that reuses the embedding table at ``path``.

        The table keeps the embedding rule (scale ``n^{-(a_e + b_e)}``); an untied readout would have
        the scale ``n^{-(a_R + b_R)}`` on its fan-in (the table's fan-out) and the readout constant
        ``M_readout``, so the logits are multiplied by ``M_readout * mu^{-(a_R + b_R - a_e - b_e)}``
        (``1 / width_mult`` under muP, ``mup``'s ``MuSharedReadout``).
        """
        if path not in self.specs:
            raise ValueError(f"tied_readout_multiplier: no parameter {path!r}.")
        spec = self.specs[path]
        if spec.role != "embedding" or spec.is_vector:
            raise ValueError(f"tied_readout_multiplier: {path} is not an embedding table (role {spec.role}).")
        ex = self.parametrization.exponents()
        readout_scale = (ex["readout"].multiplier + ex["readout"].init).total
        table_scale = (ex["embedding"].multiplier + ex["embedding"].init).total
        constant = self.parametrization.multipliers.get("readout", 1.0)
        return constant * Exponent(0.0, readout_scale - table_scale).factor(1.0, spec.fan_out_mult)

    def depth_mult(self, block: str | None = None) -> float:
        """``r_L = L / L0`` of the residual blocks (of group ``block`` if the model has several)."""
        ratios = {s.block: s.depth_mult for s in self.specs.values() if s.block is not None}
        if block is not None:
            if block not in ratios:
                raise ValueError(
                    f"depth_mult: no residual block group {block!r}; the plan has {sorted(ratios)}."
                )
            return ratios[block]
        if len(set(ratios.values())) > 1:
            raise ValueError(f"the plan's block groups have different depth ratios {ratios}; name one.")
        return next(iter(ratios.values()), 1.0)

    def _single_depth(self) -> bool:
        return len({s.depth_mult for s in self.specs.values() if s.block is not None}) <= 1

    def branch_multiplier(self, block: str | None = None) -> float:
        """The residual branch multiplier ``m_L = r_L^(-alpha)`` the model applies (``h += m_L f(h)``).

        Exactly 1.0 at the base depth and for ``depth_rule="none"``; read it when building the
        model, e.g. ``TransformerConfig(branch_multiplier=plan.branch_multiplier())``.
        """
        return depth_factor(self.depth_mult(block), self.parametrization.depth_exponents().branch)

    @property
    def attention_scale(self) -> str:
        """``"sqrt"`` or ``"linear"``: the attention scale the model should use."""
        return self.parametrization.resolved_attention_scale

    # ---- optimizers ----------------------------------------------------------------------------

    def lr_scaling(self) -> optax.GradientTransformation:
        """Multiply each update by its parameter's LR factor ``lr_l``.

        Chain it after any preconditioner and before the learning rate, e.g.
        ``optax.chain(optax.scale_by_lion(), plan.lr_scaling(), optax.scale_by_learning_rate(lr))``.
        """
        return optim.scale_by_tree(functools.partial(self.tree, "lr"))

    def optimizer_scales(self) -> dict[str, Any]:
        """The per-leaf arguments of :func:`paramlab.optim.optimizer` for this plan.

        ``lr_scales``, ``weight_decay_scales``, ``fan_axes`` and (``eps_mode="per_layer"``, or
        ``absorb_multipliers`` with a multiplier to fold) ``eps_scales`` as functions
        ``tree -> per-leaf tree``, and the ``weight_decay_mode``.
        """
        scales = dict(
            lr_scales=functools.partial(self.tree, "lr"),
            weight_decay_scales=functools.partial(self.tree, "weight_decay"),
            weight_decay_mode=self.parametrization.weight_decay_mode,
            fan_axes=self.fan_axes,
        )
        p = self.parametrization
        if p.eps_mode == "per_layer" or any(s.eps != 1.0 for s in self.scales.values()):
            scales["eps_scales"] = functools.partial(self.tree, "eps")
        return scales

    def optimizer(
        self,
        base: str | None = None,
        learning_rate: optax.ScalarOrSchedule | None = None,
        *,
        b1: float | None = None,
        b2: float | None = None,
        eps: float = 1e-8,
        eps_root: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        mu_dtype: Any = None,
        base_kwargs: Mapping[str, Any] | None = None,
    ) -> optax.GradientTransformation:
        """:func:`paramlab.optim.optimizer` with this plan's per-parameter LR, epsilon and decay.

        ``base`` defaults to the parametrization's optimizer; another name must be of the same
        LR-exponent family. The other arguments are :func:`paramlab.optim.optimizer`'s;
        ``base_kwargs`` are the optimizer's own (e.g. ``{"a": 1.0}`` for Adam-atan2). Works under
        ``optax.inject_hyperparams(plan.optimizer, static_args="base")``.
        """
        base = self.parametrization.optimizer if base is None else base
        if learning_rate is None:
            raise ValueError("Plan.optimizer: learning_rate is required.")
        base_kwargs = dict(base_kwargs or {})
        if "fan_axes" in base_kwargs:
            raise ValueError("base_kwargs: fan_axes come from the plan's specs; do not pass them.")
        family = optim.family_of(base)
        if family != self.parametrization.family:
            raise ValueError(
                f"base optimizer {base!r} follows the {family!r} LR exponents but this plan was built for "
                f"{self.parametrization.optimizer!r} ({self.parametrization.family!r}); build the "
                f"Parametrization with optimizer={base!r}."
            )
        return optim.optimizer(
            base,
            learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            mu_dtype=mu_dtype,
            **self.optimizer_scales(),
            **base_kwargs,
        )

    # ---- serialization and display -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (specs and parametrization); :meth:`from_json` rebuilds an equal plan."""
        return {
            "version": _JSON_VERSION,
            "parametrization": self.parametrization.to_json(),
            "specs": [spec.to_json() for spec in self.specs.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Plan:
        """Inverse of :meth:`to_json` (also accepts the ``json.dumps`` string)."""
        if isinstance(data, str):
            data = json.loads(data)
        if data.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"Plan.from_json: unsupported version {data.get('version')!r}.")
        specs = [ParamSpec.from_json(s) for s in data["specs"]]
        return cls({s.path: s for s in specs}, Parametrization.from_json(data["parametrization"]))

    def describe(self) -> str:
        """A text table: path, shape, role, fan multipliers and every scale factor."""
        header = ("path", "shape", "role", "mu_in", "mu_out", "r_L", "mult", "init", "lr", "eps", "wd")
        rows = [header]
        for path, spec in self.specs.items():
            s = self.scales[path]
            rows.append(
                (
                    path,
                    "x".join(map(str, spec.shape)) or "()",
                    spec.role + (" (vector)" if spec.is_vector and spec.role != FIXED else ""),
                    *(f"{v:.4g}" for v in (spec.fan_in_mult, spec.fan_out_mult, spec.depth_mult)),
                    *(f"{v:.4g}" for v in (s.multiplier, s.init, s.lr, s.eps, s.weight_decay)),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        p = self.parametrization
        title = (
            f"{p.name} / {p.optimizer} / alignment={p.alignment} / lr_mode={p.lr_mode} / "
            f"eps_mode={p.eps_mode} / weight_decay_mode={p.weight_decay_mode} / "
            f"weight_decay_rule={p.weight_decay_rule} / "
            f"attention_scale={p.resolved_attention_scale}"
        )
        if p.depth_rule != "none":
            title += f" / depth_rule={p.depth_rule} (alpha={p.resolved_depth_alpha:g}, branch multiplier"
            title += f" {self.branch_multiplier():.4g})" if self._single_depth() else "s per block group)"
        lines = [title] + ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines)

    # ---- tree plumbing -------------------------------------------------------------------------

    def _map(self, tree: Any, fn: Callable[[str, Any], Any]) -> Any:
        """``fn(path, leaf)`` over a tree whose paths must be exactly the specs'.

        Absent leaves (``None``, and the ``optax.MaskedNode`` that ``optax.masked`` / ``optax.partition``
        put in place of the parameters another transformation handles) are kept as they are.
        """
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_absent)
        paths = [path_str(p) for p, _ in leaves]
        present = set(paths)
        missing = [p for p in self.specs if p not in present]
        extra = [p for p in paths if p not in self.specs]
        if missing or extra:
            raise ValueError(
                f"the tree does not match the plan's parameters: missing {missing[:5]}, unknown {extra[:5]}."
            )
        mapped = [leaf if is_absent(leaf) else fn(p, leaf) for p, (_, leaf) in zip(paths, leaves)]
        return jax.tree_util.tree_unflatten(treedef, mapped)

    def _on_params(self, tree: Any, fn: Callable[[str, Any], Any]) -> Any:
        """Apply ``fn(path, param)`` to a params tree, or to the ``"params"`` of a Linen variables dict."""
        if not self._matches(tree) and isinstance(tree, Mapping) and "params" in tree:
            new = self._on_params(tree["params"], fn)
            return tree.copy({"params": new}) if isinstance(tree, FrozenDict) else {**tree, "params": new}

        return self._map(tree, self._shape_checked(fn, require_shape=True))

    def _shape_checked(self, fn: Callable[[str, Any], Any], require_shape: bool = False) -> Callable:
        """``fn`` behind a check that the leaf has its spec's shape (leaves without one pass, unless
        ``require_shape``)."""

        def checked(path: str, leaf: Any) -> Any:
            if require_shape or hasattr(leaf, "shape"):
                shape = tuple(getattr(leaf, "shape", ()))
                if shape != self.specs[path].shape:
                    raise ValueError(
                        f"parameter {path} has shape {shape} but the plan's spec says "
                        f"{self.specs[path].shape}."
                    )
            return fn(path, leaf)

        return checked

    def _matches(self, tree: Any) -> bool:
        pairs = flatten_with_paths(tree)
        return len(pairs) == len(self.specs) and all(path in self.specs for path, _ in pairs)


def _scale(x: Any, factor: float) -> Any:
    return x if factor == 1.0 else (x * factor).astype(x.dtype)
