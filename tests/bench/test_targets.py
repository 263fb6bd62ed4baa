"""mlp_jax.bench.targets: the issue's targets read off a results dict, and the fractions of peak."""

import pytest

from mlp_jax.bench.targets import add_peak_fractions, check_targets, practical_peak

SIDE = {"config": "large", "fraction_of_jnp_dot": 0.9512}


def _only(targets: list[dict], text: str) -> dict:
    (target,) = [t for t in targets if text in t["target"]]
    return target


@pytest.mark.parametrize(
    "device_bytes, train_bytes, where, met",
    [
        (None, None, "process", False),  # the CPU: no allocator stats, the RSS decides (more with donation here)
        ((300, 300), (100, 200), "device", True),  # an accelerator: training's own device peak decides
        ((300, 300), None, "device", False),  # its peak was set before training: not seen, so not met
    ],
)
def test_donation_target_reads_the_device_memory_where_measured(device_bytes, train_bytes, where, met):
    donate = {"rss_peak_bytes": 5 << 20, "train_peak_bytes": 3 << 20}
    keep = {"rss_peak_bytes": 4 << 20, "train_peak_bytes": 2 << 20}
    if device_bytes:
        donate["device_peak_bytes"], keep["device_peak_bytes"] = (n << 20 for n in device_bytes)
    if train_bytes:
        donate["device_train_peak_bytes"], keep["device_train_peak_bytes"] = (n << 20 for n in train_bytes)
    results = {"configs": {}, "memory_peak": {"config": "large", "donate": donate, "no_donation": keep}}
    target = _only(check_targets(results), "donation")
    assert f"peak {where} memory" in target["target"] and target["met"] is met
    assert ("not seen" in str(target["value"])) == (device_bytes is not None and train_bytes is None)


def test_no_memory_measured_no_donation_target():
    failed = {"config": "large", "donate": {"error": "x"}, "no_donation": {"error": "y"}}
    assert not [t for t in check_targets({"configs": {}, "memory_peak": failed}) if "donation" in t["target"]]


@pytest.mark.parametrize(
    "platform, torch_device, practical",
    [
        ("cpu", "cpu", 300.0),  # the best of numpy's and torch's
        ("gpu", "cuda", 200.0),  # torch on the same GPU
        ("gpu", "cpu", None),  # a CPU-only torch says nothing about the GPU, and neither does numpy
    ],
)
def test_practical_peak_is_measured_on_the_same_device(platform, torch_device, practical):
    results = {
        "environment": {"device": {"platform": platform}},
        "peaks": {
            "jnp_dot": {"float32": {"gflops_per_s": 250.0}},
            "numpy": {"float32": {"gflops_per_s": 300.0}},
            "torch": {"device": torch_device, "float32": {"gflops_per_s": 200.0}},
        },
    }
    assert practical_peak(results, "float32") == (250.0, practical)


def test_peak_fractions_are_none_without_peaks():
    step = {"manual": {"gflops_per_s": 50.0}, "autodiff": {"gflops_per_s": 40.0}}
    results = {
        "environment": {"device": {"platform": "cpu"}},
        "peaks": {"jnp_dot": {"float32": {"gflops_per_s": 100.0}}},
        "configs": {"c": {"config": {"dtype": "float32"}, "sgd": step}},
    }
    add_peak_fractions(results, "c")
    assert step["manual"]["fraction_of_jnp_dot_peak"] == 0.5 and step["autodiff"]["fraction_of_jnp_dot_peak"] == 0.4
    assert step["manual"]["fraction_of_practical_peak"] is None  # numpy and torch unmeasured


def test_pytorch_target_needs_both_libraries_on_the_same_device():
    def target(jax_device, torch_device):
        peers = {
            "mlp_jax": {"device": jax_device, "configs": {"large": {"step_s": {"median": 0.1}}}},
            "torch": {"device": torch_device, "configs": {"large": {"step_s": {"median": 0.4}}}},
        }
        return _only(check_targets({"configs": {}, "peers": peers}), "PyTorch")

    assert target("cpu", "cpu")["met"] is True and target("gpu", "cuda")["value"] == 0.25
    mixed = target("gpu", "cpu")  # a CPU-only PyTorch beside JAX on a GPU
    assert mixed["met"] is None and "not comparable" in mixed["value"]


def test_ratio_targets_carry_their_noise():
    results = {
        "configs": {
            "small": {
                "sgd": {
                    "ratio_manual_over_autodiff": 1.004,
                    "noise_floor_ratio": 1.031,
                    "ratio_ci95": [0.9912, 1.0213],
                    "manual": {"compile_s": 0.2},
                    "autodiff": {"compile_s": 0.6123},
                }
            }
        }
    }
    targets = check_targets(results)
    assert _only(targets, "manual / autodiff") == {
        "target": "small sgd: manual / autodiff step time <= 1.00",
        "value": 1.004,
        "met": False,
        "noise_floor": 1.031,
        "ci95": [0.991, 1.021],
    }
    assert _only(targets, "compile time") == {
        "target": "small: compile time of one update step <= 0.5 s",
        "value": 0.612,
        "met": False,
    }


def test_side_by_side_and_xor_targets():
    xor = {"fused": {"manual": {"step_s": {"median": 5e-7}}}}
    targets = check_targets({"configs": {"xor": xor}, "peak_side_by_side": SIDE})
    side = _only(targets, "side by side")
    assert side["target"].startswith("large sgd manual") and side["value"] == 0.951 and side["met"] is True
    assert _only(targets, "steps/s") == {"target": "xor fused sgd: >= 1,000,000 steps/s", "value": 2000000, "met": True}


def test_large_peak_targets_only_where_measured():
    manual = {"fraction_of_jnp_dot_peak": 0.97, "fraction_of_practical_peak": None, "compile_s": 0.1}
    large = {"sgd": {"ratio_manual_over_autodiff": 0.99, "manual": manual, "autodiff": {"compile_s": 0.1}}}
    targets = check_targets({"configs": {"large": large}})
    assert [t["target"] for t in targets] == [
        "large sgd: manual / autodiff step time <= 1.00",
        "large: compile time of one update step <= 0.5 s",
        "large sgd manual: fraction_of_jnp_dot_peak >= 0.95",
    ]
