"""Small stand-ins shared by the paramlab.train tests: a two-layer tanh MLP regression problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def mlp_params(key, d_in=8, width=16, d_out=4):
    k1, k2 = jax.random.split(key)
    return {
        "hidden": {"kernel": jax.random.normal(k1, (d_in, width)) / np.sqrt(d_in), "bias": jnp.zeros(width)},
        "out": {"kernel": jax.random.normal(k2, (width, d_out)) / np.sqrt(width), "bias": jnp.zeros(d_out)},
    }


def mlp_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    y = h @ params["out"]["kernel"] + params["out"]["bias"]
    err = (y.astype(jnp.float32) - batch["y"]) ** 2
    return jnp.mean(err), {"max_err": jnp.max(err)}


def mlp_batch(seed, batch_size=16, d_in=8, d_out=4):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(batch_size, d_in)).astype(np.float32),
        "y": rng.normal(size=(batch_size, d_out)).astype(np.float32),
    }


MLP_ROLES = {
    "hidden": {"kernel": "hidden", "bias": "embedding"},
    "out": {"kernel": "readout", "bias": "embedding"},
}


@pytest.fixture
def toy():
    """The toy problem's pieces: params(key), loss(params, batch), batch(seed, batch_size), roles."""

    class Toy:
        params = staticmethod(mlp_params)
        loss = staticmethod(mlp_loss)
        batch = staticmethod(mlp_batch)
        roles = MLP_ROLES

    return Toy
