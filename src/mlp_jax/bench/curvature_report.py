"""The curvature stage's section of ``results.md`` (`curvature_section`): per config and quantity the
ratios to one gradient, to autodiff and to BackPACK, and whether the goals are met. It reads only the
results dict (``results["curvature"]``, from `mlp_jax.bench.curvature.run_curvature`)."""

from __future__ import annotations

from typing import Any

_VERDICT = {True: "yes", False: "**no**", None: "-"}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g}" if seconds >= 1e-4 else f"{seconds * 1e6:.3g} us"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(config: str, quantity: str, e: dict[str, Any]) -> str:
    if "error" in e:
        return f"| {quantity} | {config} | {e['error']} |" + " |" * 8
    goals = e.get("goals", {})
    met = goals.get("met", {})
    limit = goals.get("gradient_ratio_max")
    backpack = e.get("backpack_s", {}).get("median")
    scaled = " (scaled)" if e.get("autodiff_scaled") else ""
    goal = "" if limit is None else f" (<= {limit:g}: {_VERDICT[met.get('gradient_ratio')]})"
    cells = [
        _ms(e["mlp_jax"]["step_s"]["median"]),
        _ms(e["gradient"]["step_s"]["median"]),
        _ratio(e["ratio_to_gradient"]) + goal,
        _ms(e["autodiff_s"]) + scaled,
        _ratio(e["ratio_to_autodiff"]),
        _ms(backpack),
        _ratio(e.get("ratio_to_backpack")),
        _ratio(e.get("backpack_ratio_to_its_gradient")),
        _VERDICT[goals.get("all_met")],
    ]
    return f"| {quantity} | {config} | " + " | ".join(cells) + " |"


def curvature_section(curvature: dict[str, Any] | None) -> list[str]:
    """The markdown lines of the curvature table (none when the stage did not run)."""
    if not curvature:
        return []
    settings = curvature["settings"]
    lines = [
        "",
        f"## Curvature: each quantity's cost against one gradient, autodiff and BackPACK "
        f"({settings['activation']}, {settings['repeats']} samples)",
        "",
        "Ratio to gradient: the quantity's median over the median of one plain `mj.backprop`, timed alternately "
        "in this process. Ratio to autodiff: over the autodiff formulation's median, also timed alongside "
        "(scaled: timed on a part and scaled up, see results.json). Ratio to BackPACK: over BackPACK's "
        "median in its own PyTorch process (its own ratio to its plain `loss.backward()` beside it). Goal met: "
        "the gradient-ratio goal (where there is one), not slower than autodiff, faster than BackPACK.",
        "",
        "| quantity | config | mlp-jax ms | gradient ms | ratio to gradient (goal) | autodiff ms | ratio to "
        "autodiff | BackPACK ms | ratio to BackPACK | BackPACK / its gradient | goal met? |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in curvature["configs"].items():
        lines += [_row(name, quantity, e) for quantity, e in entry["quantities"].items()]
    peers = {name: e.get("backpack", {}) for name, e in curvature["configs"].items()}
    failed = {name: p.get("error", p.get("skipped")) for name, p in peers.items() if "error" in p or "skipped" in p}
    versions = {p.get("version") for p in peers.values() if p.get("version")}
    lines += [
        "",
        "Autodiff formulations: " + "; ".join(f"{k}: {v}" for k, v in settings["autodiff_formulations"].items()) + ".",
    ]
    if versions:
        lines.append(f"BackPACK {', '.join(sorted(versions))} on {next(iter(peers.values())).get('device')}.")
    if failed:
        lines.append("BackPACK did not run on: " + "; ".join(f"{k}: {v}" for k, v in failed.items()) + ".")
    return lines
