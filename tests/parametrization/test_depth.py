"""Depth rules (docs/reference.md §7): factors against CompleteP's Table 1 worked by hand, the base
depth reproducing the width-only rules, unrolled and stacked blocks inferred alike, and clear errors."""

import jax
import numpy as np
import pytest

from paramlab.optim import FanAxes
from paramlab.parametrization import Parametrization, Plan, infer_spec

S = jax.ShapeDtypeStruct


def unrolled(width: int, depth: int) -> tuple[dict, dict]:
    """Shapes and fan axes of a pre-norm residual MLP: embed, blocks (norm gain, two matrices), readout."""
    tree = {"embed": {"kernel": S((5, width), float)}, "readout": {"kernel": S((width, 3), float)}}
    fan = {"embed": {"kernel": None}, "readout": {"kernel": None}}
    for i in range(depth):
        tree[f"block_{i}"] = {
            "norm": {"scale": S((width,), float)},
            "fc_in": {"kernel": S((width, 2 * width), float)},
            "fc_out": {"kernel": S((2 * width, width), float)},
        }
        fan[f"block_{i}"] = {"norm": {"scale": None}, "fc_in": {"kernel": None}, "fc_out": {"kernel": None}}
    return tree, fan


def stacked(width: int, depth: int) -> tuple[dict, dict]:
    """The same model with its blocks stacked on a leading layer axis (as ``nn.scan`` makes)."""
    tree = {
        "embed": {"kernel": S((5, width), float)},
        "readout": {"kernel": S((width, 3), float)},
        "blocks": {
            "norm": {"scale": S((depth, width), float)},
            "fc_in": {"kernel": S((depth, width, 2 * width), float)},
            "fc_out": {"kernel": S((depth, 2 * width, width), float)},
        },
    }
    matrix = FanAxes((1,), (2,), (0,))
    fan = {
        "embed": {"kernel": None},
        "readout": {"kernel": None},
        "blocks": {
            "norm": {"scale": FanAxes((), (1,), (0,))},
            "fc_in": {"kernel": matrix},
            "fc_out": {"kernel": matrix},
        },
    }
    return tree, fan


def plan_for(model, p: Parametrization, base=(8, 2), delta=(16, 4), target=(32, 8)) -> Plan:
    (b, _), (d, _), (t, fan) = model(*base), model(*delta), model(*target)
    return Plan(infer_spec(b, d, t, fan), p)


@pytest.mark.parametrize("alpha", [0.5, 0.75, 1.0])
def test_completep_adam_matches_table_1(alpha):
    """CompleteP Table 1 with muP width rules: r_d = 4, r_L = 4 (widths 8 -> 32, depths 2 -> 8)."""
    r_d, r_L = 4.0, 4.0
    p = Parametrization("mup", "adam", depth_rule="completep", depth_alpha=alpha, eps_mode="per_layer")
    plan = plan_for(unrolled, p)
    lr, eps = plan.values("lr"), plan.values("eps")
    width_only = Plan(plan.specs, Parametrization("mup", "adam", eps_mode="per_layer"))
    for i in range(8):
        for name in ("fc_in", "fc_out"):
            path = f"block_{i}/{name}/kernel"
            assert lr[path] == pytest.approx(r_d**-1 * r_L ** (alpha - 1), rel=1e-12)
            assert eps[path] == pytest.approx(width_only.values("eps")[path] * r_L**-alpha, rel=1e-12)
            assert plan.values("init")[path] == width_only.values("init")[path]  # no depth factor
            assert plan.values("multiplier")[path] == width_only.values("multiplier")[path]
        gain = f"block_{i}/norm/scale"  # a vector: its width factor is muP's, times the depth factor
        assert lr[gain] == pytest.approx(width_only.values("lr")[gain] * r_L ** (alpha - 1), rel=1e-12)
    for path in ("embed/kernel", "readout/kernel"):  # outside the blocks: muP's width rules only
        assert lr[path] == width_only.values("lr")[path]
        assert eps[path] == width_only.values("eps")[path]
    assert lr["readout/kernel"] == pytest.approx(
        r_d**-0.5
    )  # Everett et al.'s muP: readout multiplier r_d^-1/2
    assert plan.branch_multiplier() == pytest.approx(r_L**-alpha, rel=1e-12)
    assert plan.depth_mult() == r_L


