"""equinox: `eqx.nn.MLP` with an optax sgd step under `eqx.filter_jit`, per config."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from _common import answer, hidden, request, time_steps

req = request()
result = {"version": eqx.__version__, "device": jax.default_backend(), "configs": {}}
for config in req["configs"]:
    d_in, width, depth, d_out = hidden(config)
    dtype = jnp.dtype(config["dtype"])
    k_model, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    model = eqx.nn.MLP(d_in, d_out, width, depth, activation=jax.nn.relu, key=k_model, dtype=dtype)
    optimizer = optax.sgd(0.01)
    x = jax.random.normal(k_x, (config["batch"], d_in), dtype)
    y = jax.random.randint(k_y, (config["batch"],), 0, d_out)

    def loss_fn(model, x, y):
        logits = jax.vmap(model)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @eqx.filter_jit(donate="all-except-first")
    def step(batch, model, opt_state):  # batch = (x, y), the one argument not donated
        x, y = batch
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    state = [model, optimizer.init(eqx.filter(model, eqx.is_array))]

    def call():
        state[0], state[1], loss = step((x, y), state[0], state[1])
        return loss

    result["configs"][config["name"]] = time_steps(call, jax.block_until_ready, req["repeats"], req["min_sample"])
answer(result)
