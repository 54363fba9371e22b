"""Cross-check against microsoft/mup (PyTorch): Table-8 muP gives mup's per-parameter learning rates,
multipliers and init rescaling, and, from the same weights, the same losses over 10 steps.

The torch model is mup's recipe: ``nn.Linear`` input and hidden layers, a ``MuReadout`` output,
``set_base_shapes(model, base, delta=delta)`` and ``MuAdam`` / ``MuSGD``. Every number on the mup side
is read from mup's own objects (param groups, ``width_mult()``, the rescaled weights).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramlab.models import MLP, MLPConfig
from paramlab.parametrization import Parametrization, make_plan

torch = pytest.importorskip("torch")
mup = pytest.importorskip("mup")

pytestmark = pytest.mark.torch

IN, OUT, BATCH, BASE, DELTA = 8, 4, 16, 64, 128
WIDTHS = (64, 128, 256)


class TorchMLP(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.dense_0 = torch.nn.Linear(IN, width)
        self.dense_1 = torch.nn.Linear(width, width)
        self.readout = mup.MuReadout(width, OUT)

    def forward(self, x):
        h = torch.relu(self.dense_0(x))
        return self.readout(torch.relu(self.dense_1(h)))


def _torch_model(width, seed=0):
    torch.manual_seed(seed)
    model = TorchMLP(width)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    mup.set_base_shapes(model, TorchMLP(BASE), delta=TorchMLP(DELTA))
    return model, before


def _path(torch_name):
    layer, kind = torch_name.split(".")
    return f"{layer}/{'kernel' if kind == 'weight' else 'bias'}"


def _jax_params(model):
    params = {}
    for name, p in model.named_parameters():
        layer, kind = name.split(".")
        value = p.detach().numpy()
        params.setdefault(layer, {})["kernel" if kind == "weight" else "bias"] = jnp.asarray(
            value.T if kind == "weight" else value
        )
    return params


def _plan(width, optimizer):
    make = lambda w: MLP(MLPConfig(in_dim=IN, width=w, out_dim=OUT))
    x = jax.ShapeDtypeStruct((BATCH, IN), jnp.float32)
    return make_plan(
        make, Parametrization("mup_table8", optimizer), base=BASE, delta=DELTA, target=width, inputs=(x,)
    )


def _mup_optimizer(model, optimizer, lr):
    if optimizer == "adam":
        return mup.MuAdam(model.parameters(), lr=lr)
    return mup.MuSGD(model.parameters(), lr=lr, momentum=0.9)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("width", WIDTHS)
def test_learning_rates_multipliers_and_init_match_mup(width, optimizer):
    model, before = _torch_model(width)
    plan = _plan(width, optimizer)
    lr = 0.01
    torch_opt = _mup_optimizer(model, optimizer, lr)
    group_lr = {id(p): group["lr"] for group in torch_opt.param_groups for p in group["params"]}
    ours = plan.values("lr")
    mults = plan.values("multiplier")
    init = plan.values("init")
    for name, p in model.named_parameters():
        path = _path(name)
        assert ours[path] * lr == pytest.approx(group_lr[id(p)], rel=1e-12), path
        # MuReadout computes readout(output_mult * x / width_mult): a weight multiplier; its bias is
        # not multiplied, nor is any other parameter.
        want = model.readout.output_mult / model.readout.width_mult() if path == "readout/kernel" else 1.0
        assert mults[path] == pytest.approx(want, rel=1e-12), path
        # set_base_shapes rescales the readout weight by width_mult^(1/2) (weights only: mup also
        # rescales biases, because torch draws them with a 1/fan_in variance; paramlab's are zeros)
        if name.endswith("weight"):
            ratio = float((p.detach().norm() / before[name].norm()).item())
            assert init[path] == pytest.approx(ratio, rel=1e-5), path


def _train_torch(model, optimizer, lr, batches):
    opt = _mup_optimizer(model, optimizer, lr)
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def _train_jax(plan, params, optimizer, lr, batches, width):
    apply = plan.wrap_apply(MLP(MLPConfig(in_dim=IN, width=width, out_dim=OUT)).apply)
    kwargs = dict(momentum=0.9) if optimizer == "sgd" else {}
    opt = plan.optimizer(optimizer, lr, **kwargs)
    state = opt.init(params)

    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((apply({"params": p}, x) - y) ** 2))(params)
        updates, state = opt.update(grads, state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), state, loss

    losses = []
    for x, y in batches:
        params, state, loss = step(params, state, x, y)
        losses.append(float(loss))
    return np.array(losses)


@pytest.mark.parametrize("optimizer,lr", [("adam", 1e-2), ("sgd", 0.05)])
def test_same_losses_as_mup_over_10_steps(optimizer, lr):
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((IN, OUT)).astype(np.float32) / np.sqrt(IN)
    xs = [rng.standard_normal((BATCH, IN)).astype(np.float32) for _ in range(10)]
    batches = [(x, np.tanh(x @ teacher)) for x in xs]
    torch.set_num_threads(1)
    worst = 0.0
    for width in WIDTHS:
        model, _ = _torch_model(width, seed=width)
        params = _jax_params(model)
        ours = _train_jax(_plan(width, optimizer), params, optimizer, lr, batches, width)
        theirs = _train_torch(model, optimizer, lr, batches)
        assert theirs[-1] < theirs[0]  # it trains
        rel = np.abs(ours - theirs) / np.abs(theirs)
        worst = max(worst, float(rel.max()))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    print(f"max relative loss difference vs mup ({optimizer}): {worst:.2e}")
