"""The loss Hessian's spectrum of a digits network as it trains, and the top eigenvalue's time against
PyHessian's.

    python benchmarks/spectrum_results.py [--epochs 1,5,20,50] [--out benchmarks/results] [--no-peer]

Spectrum: ``mlp-jax train --dataset digits`` with its defaults, stopped and resumed at each of --epochs; at
each, `mlp_jax.training.hessian_report.hessian_report` (what ``mlp-jax hessian --resume RUN --top 5 --trace
--density`` computes): the top 5 eigenvalues (Lanczos, 100 steps), the trace (Hutchinson, 100 Rademacher
probes) and the density (SLQ, 10 probes of 100 steps) of the Hessian of the mean training loss, float64.

Against PyHessian (its power iteration with deflation, its defaults: at most 100 iterations, relative
tolerance 1e-3; its Hutchinson trace, at most 100 probes, tolerance 1e-3), in its own process, on the trained
weights and the whole training split as one batch, float32 (PyHessian's own dtype), CPU: seconds per call
(median of --repeats), and ours for the same quantity (`mlp_jax.hessian_eigenvalues` with 20 Lanczos steps,
`mlp_jax.hessian_trace` with 100 probes), first call (compilation) and the median of later ones.

Writes spectrum.json, spectrum.md and spectrum-digits.png into --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import mlp_jax as mj
from mlp_jax.bench.environment import environment, load_average
from mlp_jax.bench.peers import run_worker
from mlp_jax.cli.main import main as mlp_jax_main
from mlp_jax.training.files import write_text
from mlp_jax.training.hessian_report import hessian_report
from mlp_jax.training.plots import plot_spectral_density
from mlp_jax.training.trained import load_trained


def timed(fn, repeats: int) -> dict:
    samples = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        samples.append(time.perf_counter() - start)
    return {"first_s": samples[0], "median_s": statistics.median(samples[1:]), "value": out}


def against_pyhessian(trained, repeats: int, folder: Path, run_peer: bool) -> dict:
    params = trained.params  # float32, as trained
    x, y = jnp.asarray(trained.splits.x_train), jnp.asarray(trained.splits.y_train)
    kw = dict(activation=trained.config.activation, loss="softmax_cross_entropy", key=jax.random.key(0))
    ours = {}
    for k in (1, 5):
        t = timed(lambda k=k: mj.hessian_eigenvalues(params, x, y, k=k, num_iterations=20, **kw).values, repeats)
        ours[f"top_{k}"] = {**t, "value": np.asarray(t["value"]).tolist()}
    t = timed(lambda: mj.hessian_trace(params, x, y, num_samples=100, **kw).value, repeats)
    ours["trace"] = {**t, "value": float(t["value"])}
    result = {"ours": ours, "n": int(x.shape[0]), "dtype": "float32"}
    if not run_peer:
        result["pyhessian"] = {"skipped": "not run (--no-peer)"}
        return result
    path = folder / "digits.npz"
    arrays = {f"{leaf}{l}": np.asarray(getattr(layer, leaf)) for l, layer in enumerate(params) for leaf in "wb"}
    np.savez(path, x=np.asarray(x), y=np.asarray(y), **arrays)
    peer = {}
    for k in (1, 5):
        request = dict(
            problem=str(path),
            activation=trained.config.activation,
            loss="softmax_cross_entropy",
            dtype="float32",
            top_n=k,
            repeats=repeats,
            trace=k == 1,
        )
        peer[f"top_{k}"] = run_worker("pyhessian_peer.py", request, timeout=3600)
    result["pyhessian"] = peer
    return result


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"# The Hessian's spectrum of a digits network ({env['date_utc']})",
        "",
        f"`{results['command']}`; {env['cpu']}, {env['cpu_count']} CPUs, Python {env['python']}, "
        f"jax {env['versions']['jax']}; "
        f"load average {env['load_before']} before, {env['load_after']} after.",
        "",
        "| epochs | test accuracy | top 5 eigenvalues | trace (± standard error) | seconds (top 5, trace, density) |",
        "|---|---|---|---|---|",
    ]
    for row in results["epochs"]:
        s = row["seconds"]
        lines.append(
            f"| {row['epochs']} | {row['test_accuracy']:.2%} | "
            + ", ".join(f"{v:.4g}" for v in row["top_eigenvalues"])
            + f" | {row['trace']['value']:.4g} ± {row['trace']['standard_error']:.2g} | "
            f"{s['top_eigenvalues']:.1f}, {s['trace']:.1f}, {s['density']:.1f} |"
        )
    lines += ["", "![spectral density](spectrum-digits.png)", ""]
    cmp = results["against_pyhessian"]
    ours, peer = cmp["ours"], cmp["pyhessian"]
    lines += [
        f"Against PyHessian on the trained network, {cmp['n']} training examples as one batch, {cmp['dtype']}:",
        "",
        "| quantity | ours: value | ours: first call, later median | PyHessian: value | PyHessian: median | "
        "PyHessian / ours |",
        "|---|---|---|---|---|---|",
    ]
    for k in (1, 5):
        o, p = ours[f"top_{k}"], peer.get(f"top_{k}", {}) if isinstance(peer, dict) else {}
        if "eigenvalues" in p:
            value, median = ", ".join(f"{v:.5g}" for v in p["eigenvalues"]), p["eigenvalues_s"]["median"]
            ratio = f"{median / o['median_s']:.1f}"
            peer_text = f"{median:.2f} s"
        else:
            value, peer_text, ratio = p.get("error", peer.get("skipped", "")) if isinstance(peer, dict) else "", "", ""
        lines.append(
            f"| top {k} eigenvalue{'s' if k > 1 else ''} | {', '.join(f'{v:.5g}' for v in o['value'])} | "
            f"{o['first_s']:.2f} s, {o['median_s']:.3f} s | {value} | {peer_text} | {ratio} |"
        )
    p1 = peer.get("top_1", {}) if isinstance(peer, dict) else {}
    o = ours["trace"]
    if "trace" in p1:
        lines.append(
            f"| trace | {o['value']:.5g} | {o['first_s']:.2f} s, {o['median_s']:.3f} s | {p1['trace']:.5g} "
            f"({p1['trace_samples']} probes) | {p1['trace_s']['median']:.2f} s | "
            f"{p1['trace_s']['median'] / o['median_s']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="1,5,20,50")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip PyHessian")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": shlex.join(["python", *sys.argv]),
        "environment": {**environment(), "load_before": load_average()},
        "epochs": [],
    }
    densities = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "digits"
        for i, epochs in enumerate(int(e) for e in args.epochs.split(",")):
            argv = ["train", "--dataset", "digits", "--quiet", "--epochs", str(epochs)]
            argv += ["--out", str(run)] if i == 0 else ["--resume", str(run)]
            if mlp_jax_main(argv) != 0:
                raise SystemExit(f"mlp-jax {' '.join(argv)} failed")
            trained = load_trained(run)
            report = hessian_report(trained, top=5, trace=True, density=True)
            metrics = json.loads((run / "metrics.json").read_text())
            row = {
                "epochs": trained.epochs,
                "test_accuracy": metrics["test_accuracy"],
                "top_eigenvalues": report["top_eigenvalues"],
                "residuals": report["residuals"],
                "trace": report["trace"],
                "seconds": report["seconds"],
                "density": {k: report["density"][k] for k in ("grid", "density", "bandwidth")},
            }
            results["epochs"].append(row)
            densities[f"{trained.epochs} epochs"] = (report["density"]["grid"], report["density"]["density"])
            print(epochs, row["top_eigenvalues"], row["trace"], flush=True)
        plot_spectral_density(
            densities, out / "spectrum-digits.png", "digits 64-128-128-10 relu: Hessian spectral density (SLQ)"
        )
        results["against_pyhessian"] = against_pyhessian(trained, args.repeats, Path(tmp), not args.no_peer)
    results["environment"]["load_after"] = load_average()
    write_text(out / "spectrum.json", json.dumps(results, indent=2) + "\n")
    write_text(out / "spectrum.md", markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
