"""GGN- and Hessian-vector products: exactness is tested with every other quantity in test_curvature;
here their own properties and the direction's validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from curvature_reference import flat, reference
from helpers import make_problem


@pytest.mark.x64
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_products_are_linear_in_v_and_symmetric(activation):
    params, x, y, loss, _ = make_problem(1, [3, 5, 2], 4, "softmax_int", jnp.float64)
    kw = dict(activation=activation, loss=loss)
    u = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype).reshape(p.shape)), params)
    v = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype).reshape(p.shape)), params)
    for product in (mj.ggn_vector_product, mj.hessian_vector_product):
        pu, pv = product(params, x, y, u, **kw), product(params, x, y, v, **kw)
        both = product(params, x, y, jax.tree.map(lambda a, b: 2 * a - b, u, v), **kw)
        assert tree_max_rel_error(both, jax.tree.map(lambda a, b: 2 * a - b, pu, pv)) < 1e-12
        assert float(flat(u) @ flat(pv)) == pytest.approx(float(flat(v) @ flat(pu)), rel=1e-12)


@pytest.mark.x64
def test_a_net_without_hidden_layers_has_its_ggn_as_hessian():
    """Logits linear in the params: H v = G v exactly."""
    params, x, y, loss, _ = make_problem(2, [3, 4], 5, "softmax_int", jnp.float64)
    v = jax.tree.map(jnp.ones_like, params)
    h = mj.hessian_vector_product(params, x, y, v, activation="tanh", loss=loss)
    g = mj.ggn_vector_product(params, x, y, v, activation="tanh", loss=loss)
    assert tree_max_rel_error(h, g) < 1e-13


@pytest.mark.x64
def test_tanh_hessian_is_not_its_ggn():
    params, x, y, loss, _ = make_problem(2, [3, 6, 3], 5, "softmax_int", jnp.float64)
    v = jax.tree.map(jnp.ones_like, params)
    ref = reference(params, x, y, "tanh", loss)
    h = flat(mj.hessian_vector_product(params, x, y, v, activation="tanh", loss=loss))
    assert float(jnp.max(jnp.abs(ref.hessian @ flat(v) - ref.ggn @ flat(v)))) > 1e-3 * float(jnp.max(jnp.abs(h)))


def test_a_direction_unlike_params_is_refused():
    params, x, y, loss, _ = make_problem(2, [3, 4, 3], 5, "softmax_int", jnp.float32)
    kw = dict(activation="tanh", loss=loss)
    with pytest.raises(ValueError, match="v must have params' structure"):
        mj.ggn_vector_product(params, x, y, params[:1], **kw)
    wrong_shape = (params[0], mj.Layer(w=params[1].w.T, b=params[1].b))
    with pytest.raises(ValueError, match=r"v\[1\]\.w must have shape \(4, 3\) and dtype float32, got \(3, 4\)"):
        mj.hessian_vector_product(params, x, y, wrong_shape, **kw)
    wrong_dtype = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    with pytest.raises(ValueError, match=r"dtype float32, got .* and bfloat16"):
        mj.ggn_vector_product(params, x, y, wrong_dtype, **kw)
