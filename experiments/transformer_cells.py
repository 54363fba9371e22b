"""The byte-level Transformer cells the sweep experiments train: one recipe at one width and depth.

Shared by ``experiments.lr_transfer``, ``experiments.weight_decay_transfer`` and
``experiments.stability``: :func:`model_config` (the Transformer at a width and depth),
:func:`build_setting` (its plan, init, loss and optimizer factory) and :func:`member_record` (one
output record per sweep member). ``args`` is an ``experiments.lr_transfer.Args``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Cell",
    "Setting",
    "build_setting",
    "grid_data",
    "member_fields",
    "member_record",
    "model_config",
    "run_cell",
]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One model of the grid: a recipe (parametrization and depth rule) at one width and depth."""

    parametrization: str
    depth_rule: str
    width: int
    depth: int


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one sweep trains: a parametrization of the model at one width and depth."""

    init_params: Callable[[Any], Any]
    loss_fn: Callable[[Any, Any], Any]
    optimizer_fn: Callable[..., Any]
    apply_fn: Callable[..., Any]  # (params, tokens, **apply kwargs) -> logits, with the plan's multipliers
    plan: Any  # the paramlab.parametrization.Plan


B1, B2, SGD_MOMENTUM = 0.9, 0.95, 0.9


def model_config(args: Any, width: int, depth: int, branch_multiplier: float = 1.0, **model_options: Any):
    """The Transformer at ``d_model = width`` with ``depth`` blocks: heads ``width / d_head``,
    ``d_ff = ff_ratio * width``; ``model_options``: further ``TransformerConfig`` fields
    (``qk_layernorm``, ``unit_scaling``, ``matmul_format``, ``dtype``, ...)."""
    from paramlab.models import TransformerConfig

    fields = dict(
        d_model=width,
        n_layers=depth,
        n_heads=width // args.d_head,
        d_head=args.d_head,
        d_ff=args.ff_ratio * width,
        max_len=args.seq_len,
        attention_scale="sqrt",  # d_head is fixed across widths: 1/sqrt(d_head) is width-independent
        branch_multiplier=branch_multiplier,
        scan_layers=args.scan_layers,
    )
    return TransformerConfig(**{**fields, **model_options})


def build_setting(
    args: Any,
    cell: Cell,
    *,
    model_options: Mapping[str, Any] | None = None,
    z_loss: float = 0.0,
    stability: bool = False,
    **recipe_options: Any,
) -> Setting:
    """The model, plan and optimizer factory of one cell (recipe, width, depth).

    ``recipe_options``: further :class:`~paramlab.parametrization.Parametrization` fields (e.g.
    ``weight_decay_rule``); the optimizer factory takes ``learning_rate`` and ``weight_decay``.
    ``model_options`` are further ``TransformerConfig`` fields (:func:`model_config`), ``z_loss`` adds
    ``z_loss * mean((log Z)^2)`` to the loss, and ``stability`` adds the instability proxies of
    :func:`paramlab.diagnostics.apply_with_stability` to every step's metrics.

    The recipe comes from :func:`paramlab.parametrization.named_parametrization` with the cell's
    depth rule (``depth_alpha`` for CompleteP); the plan is inferred from the models at
    ``(base_width, base_depth)``, ``(2 base_width, 2 base_depth)`` and the cell, and the model takes
    the plan's branch multiplier. The learning rate
    follows linear warmup then cosine decay to 10% of the swept peak value; each optimizer takes what
    configures it (:func:`paramlab.optim.configuring`) of ``b1=0.9, b2=0.95``, ``eps`` and SGD
    momentum 0.9.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from paramlab.diagnostics import apply_with_stability
    from paramlab.models import Transformer, cross_entropy
    from paramlab.nn import linen as linen_adapter
    from paramlab.optim import configuring
    from paramlab.parametrization import make_plan, named_parametrization
    from paramlab.train import make_schedule

    recipe = named_parametrization(
        cell.parametrization,
        args.optimizer,
        alignment=args.alignment,
        eps_mode=args.eps_mode,
        attention_scale="sqrt",
        depth_rule=cell.depth_rule,
        depth_alpha=args.depth_alpha if cell.depth_rule == "completep" else None,
        **recipe_options,
    )
    # u-muP trains the unit-scaled model (docs/reference.md §13) unless the options say otherwise
    options = {"unit_scaling": cell.parametrization == "umup", **(model_options or {})}
    make_model = lambda size: Transformer(model_config(args, *size, **options))
    tokens = jax.ShapeDtypeStruct((1, args.seq_len), jnp.int32)
    plan = make_plan(
        make_model,
        recipe,
        base=(args.base_width, args.base_depth),
        delta=(2 * args.base_width, 2 * args.base_depth),
        target=(cell.width, cell.depth),
        inputs=(tokens,),
    )
    model = Transformer(model_config(args, cell.width, cell.depth, plan.branch_multiplier(), **options))
    apply = plan.wrap_apply(model.apply)
    probed = apply_with_stability(apply) if stability else lambda *a: (apply(*a), {})
    relative = make_schedule("cosine", 1.0, args.steps, args.warmup_steps, final_fraction=0.1)

    def init_params(rng):
        return linen_adapter.init(plan, model, rng, jnp.zeros((1, args.seq_len), jnp.int32))["params"]

    def loss_fn(params, batch):
        logits, metrics = probed({"params": params}, batch["inputs"])
        loss, aux = cross_entropy(logits, batch["targets"], z_loss=z_loss)
        return loss, {**aux, **metrics}

    def optimizer_fn(learning_rate, weight_decay=0.0):
        kwargs = configuring(args.optimizer, b1=B1, b2=B2, eps=args.eps, momentum=SGD_MOMENTUM)
        tx = plan.optimizer(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        return optax.chain(tx, optax.scale_by_schedule(relative))

    apply_fn = lambda params, x, **kwargs: apply({"params": params}, x, **kwargs)
    return Setting(init_params, loss_fn, optimizer_fn, apply_fn, plan)


def member_fields(cell: Cell, member: Mapping[str, Any]) -> dict[str, Any]:
    """The fields naming one sweep member of a cell in a per-member output record (curves,
    trajectories): recipe, depth rule, width, depth, learning rate and seed."""
    return {
        "parametrization": cell.parametrization,
        "depth_rule": cell.depth_rule,
        "width": cell.width,
        "depth": cell.depth,
        "learning_rate": float(member["learning_rate"]),
        "seed": member["seed"],
    }


def member_record(args: Any, cell: Cell, r: dict[str, Any]) -> dict[str, Any]:
    """One output record from one sweep member's record."""
    return {
        "parametrization": cell.parametrization,
        "depth_rule": cell.depth_rule,
        "optimizer": args.optimizer,
        "alignment": args.alignment,
        "width": cell.width,
        "depth": cell.depth,
        "learning_rate": r["learning_rate"],
        **{k: r[k] for k in ("seed", "final_loss", "diverged", "initial_loss", "train_loss", "eval_loss")},
        "diverged_step": r["diverged_step"],
        "steps": r["steps"],
        "eps": args.eps,
        "eps_mode": args.eps_mode,
        **{k: v for k, v in r.items() if k.startswith("alignment/")},
    }


def run_cell(
    args: Any, setting: Setting, members: list, corpus: Any, held_out: list, probe_fn: Any = None
) -> Any:
    """One cell's vmapped sweep (:func:`paramlab.sweep.run_sweep`) over ``members``: the corpus's train
    bytes in ``args.batch_size x args.seq_len`` batches (seed 0: every cell sees the same batches),
    ``args.steps`` steps, evaluated on ``held_out``."""
    from paramlab.data import BatchIterator
    from paramlab.sweep import run_sweep

    return run_sweep(
        setting.init_params,
        setting.loss_fn,
        setting.optimizer_fn,
        members,
        BatchIterator(corpus.train, seq_len=args.seq_len, batch_size=args.batch_size, seed=0),
        args.steps,
        eval_batches=lambda: held_out,
        steps_per_call=min(args.steps_per_call, args.steps),
        probe_fn=probe_fn,
        progress_bar=args.progress_bar,
    )


def grid_data(args: Any) -> tuple[Any, list, list]:
    """``(corpus, held-out batches, members)`` of a sweep grid: the corpus (``args.data`` or the embedded
    one), ``args.eval_batches`` held-out batches, and one member per learning rate and seed; creates
    ``args.out``."""
    import os

    from paramlab.data import eval_batches, load_corpus
    from paramlab.sweep import product_members

    os.makedirs(args.out, exist_ok=True)
    corpus = load_corpus(args.data or None, max_bytes=args.max_bytes)
    held_out = eval_batches(
        corpus.eval, seq_len=args.seq_len, batch_size=args.batch_size, max_batches=args.eval_batches
    )
    return corpus, held_out, product_members(seeds=tuple(range(args.seeds)), learning_rate=args.lrs)
