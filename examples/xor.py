"""XOR, the classic story: a single linear layer cannot separate it, one hidden layer can.

python examples/xor.py
"""

import jax
import jax.numpy as jnp
import optax

import mlp_jax as mj

x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
y = jnp.array([[0], [1], [1], [0]], jnp.float32)  # one sigmoid output: is it "1"?
loss = "sigmoid_binary_cross_entropy"


def train(layer_sizes: list[int]) -> float:
    """Train with adam for 500 fused steps; return the accuracy on the four points."""
    params = mj.init_params(jax.random.key(0), layer_sizes, init="glorot_normal")
    optimizer = optax.adam(0.05)
    train_500 = mj.make_fused_update(optimizer, 500, activation="tanh", loss=loss)  # one compiled call
    params, _, losses = train_500(params, optimizer.init(params), x, y)
    metrics = mj.make_evaluate(activation="tanh", loss=loss)(params, x, y)
    print(f"{layer_sizes!s:>10}: loss {losses[-1]:.4f}, accuracy {metrics['accuracy']:.0%}")
    return float(metrics["accuracy"])


linear = train([2, 1])  # logits = x @ w + b: a straight line, at most 3 of 4 right
hidden = train([2, 4, 1])  # one hidden tanh layer bends the boundary
assert linear < 1.0 and hidden == 1.0
print("a single linear layer fails on XOR; one hidden layer solves it")
