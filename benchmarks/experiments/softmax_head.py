"""How the softmax cross-entropy head is written, and the manual sgd step's time against autodiff's.

    python benchmarks/experiments/softmax_head.py [DEPTH WIDTH BATCH REPEATS]

Every variant keeps the hand-written backward pass (`mlp_jax.backward`) and changes only how
``dL/dlogits`` is formed. `manual` is the library's (``softmax - one_hot`` with an iota compare);
`scatter` subtracts 1 at each label with a scatter; `autodiff_head` takes ``jax.value_and_grad`` of the
optax loss with respect to the logits only (a gather and a scatter).
"""

import sys

import jax
import jax.numpy as jnp
import optax
from _timing import compare_updates, report

import mlp_jax as mj
from mlp_jax.training.steps import make_update

depth, width, batch, repeats = (int(a) for a in sys.argv[1:5]) if len(sys.argv) > 4 else (2, 64, 128, 31)


def with_head(dlogits_fn):
    """A gradient source: the library's forward and backward, `dlogits_fn(logits, y) -> (value, dlogits)`."""

    def grad(params, x, y, sample_weight=None, key=None):
        cache = mj.forward_with_cache(params, x, "relu")
        value, dlogits = dlogits_fn(cache.logits, y)  # (), (B, out)
        grads, _ = mj.backward(params, cache, dlogits, "relu")
        return value, grads

    return grad


def ce(logits, y):
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, y))


def scatter_head(logits, y):
    p = jax.nn.softmax(logits, axis=-1)  # (B, out)
    return ce(logits, y), p.at[jnp.arange(logits.shape[0]), y].add(-1.0) / logits.shape[0]


def where_head(logits, y):
    p = jax.nn.softmax(logits, axis=-1)
    hit = jnp.arange(logits.shape[1])[None, :] == y[:, None]  # (B, out) iota compare
    return ce(logits, y), jnp.where(hit, p - 1.0, p) / logits.shape[0]


sizes = [784] + [width] * depth + [10]
params = mj.init_params(jax.random.key(0), sizes)
x = jax.random.normal(jax.random.key(1), (batch, 784))
y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
for name, opt in (("sgd", optax.sgd(0.01)), ("adam", optax.adam(1e-3))):
    sources = {
        "manual": "manual",
        "scatter": with_head(scatter_head),
        "where": with_head(where_head),
        "autodiff_head": with_head(jax.value_and_grad(ce)),
        "autodiff": "autodiff",
    }
    updates = {k: make_update(opt, grad=g, activation="relu", loss="softmax_cross_entropy") for k, g in sources.items()}
    print(f"{depth} x {width} x batch {batch}, {name}:")
    report(compare_updates(updates, params, opt.init, x, y, repeats))
