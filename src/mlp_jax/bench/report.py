"""The outputs of `mlp-jax bench`: ``results.md`` (tables) and the PNG plots, from the results dict
that ``results.json`` holds; every file written whole (`mlp_jax.training.files`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mlp_jax.bench.configs import KINDS
from mlp_jax.bench.curvature_report import curvature_section
from mlp_jax.training.files import save_figure, write_text


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds >= 1e-4 else f"{seconds * 1e6:.3g} us"


def _step(m: dict) -> str:
    s = m["step_s"]
    return f"{_ms(s['median'])} ({_ms(s['min'])}-{_ms(s['max'])})"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _peak_cell(entry: dict) -> str:
    if "gflops_per_s_end" in entry:
        start, end = entry["gflops_per_s_start"], entry["gflops_per_s_end"]
        return f"{entry['gflops_per_s']:.1f} (start {start:.0f}, end {end:.0f})"
    return f"{entry['gflops_per_s']:.1f}"


def _mib(n) -> str:
    return f"{n / 2**20:.2f}" if n is not None else "-"


def markdown(results: dict) -> str:
    """``results.md``: the run's header, then a section per measurement these results hold, the targets last."""
    lines = [
        *_header(results),
        *_peaks_section(results.get("peaks")),
        *_steps_table(results["configs"]),
        *_side_by_side_section(results.get("peak_side_by_side")),
        *_flops_and_memory_table(results["configs"]),
        *_memory_section(results.get("memory_peak")),
        *_peers_section(results.get("peers")),
        *_digits_section(results.get("digits")),
        *curvature_section(results.get("curvature")),
        *_targets_section(results.get("targets")),
    ]
    return "\n".join(lines) + "\n"


def _header(results: dict) -> list[str]:
    """The title, where and when the run ran, and how to read the tables."""
    env = results["environment"]
    return [
        "# mlp-jax benchmark",
        "",
        f"{env['date_utc']}; device {env['device']['platform']} ({env['device']['kind']}); CPU {env['cpu']}, "
        f"{env['cpu_count']} cores; python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"; XLA_FLAGS={env['xla_flags'] or '(none)'}; malloc "
        + (" ".join(f"{k}={v}" for k, v in env.get("env", {}).items() if k.startswith("MALLOC_")) or "glibc defaults")
        + f"; matmul precision {env.get('jax_default_matmul_precision') or 'backend default'}"
        + f"; load average at start {env.get('load_average_1min')}; "
        f"wall {results.get('wall_s', 0):.0f} s.",
        "",
        *([f"Reproduce with `{env['command']}`.", ""] if env.get("command") else []),
        "Times are medians over alternating samples, in ms unless marked, with (min-max). Ratio = manual / "
        "autodiff median, each pooled over two separately compiled instances. A/A = one manual instance / the "
        "other, timed alongside: ratios this far from 1 are noise. GFLOP/s use the analytic matmul count of one "
        "training step.",
        "",
    ]


def _peaks_section(peaks: dict | None) -> list[str]:
    """The matmul peaks per library and dtype (none without --no-peaks' measurements)."""
    if peaks is None:
        return []
    dtypes = [d for d, e in peaks.get("jnp_dot", {}).items() if isinstance(e, dict)]  # measured
    lines = [
        "## Matmul peaks (GFLOP/s; jnp.dot: the best of the start and the end of the run)",
        "",
        "| source | " + " | ".join(dtypes) + " | note |",
        "|---|" + "---|" * (len(dtypes) + 1),
    ]
    for lib, entry in peaks.items():
        cells = [_peak_cell(entry[d]) if isinstance(entry.get(d), dict) else "-" for d in dtypes]
        note = entry.get("blas", entry.get("version", entry.get("error", entry.get("skipped", ""))))
        note += f" on {entry['device']}" if entry.get("device") else ""
        lines.append(f"| {lib} | " + " | ".join(cells) + f" | {note} |")
    lines.append("")
    return lines