def test_depth_mup_and_sgd_rules():
    """depth-muP: branch r_L^-1/2, Adam block LR r_L^-1/2, SGD no depth factor; CompleteP SGD r_L^(2a-1)."""
    adam = plan_for(unrolled, Parametrization("mup", "adam", depth_rule="depth_mup"))
    assert adam.branch_multiplier() == pytest.approx(0.5)
    width_only = Plan(adam.specs, Parametrization("mup", "adam"))
    gain = "block_3/norm/scale"
    assert adam.values("lr")[gain] == pytest.approx(0.5 * width_only.values("lr")[gain])
    sgd = plan_for(unrolled, Parametrization("mup", "sgd", depth_rule="depth_mup"))
    width_only = Plan(sgd.specs, Parametrization("mup", "sgd"))
    assert sgd.values("lr") == width_only.values("lr")
    completep_sgd = plan_for(unrolled, Parametrization("mup", "sgd", depth_rule="completep"))
    ratio = (
        completep_sgd.values("lr")["block_0/fc_in/kernel"] / width_only.values("lr")["block_0/fc_in/kernel"]
    )
    assert ratio == pytest.approx(4.0)  # r_L^(2 alpha - 1) at alpha = 1


@pytest.mark.parametrize("rule", ["depth_mup", "completep"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adafactor"])
def test_base_depth_equals_width_only_rules(rule, optimizer):
    """At L = L0 every depth rule gives exactly the width-only factors and a branch multiplier of 1."""
    p = dict(name="mup", optimizer=optimizer, eps_mode="per_layer")
    depth = plan_for(unrolled, Parametrization(**p, depth_rule=rule), target=(32, 2))
    none = Plan(depth.specs, Parametrization(**p))
    assert depth.scales == none.scales
    assert depth.branch_multiplier() == 1.0


def test_stacked_blocks_get_the_unrolled_factors():
    p = Parametrization("mup", "adamw", depth_rule="completep", eps_mode="per_layer")
    flat, stack = plan_for(unrolled, p), plan_for(stacked, p)
    for name in ("norm/scale", "fc_in/kernel", "fc_out/kernel"):
        assert stack.scales[f"blocks/{name}"] == flat.scales[f"block_5/{name}"]
        assert stack.specs[f"blocks/{name}"].role == flat.specs[f"block_5/{name}"].role
    assert stack.branch_multiplier("blocks") == flat.branch_multiplier("block")
    assert stack.fan_axes(stacked(32, 8)[0])["blocks"]["fc_in"]["kernel"].stacked == (0,)


def test_a_layer_axis_is_never_a_width():
    """Depth changes but widths do not: the stacked axis grows, yet no role turns into a width role."""
    spec = infer_spec(stacked(8, 2)[0], stacked(16, 4)[0], stacked(8, 16)[0], stacked(8, 16)[1])
    assert spec["blocks/fc_in/kernel"].role == "hidden"
    assert spec["blocks/fc_in/kernel"].fan_in_mult == 1.0
    assert spec["blocks/fc_in/kernel"].depth_mult == 8.0
    assert spec["embed/kernel"].depth_mult == 1.0 and spec["embed/kernel"].block is None


def test_plan_json_round_trip_keeps_depth():
    plan = plan_for(stacked, Parametrization("mup", "adam", depth_rule="completep", depth_alpha=0.6))
    again = Plan.from_json(plan.to_json())
    assert again.scales == plan.scales
    assert again.specs == plan.specs
    assert again.branch_multiplier("blocks") == plan.branch_multiplier("blocks")


def test_narrower_than_base_depth_inverts_the_factors():
    p = Parametrization("mup", "adam", depth_rule="completep", depth_alpha=0.5)
    deeper = plan_for(unrolled, p, base=(8, 4), delta=(16, 2), target=(8, 16))
    shallower = plan_for(unrolled, p, base=(8, 4), delta=(16, 2), target=(8, 1))
    assert deeper.branch_multiplier() == pytest.approx(0.5, rel=1e-12)  # r_L = 4
    np.testing.assert_allclose(deeper.branch_multiplier(), 1 / shallower.branch_multiplier(), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(depth_rule="deep"), "depth_rule"),
        (dict(depth_rule="completep", depth_alpha=0.3), "depth_alpha"),
        (dict(depth_rule="completep", depth_alpha=1.5), "depth_alpha"),
        (dict(depth_rule="depth_mup", depth_alpha=1.0), "depth_alpha"),
        (dict(depth_alpha=0.5), "depth_alpha"),
        (dict(depth_rule="completep", lr_mode="global"), "lr_mode"),
    ],
)
def test_bad_depth_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Parametrization("mup", "adam", **kwargs)


