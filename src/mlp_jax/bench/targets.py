"""The issue's performance targets, read off a bench run's results dict (`check_targets`), and each step's
fraction of the matmul peaks (`add_peak_fractions`, with `practical_peak`)."""

from __future__ import annotations

from typing import Any

from mlp_jax.bench.configs import KINDS, SOURCES, STANDARD


def practical_peak(results: dict, dtype: str) -> tuple[float | None, float | None]:
    """(jnp.dot's peak, the best of numpy's and torch's) in GFLOP/s for `dtype`, None where unmeasured;
    on an accelerator, torch's peak only if it ran on that accelerator."""
    peaks = results.get("peaks", {})
    dot = peaks.get("jnp_dot", {}).get(dtype, {}).get("gflops_per_s")
    # on an accelerator only PyTorch's peak on that accelerator counts; numpy's is the host CPU's
    libs = (
        ("numpy", "torch")
        if results["environment"]["device"]["platform"] == "cpu"
        else (("torch",) if peaks.get("torch", {}).get("device") == "cuda" else ())
    )
    others = [peaks.get(lib, {}).get(dtype, {}).get("gflops_per_s") for lib in libs]
    others = [v for v in others if v]
    return dot, (max(others) if others else None)


def add_peak_fractions(results: dict, name: str) -> None:
    """Each step of config `name`: its FLOP/s as a fraction of jnp.dot's peak and of the practical peak
    (None where that peak was not measured), added in place."""
    entry = results["configs"][name]
    dot, practical = practical_peak(results, entry["config"]["dtype"])
    for kind in KINDS:
        for source in SOURCES:
            if kind in entry:
                m = entry[kind][source]
                m["fraction_of_jnp_dot_peak"] = m["gflops_per_s"] / dot if dot else None
                m["fraction_of_practical_peak"] = m["gflops_per_s"] / practical if practical else None


def check_targets(results: dict) -> list[dict[str, Any]]:
    """The issue's performance targets, each with the measured value and whether it is met (None: it
    could not be measured in this run)."""
    configs = results.get("configs", {})
    return [
        *(t for name in STANDARD if name in configs for t in _ratio_and_compile_targets(name, configs[name])),
        *_large_peak_targets(configs),
        *_pytorch_target(results.get("peers", {})),
        *_side_by_side_target(results.get("peak_side_by_side")),
        *_xor_target(configs),
        *_donation_target(results.get("memory_peak", {})),
    ]


def _ratio_and_compile_targets(name: str, entry: dict) -> list[dict[str, Any]]:
    """A standard config's manual / autodiff ratio of its sgd and adam steps (with the A/A and the
    interval beside each), then the slowest compile of those steps."""
    targets = []
    for kind in ("sgd", "adam"):
        if kind in entry:
            ratio = entry[kind]["ratio_manual_over_autodiff"]
            aa, ci = (entry[kind].get(k) for k in ("noise_floor_ratio", "ratio_ci95"))
            targets.append(
                {
                    "target": f"{name} {kind}: manual / autodiff step time <= 1.00",
                    "value": round(ratio, 3),
                    "met": ratio <= 1.0,
                    **({"noise_floor": round(aa, 3)} if aa else {}),
                    **({"ci95": [round(v, 3) for v in ci]} if ci else {}),
                }
            )
    if any(k in entry for k in ("sgd", "adam")):
        worst = max(entry[k][s]["compile_s"] for k in ("sgd", "adam") if k in entry for s in SOURCES)
        targets.append(
            {
                "target": f"{name}: compile time of one update step <= 0.5 s",
                "value": round(worst, 3),
                "met": worst <= 0.5,
            }
        )
    return targets


def _large_peak_targets(configs: dict) -> list[dict[str, Any]]:
    """The large config's manual sgd step as a fraction of each peak, where that peak was measured."""
    if "large" not in configs or "sgd" not in configs["large"]:
        return []
    m = configs["large"]["sgd"]["manual"]
    return [
        {"target": f"large sgd manual: {key} >= {goal}", "value": round(m[key], 3), "met": m[key] >= goal}
        for key, goal in (("fraction_of_jnp_dot_peak", 0.95), ("fraction_of_practical_peak", 0.90))
        if m.get(key) is not None
    ]


def _pytorch_target(peers: dict) -> list[dict[str, Any]]:
    """mlp-jax's large sgd step against PyTorch eager's, when both ran on the same kind of device."""
    torch, jax_peer = (peers.get(p, {}) for p in ("torch", "mlp_jax"))
    torch_large, jax_large = (p.get("configs", {}).get("large") for p in (torch, jax_peer))
    if not (torch_large and jax_large):
        return []
    title = "large sgd: mlp-jax step time <= PyTorch eager's (ratio <= 1)"
    devices = jax_peer.get("device"), torch.get("device")
    if devices in (("cpu", "cpu"), ("gpu", "cuda")):
        ratio = jax_large["step_s"]["median"] / torch_large["step_s"]["median"]
        return [{"target": title, "value": round(ratio, 3), "met": ratio <= 1.0}]
    # e.g. JAX on a GPU and a CPU-only PyTorch: no comparison
    return [
        {"target": title, "met": None, "value": f"not comparable: mlp-jax on {devices[0]}, PyTorch on {devices[1]}"}
    ]


def _side_by_side_target(side: dict | None) -> list[dict[str, Any]]:
    """The step's fraction of jnp.dot's FLOP/s, both timed side by side."""
    if not side:
        return []
    fraction = side["fraction_of_jnp_dot"]
    return [
        {
            "target": f"{side['config']} sgd manual: fraction of jnp.dot's FLOP/s, side by side >= 0.95",
            "value": round(fraction, 3),
            "met": fraction >= 0.95,
        }
    ]


def _xor_target(configs: dict) -> list[dict[str, Any]]:
    """The fused xor steps per second."""
    if "xor" not in configs or "fused" not in configs["xor"]:
        return []
    rate = 1.0 / configs["xor"]["fused"]["manual"]["step_s"]["median"]
    return [{"target": "xor fused sgd: >= 1,000,000 steps/s", "value": round(rate), "met": rate >= 1e6}]


def _donation_target(mem: dict) -> list[dict[str, Any]]:
    """Training's peak memory with donation against without: on an accelerator its own memory, on the CPU
    the process's RSS; nothing where neither was measured."""
    donate, keep = mem.get("donate", {}), mem.get("no_donation", {})
    if "device_peak_bytes" in donate or "device_peak_bytes" in keep:  # an accelerator: its own memory
        where, key = "device", "device_train_peak_bytes"
    elif "train_peak_bytes" in donate and "train_peak_bytes" in keep:  # the CPU: the process's RSS
        where, key = "process", "train_peak_bytes"
    else:
        return []
    if key in donate and key in keep:
        a, b = donate[key], keep[key]
        value, met = f"{a / 2**20:.0f} MiB vs {b / 2**20:.0f} MiB", a < b
    else:  # the allocator's peak cannot be reset, and training never rose above compile's
        value, met = "not seen: the device's peak was set before training (compile)", False
    return [
        {
            "target": f"{mem['config']} adam: training peak {where} memory with donation < without",
            "value": value,
            "met": met,
        }
    ]