def _steps_table(configs: dict) -> list[str]:
    """Every config's steps: manual and autodiff times, their ratio and A/A, compile times, GFLOP/s and peaks."""
    lines = [
        "## Manual backprop vs autodiff",
        "",
        "| config | dtype | kind | manual | autodiff | ratio | A/A | compile s (m/a) | GFLOP/s (m) | "
        "% jnp.dot peak | % practical peak | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for name, entry in configs.items():
        for kind in KINDS:
            if kind not in entry:
                continue
            m, a = entry[kind]["manual"], entry[kind]["autodiff"]
            label = f"fused x{entry['config']['fused_steps']} (per step)" if kind == "fused" else kind
            lines.append(
                f"| {name} | {entry['config']['dtype']} | {label} | {_step(m)} | {_step(a)} | "
                f"{entry[kind]['ratio_manual_over_autodiff']:.3f} | {entry[kind].get('noise_floor_ratio', nan):.3f} | "
                f"{m['compile_s']:.2f}/{a['compile_s']:.2f} | "
                f"{m['gflops_per_s']:.2f} | {_pct(m.get('fraction_of_jnp_dot_peak'))} | "
                f"{_pct(m.get('fraction_of_practical_peak'))} | "
                f"{'-'.join(str(v) for v in entry.get('load_average', []))} |"
            )
    return lines


def _side_by_side_section(side: dict | None) -> list[str]:
    """The large step against jnp.dot and against its own matmuls alone, all timed side by side."""
    if not side:
        return []
    dots = ", ".join(f"{name} {v:.1f}" for name, v in side["jnp_dot_gflops_per_s"].items())
    lines = [
        "",
        f"## `{side['config']}` sgd step and jnp.dot timed side by side ({side['dtype']}, medians of "
        "alternating samples)",
        "",
        f"Manual sgd step {side['step_gflops_per_s']:.1f} GFLOP/s; jnp.dot {dots} GFLOP/s; the step is "
        f"{100 * side['fraction_of_jnp_dot']:.1f} % of the best dot.",
    ]
    if "matmuls_alone_s" in side:
        lines += [
            "",
            f"The step's own {side['matmul_count']} matmuls alone (same shapes and contractions, "
            f"nothing between them): {side['matmuls_alone_s'] * 1e3:.4g} ms, "
            f"{side['matmuls_alone_gflops_per_s']:.1f} GFLOP/s = "
            f"{100 * side['matmuls_alone_fraction_of_jnp_dot']:.1f} % of the best dot; the step takes "
            f"{side['step_s'] * 1e3:.4g} ms, {side['step_over_matmuls_alone']:.3f}x its matmuls: the rest is "
            "the work between them (bias, activation, masks, loss, optimizer, transposes).",
        ]
    return lines


def _flops_and_memory_table(configs: dict) -> list[str]:
    """Every compiled step's FLOPs (analytic and XLA's) and XLA's buffer sizes, with and without donation."""
    lines = [
        "",
        "## FLOPs and memory per compiled step (manual / autodiff)",
        "",
        "| config | kind | analytic GFLOP | XLA cost_analysis GFLOP (m/a) | temp MiB (m/a) | argument MiB | "
        "output MiB | alias MiB (m/a) | temp MiB, no donation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in configs.items():
        for kind in KINDS:
            if kind not in entry:
                continue
            m, a = entry[kind]["manual"], entry[kind]["autodiff"]
            analytic = entry["flops"]["step"]
            xla = "/".join(f"{x['xla_flops'] / 1e9:.4g}" if x.get("xla_flops") else "-" for x in (m, a))
            mm, am = m.get("memory") or {}, a.get("memory") or {}
            plain = (entry[kind].get("manual_no_donation") or {}).get("memory") or {}
            lines.append(
                f"| {name} | {kind} | {analytic / 1e9:.4g} | {xla} | {_mib(mm.get('temp'))}/{_mib(am.get('temp'))} | "
                f"{_mib(mm.get('argument'))} | {_mib(mm.get('output'))} | "
                f"{_mib(mm.get('alias'))}/{_mib(am.get('alias'))} | "
                f"{_mib(plain.get('temp')) if plain else '-'} |"
            )
    return lines


def _memory_section(mem: dict | None) -> list[str]:
    """The peak RSS (and device peak) of adam training with and without donation."""
    if not mem:
        return []
    lines = [
        "",
        f"## Peak process memory, adam training on `{mem['config']}` (own processes, "
        f"{mem.get('malloc', 'malloc as the run')})",
        "",
        "| donation | RSS before training MiB | peak RSS MiB | training peak above start MiB |",
        "|---|---|---|---|",
    ]
    for key in ("donate", "no_donation"):
        e = mem.get(key, {})
        if "rss_peak_bytes" in e:
            device = f" (device peak {_mib(e['device_peak_bytes'])} MiB)" if e.get("device_peak_bytes") else ""
            lines.append(
                f"| {key} | {_mib(e['rss_start_bytes'])} | {_mib(e['rss_peak_bytes'])} | "
                f"{_mib(e['train_peak_bytes'])}{device} |"
            )
        else:
            lines.append(f"| {key} | {e} | | |")
    return lines


def _peers_section(peers: dict | None) -> list[str]:
    """Each peer library's sgd steps per second per config, and how many of its rounds failed."""
    if not peers:
        return []
    names = list(dict.fromkeys(c for p in peers.values() for c in p.get("configs", {})))
    lines = [
        "",
        "## Peers: one sgd step, each library in its own process (steps/s, median; ms in brackets)",
        "",
        "| library | version | device | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for peer, entry in peers.items():
        if "configs" not in entry:
            lines.append(f"| {peer} | {entry} | |" + " |" * len(names))
            continue
        cells = []
        for n in names:
            c = entry["configs"].get(n)
            cells.append(f"{1 / c['step_s']['median']:.1f} ({_ms(c['step_s']['median'])})" if c else "-")
        lines.append(f"| {peer} | {entry.get('version')} | {entry.get('device', '-')} | " + " | ".join(cells) + " |")
    failed = {peer: len(e["errors"]) for peer, e in peers.items() if e.get("errors")}
    if failed:
        lines += [
            "",
            "Failed rounds (left out of the medians; their errors are in results.json): "
            + ", ".join(f"{peer} {n}" for peer, n in failed.items())
            + ".",
        ]
    return lines


def _digits_section(digits: dict | None) -> list[str]:
    """Seconds to 95 % test accuracy on digits per library, every round's and the median."""
    if not digits:
        return []
    lines = [
        "",
        "## Time to 95% test accuracy on digits (64-64 MLP, adam, batch 128, own processes)",
        "",
        "| library | seconds (median) | each round | epochs | final test accuracy |",
        "|---|---|---|---|---|",
    ]
    for lib, e in digits.items():
        if "seconds" in e:
            rounds = ", ".join(f"{v:.2f}" for v in e.get("seconds_samples", [e["seconds"]]))
            failed = f"; {len(e['errors'])} failed" if e.get("errors") else ""
            lines.append(f"| {lib} | {e['seconds']:.2f} | {rounds}{failed} | {e['epochs']} | {e['accuracy']:.3f} |")
        else:
            lines.append(f"| {lib} | {e} | | | |")
    return lines


def _target_context(t: dict) -> str:
    """The noise beside a ratio target: its A/A and its interval, where it has them."""
    parts = ([f"A/A {t['noise_floor']}"] if "noise_floor" in t else []) + (
        [f"95 % CI {t['ci95'][0]}-{t['ci95'][1]}"] if "ci95" in t else []
    )
    return f" ({'; '.join(parts)})" if parts else ""


def _targets_section(targets: list | None) -> list[str]:
    """Every target with its measured value and whether it is met."""
    if not targets:
        return []
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    return [
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['value']}{_target_context(t)} | {verdict[t['met']]} |" for t in targets),
    ]


PLOTS = ("manual_vs_autodiff.png", "fraction_of_peak.png", "peers_steps_per_s.png")


def write_outputs(results: dict, out: Path, *, plots: bool = True) -> None:
    """results.json, results.md and the plots in `out`, each file written whole (a temporary file, then
    a rename); a plot of `PLOTS` that these results do not make is removed, not left from a run before."""
    write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    write_text(out / "results.md", markdown(results))
    written = write_plots(results, out) if plots else set()
    for name in set(PLOTS) - written:
        (out / name).unlink(missing_ok=True)


def write_plots(results: dict, out: Path) -> set[str]:
    """The PNG plots (names from `PLOTS`) these results have data for; returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = (
        _ratio_plot(plt, results["configs"], out / "manual_vs_autodiff.png"),
        _fraction_of_peak_plot(plt, results["configs"], out / "fraction_of_peak.png"),
        _peers_plot(plt, results.get("peers", {}), out / "peers_steps_per_s.png"),
    )
    return {name for name, written in zip(PLOTS, plotted) if written}


def _ratio_plot(plt, configs: dict, path: Path) -> bool:
    """Every step's manual / autodiff ratio of medians, with its A/A beside it."""
    labels, manual, auto, noise = [], [], [], []
    for name, entry in configs.items():
        for kind in KINDS:
            if kind in entry:
                labels.append(f"{name}\n{kind}")
                manual.append(entry[kind]["manual"]["step_s"]["median"])
                auto.append(entry[kind]["autodiff"]["step_s"]["median"])
                noise.append(entry[kind].get("noise_floor_ratio", float("nan")))
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.3 * len(labels))), 4.5))
    xs = range(len(labels))
    ax.bar(list(xs), [m / a for m, a in zip(manual, auto)], 0.7, label="manual / autodiff")
    ax.plot(list(xs), noise, "k_", markersize=8, label="A/A: manual / manual (noise floor)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(xs), [label.replace("\n", " ") for label in labels], fontsize=6, rotation=90)
    ax.set_ylabel("step time ratio (median)")
    ax.set_title("manual backprop vs jax.value_and_grad (< 1: manual faster)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _fraction_of_peak_plot(plt, configs: dict, path: Path) -> bool:
    """The manual sgd steps' fractions of both peaks; nothing where no peak was measured (--no-peaks)."""
    names = [n for n, e in configs.items() if "sgd" in e]
    fractions = {
        key: [configs[n]["sgd"]["manual"].get(key) for n in names]
        for key in ("fraction_of_jnp_dot_peak", "fraction_of_practical_peak")
    }
    if all(v is None for values in fractions.values() for v in values):
        return False
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.4 * len(configs))), 4.5))
    for i, (key, label) in enumerate(
        (("fraction_of_jnp_dot_peak", "of jnp.dot peak"), ("fraction_of_practical_peak", "of numpy/torch peak"))
    ):
        vals = [math.nan if v is None else v for v in fractions[key]]  # unmeasured: no bar
        ax.bar([x + 0.4 * i - 0.2 for x in range(len(names))], vals, 0.4, label=label)
    ax.set_xticks(range(len(names)), names, fontsize=6, rotation=90)
    ax.set_ylabel("fraction of peak (sgd step, manual)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _peers_plot(plt, peers: dict, path: Path) -> bool:
    """Each peer's sgd steps per second per config; nothing where no peer answered."""
    answered = {p: e for p, e in peers.items() if "configs" in e}
    if not answered:
        return False
    names = list(dict.fromkeys(c for e in answered.values() for c in e["configs"]))  # in the run's order
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(answered)
    for i, (peer, e) in enumerate(answered.items()):
        vals = [1 / e["configs"][n]["step_s"]["median"] if n in e["configs"] else 0 for n in names]
        ax.bar([x + width * i for x in range(len(names))], vals, width, label=peer)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
    ax.set_yscale("log")
    ax.set_ylabel("sgd steps / s")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True
