import jax
import jax.numpy as jnp
import optax

import mlp_jax as mj

x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
y = jnp.array([0, 1, 1, 0])  # XOR as class labels
params = mj.init_params(jax.random.key(0), [2, 8, 2])  # 2 -> 8 (tanh) -> 2 logits
opt = optax.adam(0.05)
opt_state = opt.init(params)


@jax.jit
def step(params, opt_state):
    value, grads = mj.backprop(params, x, y, activation="tanh", loss="softmax_cross_entropy")
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value


for _ in range(200):
    params, opt_state, value = step(params, opt_state)
accuracy = (mj.forward(params, x, activation="tanh").argmax(-1) == y).mean()
print(f"loss {value:.4f}  accuracy {accuracy:.0%}")  # accuracy 100%