def test_a_block_that_differs_is_named():
    tree, fan = unrolled(32, 8)
    tree["block_6"]["fc_in"]["kernel"] = S((32, 3 * 32), float)
    with pytest.raises(ValueError, match="block_6 of the target model differs from block_0"):
        infer_spec(unrolled(8, 2)[0], unrolled(16, 4)[0], tree, fan)


def test_blocks_missing_from_the_base_model_are_an_error():
    base, _ = unrolled(8, 2)
    base = {k: v for k, v in base.items() if not k.startswith("block_")}
    with pytest.raises(ValueError, match="base model has none"):
        infer_spec(base, unrolled(16, 4)[0], unrolled(32, 8)[0])


def test_several_block_groups_need_a_name():
    def two_stacks(width, depth):
        tree, fan = unrolled(width, depth)
        for i in range(depth + 1):
            tree[f"dec_{i}"] = {"fc": {"kernel": S((width, width), float)}}
            fan[f"dec_{i}"] = {"fc": {"kernel": None}}
        return tree, fan

    plan = Plan(
        infer_spec(two_stacks(8, 2)[0], two_stacks(16, 4)[0], *two_stacks(32, 3)),
        Parametrization("mup", "adam", depth_rule="completep"),
    )
    with pytest.raises(ValueError, match="different depth ratios"):
        plan.branch_multiplier()
    assert plan.branch_multiplier("block") == pytest.approx(2 / 3)
    assert plan.branch_multiplier("dec") == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="no residual block group 'enc'"):
        plan.depth_mult("enc")


def _user_scan_model(declare: bool):
    """A residual MLP a user writes with ``nn.scan``, with or without paramlab's fan-axes metadata."""
    import flax.linen as nn

    from paramlab.nn import with_fan_axes

    init = nn.initializers.lecun_normal()
    init = with_fan_axes(init, (0,), (1,)) if declare else init

    class Block(nn.Module):
        width: int
        branch: float = 1.0

        @nn.compact
        def __call__(self, h, _):
            inner = nn.Dense(2 * self.width, use_bias=False, kernel_init=init)(h)
            return h + self.branch * nn.Dense(self.width, use_bias=False, kernel_init=init)(
                jax.nn.relu(inner)
            ), None

    class Net(nn.Module):
        width: int
        depth: int

        @nn.compact
        def __call__(self, x):
            h = nn.Dense(self.width, name="embed")(x)
            scan = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth)
            h, _ = scan(self.width, name="blocks")(h, None)
            return nn.Dense(3, name="readout")(h)

    return lambda size: Net(*size)


def test_a_users_scanned_model_is_stacked_through_its_declared_inner_axes():
    from paramlab.parametrization import make_plan

    x = np.ones((2, 5), np.float32)
    recipe = Parametrization("mup", "adam", depth_rule="completep", depth_alpha=0.5)
    plan = make_plan(_user_scan_model(True), recipe, base=(16, 2), delta=(32, 4), target=(64, 8), inputs=(x,))
    kernel = plan.specs["blocks/Dense_0/kernel"]
    assert kernel.shape == (8, 64, 128) and kernel.stacked == (0,) and kernel.fan_in == (1,)
    assert plan.depth_mult() == 4 and plan.branch_multiplier() == pytest.approx(4**-0.5)
    lr = plan.values("lr")
    assert lr["blocks/Dense_0/kernel"] == pytest.approx((16 / 64) * 4 ** (0.5 - 1))  # r_d^-1 r_L^(alpha-1)
    width_only = make_plan(
        _user_scan_model(True), Parametrization("mup", "adam"), base=(16, 2), delta=(32, 4), target=(64, 8),
        inputs=(x,),
    ).values("lr")  # fmt: skip
    assert (
        lr["embed/kernel"] == width_only["embed/kernel"]
        and lr["readout/kernel"] == width_only["readout/kernel"]
    )
    assert plan.specs["embed/kernel"].depth_mult == 1.0 and plan.specs["readout/kernel"].block is None
    with pytest.raises(ValueError, match="nn.scan"):  # undeclared: the error says how to declare it
        make_plan(_user_scan_model(False), recipe, base=(16, 2), delta=(32, 4), target=(64, 8), inputs=(x,))
