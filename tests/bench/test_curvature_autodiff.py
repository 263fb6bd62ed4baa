"""mlp_jax.bench.curvature_autodiff: every autodiff formulation the curvature stage times equals the dense
reference (jax.hessian / jax.jacrev on the flat parameter vector) in float64, and the MC ones average to
the exact ones."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import mlp_jax as mj
from mlp_jax.bench import curvature_autodiff as ad

pytestmark = [pytest.mark.x64, pytest.mark.slow]  # dense references: several seconds each
TOL = 1e-10
LOSSES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mse")


def problem(loss, batch=5, sizes=(3, 4, 3)):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    params = mj.init_params(k1, list(sizes), init="glorot_normal", dtype=jnp.float64)
    params = tuple(mj.Layer(layer.w, 0.1 * jax.random.normal(k4, layer.b.shape, jnp.float64)) for layer in params)
    x = jax.random.normal(k2, (batch, sizes[0]), jnp.float64)
    if loss == "softmax_cross_entropy":
        y = jax.random.randint(k3, (batch,), 0, sizes[-1])
    else:
        y = jax.random.uniform(k3, (batch, sizes[-1]), jnp.float64)
    return params, x, y


def jitted(name, **static):
    """`ad.<name>` jitted with its keyword arguments fixed (op by op, the references take minutes)."""
    fn = getattr(ad, name)
    return jax.jit(lambda *args, **kw: fn(*args, **static, **kw))


@functools.partial(jax.jit, static_argnames=("loss", "activation"))
def dense(params, x, y, loss, activation="tanh"):
    """Flat references: per-example GGN terms, the Hessian, per-example gradients, and unravel."""
    flat, unravel = ravel_pytree(params)
    per_example = mj.get_loss(loss).per_example
    logits = lambda p: mj.forward(unravel(p), x, activation)
    jac = jax.jacrev(logits)(flat)  # (B, C, P)
    h_f = jax.vmap(jax.hessian(lambda f, yn: per_example(f[None], yn[None])[0]))(logits(flat), y) / x.shape[0]
    ggn_terms = jnp.einsum("bcp,bcd,bdq->bpq", jac, h_f, jac)
    hess = jax.hessian(lambda p: mj.loss(unravel(p), x, y, activation, loss))(flat)
    one = lambda p, xn, yn: per_example(mj.forward(unravel(p), xn[None], activation), yn[None])[0]
    grads = jax.vmap(lambda xn, yn: jax.grad(one)(flat, xn, yn))(x, y)  # (B, P)
    return ggn_terms, hess, grads


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("loss", LOSSES)
def test_ggn_kfac_and_products_match_dense_references(loss):
    params, x, y = problem(loss)
    kw = {"activation": "tanh", "loss": loss}
    terms, hess, _ = dense(params, x, y, loss)
    unravel = ravel_pytree(params)[1]
    ggn = terms.sum(0)
    assert rel(ravel_pytree(jitted("diag_ggn", **kw)(params, x, y))[0], jnp.diag(ggn)) < TOL
    batch = jitted("batch_diag_ggn", **kw)(params, x, y)
    flat_batch = jnp.stack([ravel_pytree(jax.tree.map(lambda v: v[n], batch))[0] for n in range(x.shape[0])])
    assert rel(flat_batch, jnp.diagonal(terms, axis1=1, axis2=2)) < TOL
    v_flat = jnp.linspace(-1.0, 1.0, hess.shape[0])
    v = unravel(v_flat)
    assert rel(ravel_pytree(jitted("ggn_vector_product", **kw)(params, x, y, v))[0], ggn @ v_flat) < TOL
    assert rel(ravel_pytree(jitted("hessian_vector_product", **kw)(params, x, y, v))[0], hess @ v_flat) < TOL
    assert rel(ravel_pytree(jitted("diag_hessian_full", **kw, columns=8)(params, x, y))[0], jnp.diag(hess)) < TOL
    # at batch 1, kron(a, g) is the GGN block of each W (row-major), and g is the bias block
    one = (params, x[:1], y[:1])
    terms1 = dense(*one, loss)[0][0]
    start = 0
    for layer, (a, g) in zip(params, jitted("kfac_factors", **kw)(*one)):
        size = layer.w.size
        assert rel(jnp.kron(a, g), terms1[start : start + size, start : start + size]) < TOL
        start += size
        assert rel(g, terms1[start : start + layer.b.size, start : start + layer.b.size]) < TOL
        start += layer.b.size


@pytest.mark.parametrize("loss", ["softmax_cross_entropy"])
def test_first_order_quantities_match_per_example_gradients(loss):
    params, x, y = problem(loss, batch=6)
    kw = {"activation": "tanh", "loss": loss}
    _, _, grads = dense(params, x, y, loss)
    n = x.shape[0]
    assert rel(ravel_pytree(jitted("sum_grad_squared", **kw)(params, x, y))[0], jnp.sum((grads / n) ** 2, 0)) < TOL
    variance = jnp.mean((grads - grads.mean(0, keepdims=True)) ** 2, 0)
    assert rel(ravel_pytree(jitted("grad_variance", **kw)(params, x, y))[0], variance) < 1e-8  # a difference of means
    assert rel(jitted("per_example_grad_norms", **kw)(params, x, y), jnp.linalg.norm(grads, axis=1)) < TOL
    together = jitted("first_order", **kw)(params, x, y)
    assert rel(together["per_example_grad_norms"], jnp.linalg.norm(grads, axis=1)) < TOL


def test_per_example_chunks_cover_the_batch(monkeypatch):
    """Per-example gradients in several chunks give what one chunk gives."""
    params, x, y = problem("mse", batch=8)
    kw = {"activation": "tanh", "loss": "mse"}
    whole = jitted("sum_grad_squared", **kw)(params, x, y)
    monkeypatch.setattr(ad, "CHUNK_BYTES", 1)  # one example per chunk
    assert rel(ravel_pytree(jitted("sum_grad_squared", **kw)(params, x, y))[0], ravel_pytree(whole)[0]) < TOL


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_mc_estimates_average_to_the_exact_ones(loss):
    """Over many samples the MC GGN diagonal and KFAC g approach the exact ones: within 5 standard errors
    of the per-sample spread."""
    params, x, y = problem(loss, batch=3)
    kw = {"activation": "tanh", "loss": loss}
    exact = ravel_pytree(jitted("diag_ggn", **kw)(params, x, y))[0]
    samples = 4000
    mc = ravel_pytree(jitted("diag_ggn", **kw, method="mc", mc_samples=samples)(params, x, y, key=jax.random.key(1)))[0]
    one_sample = lambda k: ravel_pytree(ad.diag_ggn(params, x, y, **kw, method="mc", key=k))[0]
    single = jax.jit(jax.vmap(one_sample))(jax.random.split(jax.random.key(2), 400))
    stderr = single.std(0) / np.sqrt(samples)
    assert np.all(np.abs(mc - exact) <= 5 * stderr + 1e-12)
    same = jitted("kfac_factors", **kw, method="mc")(params, x, y, key=jax.random.key(5))
    again = jitted("kfac_factors", **kw, method="mc")(params, x, y, key=jax.random.key(5))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(again)))
