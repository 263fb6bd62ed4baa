"""The layout of the dW dot (contracting over the batch) in the manual sgd step.

    python benchmarks/experiments/dw_layout.py [DEPTH WIDTH BATCH REPEATS]

XLA:CPU sends ``a.T @ delta`` (lhs and rhs contracting dim 0) to Eigen, and the forward and delta dots
(contracting the minor dim) to YNNPACK. `transposed` materialises ``a.T`` behind an optimization barrier
so that the dW dot takes YNNPACK's path too.
"""

import importlib
import sys

import jax
import jax.numpy as jnp
import optax
from _timing import compare_updates, report

import mlp_jax as mj
from mlp_jax.train import make_update

backprop_module = importlib.import_module("mlp_jax.backprop")
depth, width, batch, repeats = (int(a) for a in sys.argv[1:5]) if len(sys.argv) > 4 else (4, 1024, 4096, 5)


def backward_transposed(params, cache, dlogits, activation):
    dphi = mj.get_activation(activation).derivative
    grads, deltas, delta = [], [], dlogits
    for l in reversed(range(len(params))):
        a_t = jax.lax.optimization_barrier(cache.inputs[l].T)  # (d_in, B), materialised
        deltas.append(delta)
        grads.append(mj.Layer(w=a_t @ delta, b=jnp.sum(delta, axis=0)))  # (d_in, d_out), (d_out,)
        if l > 0:
            delta = (delta @ params[l].w.T) * dphi(cache.pre_activations[l - 1])  # (B, d_in)
    return tuple(reversed(grads)), tuple(reversed(deltas))


sizes = [784] + [width] * depth + [10]
params = mj.init_params(jax.random.key(0), sizes)
x = jax.random.normal(jax.random.key(1), (batch, 784))
y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
opt = optax.sgd(0.01)
updates = {}
for name, grad, backward in (("manual", "manual", backprop_module.backward),
                             ("manual_again", "manual", backprop_module.backward),
                             ("transposed", "manual", backward_transposed),
                             ("autodiff", "autodiff", backprop_module.backward)):
    backprop_module.backward, original = backward, backprop_module.backward  # read when first traced
    update = make_update(opt, grad=grad, activation="relu", loss="softmax_cross_entropy")
    p = jax.tree.map(jnp.copy, params)
    jax.block_until_ready(update(p, opt.init(p), x, y))  # trace now, with this backward
    backprop_module.backward = original
    updates[name] = update
print(f"{depth} x {width} x batch {batch}, sgd:")
report(compare_updates(updates, params, opt.init, x, y, repeats))
