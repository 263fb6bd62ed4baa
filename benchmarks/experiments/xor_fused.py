"""Steps per second of the 2-8-1 XOR net, N sgd steps fused in one call, under variants of the loop.

    XLA_FLAGS=... python benchmarks/experiments/xor_fused.py

`library` is `make_fused_update` (a scan that stacks the N losses); `no_losses` drops the stacked
losses; `last_loss` carries only the last step's loss; `unroll8` unrolls the scan body 8 times.
Try it with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``
(single-threaded Eigen: no thread-pool hand-off per op) and ``--xla_cpu_use_fusion_emitters=false``.
"""

import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import mlp_jax as mj
from mlp_jax.training.steps import make_fused_update, make_step

N = 20_000
x = jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
y = jnp.asarray([[0], [1], [1], [0]], jnp.float32)
params = mj.init_params(jax.random.key(0), [2, 8, 1])
opt = optax.sgd(0.1)
step = make_step(opt, activation="relu", loss="sigmoid_binary_cross_entropy", grad="manual")


def fused(unroll: int, keep_losses: bool):
    def run(params, opt_state, x, y):
        def body(carry, _):
            params, opt_state, value = step(*carry, x, y)
            return (params, opt_state), value if keep_losses else None

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), None, length=N, unroll=unroll)
        return params, opt_state, values if keep_losses else jnp.zeros(())

    return jax.jit(run, donate_argnums=(0, 1))


def fused_last_loss():
    """The loss of the last step only, carried through the scan instead of stacked."""

    def run(params, opt_state, x, y):
        def body(carry, _):
            params, opt_state, value = step(carry[0], carry[1], x, y)
            return (params, opt_state, value), None

        zero = jnp.zeros((), x.dtype)
        (params, opt_state, value), _ = jax.lax.scan(body, (params, opt_state, zero), None, length=N)
        return params, opt_state, value

    return jax.jit(run, donate_argnums=(0, 1))


variants = {
    "library": make_fused_update(opt, N, activation="relu", loss="sigmoid_binary_cross_entropy"),
    "no_losses": fused(1, False),
    "last_loss": fused_last_loss(),
    "unroll8": fused(8, True),
}
print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
for name, f in variants.items():
    p = jax.tree.map(jnp.copy, params)
    start = time.perf_counter()
    *state, losses = f(p, opt.init(p), x, y)
    jax.block_until_ready(losses)
    compile_s, samples = time.perf_counter() - start, []
    for _ in range(7):
        start = time.perf_counter()
        *state, losses = f(*state, x, y)
        jax.block_until_ready(losses)
        samples.append(time.perf_counter() - start)
    print(f"  {name:10s} {N / statistics.median(samples) / 1e3:7.0f} k steps/s  compile {compile_s:.2f} s")
