"""mlp_jax.bench.curvature: the curvature stage on a tiny config gives the expected entries; the goals; and
the BackPACK worker (only where BackPACK is installed) computes the same quantities as the autodiff
formulations on the same weights."""

import importlib.util
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

import mlp_jax as mj
from mlp_jax.bench import curvature
from mlp_jax.bench import curvature_autodiff as ad
from mlp_jax.bench.configs import Config, parse_config
from mlp_jax.bench.peers import run_worker

ENTRY_KEYS = {
    "gradient",
    "mlp_jax",
    "autodiff",
    "autodiff_formulation",
    "autodiff_scaled",
    "autodiff_s",
    "ratio_to_gradient",
    "autodiff_ratio_to_gradient",
    "ratio_to_autodiff",
    "goals",
}


@pytest.mark.slow  # compiles three functions: several seconds on a loaded machine
def test_stage_on_a_tiny_config_gives_every_key(monkeypatch):
    """One quantity of each kind of call: plain, with the MC key, with the vector v."""
    names = ("per_example_grad_norms", "kfac_mc", "ggn_vector_product")
    monkeypatch.setattr(curvature, "quantities_for", lambda config: names)
    out = curvature.run_curvature(
        [parse_config("1x8x16")], repeats=2, min_sample=0.001, backpack=False, log=lambda m: None
    )
    assert set(out) == {"settings", "configs"} and out["settings"]["activation"] == "tanh"
    entry = out["configs"]["1x8x16"]
    assert set(entry) == {"config", "quantities", "load_average"}
    assert all(set(entry["quantities"][name]) == ENTRY_KEYS for name in names)
    e = entry["quantities"]["per_example_grad_norms"]
    medians = {name: e[name]["step_s"]["median"] for name in ("gradient", "mlp_jax", "autodiff")}
    assert e["ratio_to_gradient"] == pytest.approx(medians["mlp_jax"] / medians["gradient"])
    assert e["ratio_to_autodiff"] == pytest.approx(medians["mlp_jax"] / medians["autodiff"])
    assert e["autodiff_scaled"] is None and "vmap(jax.grad)" in e["autodiff_formulation"]
    assert e["goals"]["gradient_ratio_max"] == 1.3
    assert e["goals"]["met"]["faster_than_backpack"] is None  # not run


@pytest.mark.slow
def test_a_missing_function_is_named_in_its_entry(monkeypatch):
    monkeypatch.setattr(curvature, "quantities_for", lambda config: ("diag_ggn_exact",))
    monkeypatch.setattr(curvature, "_mlp_jax_fn", lambda *a: curvature._Functions(object()).diag_ggn)
    out = curvature.run_curvature(
        [parse_config("1x2x4")], repeats=1, min_sample=0.001, backpack=False, log=lambda m: None
    )
    e = out["configs"]["1x2x4"]["quantities"]["diag_ggn_exact"]
    assert e["error"] == "AttributeError: mlp_jax has no diag_ggn"
    assert e["goals"]["all_met"] is None


def test_goals_and_their_classes():
    assert curvature.goal_ratio("grad_variance", 10) == 1.3
    assert curvature.goal_ratio("kfac_mc", 10) == 2.0
    assert curvature.goal_ratio("diag_hessian", 10) == 6.0
    assert curvature.goal_ratio("hessian_vector_product", 10) is None
    entry = {"ratio_to_gradient": 5.0, "ratio_to_autodiff": 0.5, "ratio_to_backpack": 1.2}
    goals = curvature._goals(entry, "kfac_exact", 10)
    assert goals["met"] == {"gradient_ratio": True, "not_slower_than_autodiff": True, "faster_than_backpack": False}
    assert goals["all_met"] is False
    assert set(curvature.LARGE_QUANTITIES) < set(curvature.QUANTITIES)
    assert curvature.quantities_for(Config("large", (784, 8, 10), 4)) == curvature.LARGE_QUANTITIES


def test_the_diag_hessian_and_large_per_example_formulations_are_scaled():
    config = Config("c", (784, 8, 10), 16)
    params = tuple(mj.Layer(np.zeros((i, o)), np.zeros(o)) for i, o in zip(config.sizes, config.sizes[1:]))
    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    part, scaled = curvature._autodiff_scale("diag_hessian", config, params)
    assert part is None and scaled["factor"] == -(-size // ad.DIAG_H_COLUMNS)
    assert curvature._autodiff_scale("grad_variance", config, params) == (None, None)
    big = Config("big", (784, 1024, 10), 4096)  # 4096 x 814 K parameters x 4 bytes: over the bound
    part, scaled = curvature._autodiff_scale(
        "grad_variance", big, curvature._problem(Config("p", (784, 1024, 10), 2))[0]
    )
    assert big.batch % part == 0 and scaled["factor"] == big.batch / part > 1


@pytest.mark.slow
@pytest.mark.x64
@pytest.mark.skipif(importlib.util.find_spec("backpack") is None, reason="BackPACK (extra `bench`) is not installed")
def test_backpack_worker_computes_the_same_quantities():
    """On one float64 problem, BackPACK's quantities (in mlp-jax's layout) equal the autodiff formulations;
    its Variance is grad_variance / N^2 with the mean reduction."""
    config = Config("tiny", (3, 4, 3), 5, "float64")
    problem = curvature._problem(config)
    params, x, y, _, v = problem
    kw = {"activation": "tanh", "loss": config.loss}
    names = ["diag_ggn_exact", "batch_diag_ggn_exact", "diag_hessian", "kfac_exact", "sum_grad_squared"]
    names += ["grad_variance", "per_example_grad_norms", "ggn_vector_product", "hessian_vector_product"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "problem.npz"
        curvature._write_problem(path, problem)
        request = {"mode": "values", "problem": str(path), "dtype": "float64", "quantities": names, **kw}
        got = run_worker("backpack_peer.py", request)["values"]
    as_layers = lambda tree: [[np.asarray(leaf.w), np.asarray(leaf.b)] for leaf in tree]
    n = x.shape[0]
    expected = {
        "diag_ggn_exact": as_layers(ad.diag_ggn(params, x, y, **kw)),
        "batch_diag_ggn_exact": as_layers(ad.batch_diag_ggn(params, x, y, **kw)),
        "diag_hessian": as_layers(ad.diag_hessian_full(params, x, y, **kw)),
        "sum_grad_squared": as_layers(ad.sum_grad_squared(params, x, y, **kw)),
        "grad_variance": [[w / n**2, b / n**2] for w, b in as_layers(ad.grad_variance(params, x, y, **kw))],
        "ggn_vector_product": as_layers(ad.ggn_vector_product(params, x, y, v, **kw)),
        "hessian_vector_product": as_layers(ad.hessian_vector_product(params, x, y, v, **kw)),
    }
    for name, layers in expected.items():
        for mine, theirs in zip(layers, got[name]):
            for a, b in zip(mine, theirs):
                np.testing.assert_allclose(np.asarray(b), a, rtol=1e-9, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(got["per_example_grad_norms"], ad.per_example_grad_norms(params, x, y, **kw), rtol=1e-9)
    for (a, g), theirs in zip(ad.kfac_factors(params, x, y, **kw), got["kfac_exact"]):
        np.testing.assert_allclose(theirs["a"], a, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(theirs["g"], g, rtol=1e-9, atol=1e-14)
