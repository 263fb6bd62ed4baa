"""flax nnx: an MLP of `nnx.Linear` layers with an `nnx.Optimizer` sgd step under `nnx.jit`, per config."""

import itertools

import flax
import jax
import jax.numpy as jnp
import optax
from _common import answer, hidden, request, time_steps
from flax import nnx

req = request()
result = {"version": flax.__version__, "device": jax.default_backend(), "configs": {}}


class MLP(nnx.Module):
    def __init__(self, sizes, dtype, rngs):
        self.layers = nnx.List(
            [nnx.Linear(a, b, dtype=dtype, param_dtype=dtype, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


@nnx.jit
def step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


for config in req["configs"]:
    d_in, width, depth, d_out = hidden(config)
    dtype = jnp.dtype(config["dtype"])
    model = MLP(config["sizes"], dtype, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)
    k_x, k_y = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k_x, (config["batch"], d_in), dtype)
    y = jax.random.randint(k_y, (config["batch"],), 0, d_out)
    result["configs"][config["name"]] = time_steps(
        lambda: step(model, optimizer, x, y), jax.block_until_ready, req["repeats"], req["min_sample"]
    )
answer(result)
