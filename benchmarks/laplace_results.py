"""Laplace posteriors of trained networks on real data, against the MAP network, and their fit time against
laplace-torch's.

    python benchmarks/laplace_results.py [--datasets digits,mnist1d,diabetes] [--out benchmarks/results]
                                         [--no-peer] [--repeats 3]

For each data set: ``mlp-jax train --dataset NAME`` with its defaults (in a temporary folder), then for each
posterior (subset and structure) `mlp_jax.training.laplace_report.laplace_report`, exactly what ``mlp-jax
laplace --resume RUN`` runs: fitted on the training split in float64, the prior precision (and for
regression the noise) optimized by marginal likelihood, the probit predictive on the test split against the
MAP network's softmax (for regression a Gaussian with the noise of its training residuals).

Fit time: our `mlp_jax.laplace` (its first call, compilation included, and the median of `--repeats` later
calls) against laplace-torch's ``Laplace(...).fit(loader)`` (median of `--repeats`, in its own process,
``bench/workers/laplace_peer.py``) on the same weights, training split and chunk size, float64, CPU.

Writes laplace.json, laplace.md and laplace-<dataset>.png (reliability diagrams or coverage curves) into --out.
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
import numpy as np

import mlp_jax as mj
from mlp_jax.bench.environment import environment, load_average
from mlp_jax.bench.peers import run_worker
from mlp_jax.cli.main import main as mlp_jax_main
from mlp_jax.core.x64 import x64_mode
from mlp_jax.training.files import write_text
from mlp_jax.training.laplace_report import COVERAGE_LEVELS, laplace_report
from mlp_jax.training.plots import plot_coverage, plot_reliability
from mlp_jax.training.trained import as_float64, load_trained

# (subset, structure): full over every weight is out of reach beyond 10,000 weights
POSTERIORS = [("all", "diag"), ("all", "kron"), ("last_layer", "kron"), ("last_layer", "full"), ("all", "full")]
CHUNK = 128  # rows per curvature chunk, ours and laplace-torch's DataLoader


def train(name: str, runs: Path) -> Path:
    out = runs / name
    code = mlp_jax_main(["train", "--dataset", name, "--quiet", "--out", str(out)])
    if code != 0:
        raise SystemExit(f"mlp-jax train --dataset {name} exited with {code}")
    return out


def our_fit_times(trained, subset: str, structure: str, repeats: int) -> dict:
    likelihood = "classification" if trained.splits.data.task == "classification" else "regression"
    with x64_mode(True):
        params, x, y, _, _ = as_float64(trained)
        kw = dict(activation=trained.config.activation, likelihood=likelihood, subset=subset, structure=structure)
        samples = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            jax.block_until_ready(mj.laplace(params, x, y, batch_size=CHUNK, **kw))
            samples.append(time.perf_counter() - start)
    return {"first_s": samples[0], "median_s": statistics.median(samples[1:]), "samples": samples[1:]}


def peer_fit_times(trained, subset: str, structure: str, repeats: int, folder: Path) -> dict:
    likelihood = "classification" if trained.splits.data.task == "classification" else "regression"
    path = folder / f"{trained.config.dataset}.npz"
    if not path.exists():
        arrays = {
            f"{leaf}{l}": np.asarray(getattr(layer, leaf), np.float64)
            for l, layer in enumerate(trained.params)
            for leaf in "wb"
        }
        y = trained.splits.y_train if likelihood == "classification" else trained.splits.y_train.astype(np.float64)
        x = trained.splits.x_train.astype(np.float64)
        np.savez(path, x=x, y=y, x_test=x[:2], **arrays)
    case = dict(
        problem=str(path),
        activation=trained.config.activation,
        likelihood=likelihood,
        subset=subset,
        structure=structure,
        prior_precision=1.0,
        sigma_noise=1.0,
        batch_size=CHUNK,
        repeats=repeats,
    )
    answer = run_worker("laplace_peer.py", {"cases": [case]}, timeout=1800)
    if "results" not in answer:
        return {"error": answer.get("error", answer.get("skipped", "no answer"))}
    result = answer["results"][0]
    return {**result.get("fit_s", {}), "version": answer["laplace_version"], "torch": answer["torch_version"]}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"# Laplace posteriors of trained networks ({env['date_utc']})",
        "",
        f"`{results['command']}`; {env['cpu']}, {env['cpu_count']} CPUs, Python {env['python']}, "
        f"jax {env['versions']['jax']}, "
        f"load average {env['load_before']} before and {env['load_after']} after.",
        "",
        "Each network is `mlp-jax train --dataset NAME` with its defaults; each posterior is what `mlp-jax laplace "
        "--resume RUN --subset S --structure T` computes: fitted on the training split (float64), prior precision "
        "by marginal likelihood (and the noise, for regression), test split.",
        "",
    ]
    for name, entry in results["datasets"].items():
        classification = entry["likelihood"] == "classification"
        metrics = ["nll", "accuracy", "ece", "brier"] if classification else ["nll", "mse", "coverage_95"]
        lines += [
            f"## {name}: {'-'.join(map(str, entry['sizes']))} {entry['activation']}, {entry['n_train']} training and "
            f"{entry['n_test']} test examples",
            "",
            "| model | weights | prior precision | log evidence | " + " | ".join(f"test {m}" for m in metrics) + " |",
            "|---|---|---|---|" + "---|" * len(metrics),
            "| MAP | | | | " + " | ".join(f"{entry['map'][m]:.4f}" for m in metrics) + " |",
        ]
        for post in entry["posteriors"]:
            if "error" in post:
                lines.append(f"| Laplace {post['subset']} {post['structure']} | {post['error']} |")
                continue
            lines.append(
                f"| Laplace {post['subset']} {post['structure']} | {post['num_parameters']} | "
                f"{post['prior_precision']:.3g} | {post['log_marginal_likelihood']:.1f} | "
                + " | ".join(f"{post['test'][m]:.4f}" for m in metrics)
                + " |"
            )
        lines += ["", f"![{name}](laplace-{name}.png)", ""]
    timing = [
        (name, post)
        for name, entry in results["datasets"].items()
        for post in entry["posteriors"]
        if "fit_time" in post
    ]
    if timing:
        lines += [
            "## Fit time against laplace-torch",
            "",
            f"The same weights, training split and chunk of {CHUNK} rows, float64, CPU; ours: the first call "
            "(compilation included) and the median of the later ones; laplace-torch (its default curvlinops "
            "backend, own process): the median of its fits.",
            "",
            "| data set | posterior | ours, first call | ours, median | laplace-torch, median | laplace-torch / ours |",
            "|---|---|---|---|---|---|",
        ]
        for name, post in timing:
            ours_t, peer = post["fit_time"]["ours"], post["fit_time"]["laplace_torch"]
            if "median" in peer:
                ratio = f"{peer['median'] / ours_t['median_s']:.1f}"
                peer_text = f"{peer['median']:.3f} s"
            else:
                ratio, peer_text = "", peer.get("error", "not run")
            lines.append(
                f"| {name} | {post['subset']} {post['structure']} | {ours_t['first_s']:.3f} s | "
                f"{ours_t['median_s']:.3f} s | {peer_text} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist1d,diabetes")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip laplace-torch's fit times")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": shlex.join(["python", *sys.argv]),
        "environment": {**environment(), "load_before": load_average()},
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for name in args.datasets.split(","):
            trained = load_trained(train(name, runs))
            entry: dict = {"posteriors": []}
            curves: dict = {}
            for subset, structure in POSTERIORS:
                try:
                    report, _, post_curves = laplace_report(trained, structure=structure, subset=subset)
                except mj.UsageError as error:  # full over too many weights
                    entry["posteriors"].append({"subset": subset, "structure": structure, "error": str(error)})
                    continue
                entry.update(
                    {k: report[k] for k in ("sizes", "activation", "likelihood", "n_train", "n_test")},
                    map=report["test"]["map"],
                )
                if "map_sigma_noise" in report:
                    entry["map_sigma_noise"] = report["map_sigma_noise"]
                label = f"Laplace {subset} {structure}"
                curves.setdefault("MAP", post_curves["map"])
                curves[label] = post_curves["laplace"]
                keep = ("subset", "structure", "num_parameters", "prior_precision", "sigma_noise")
                post = {k: report[k] for k in keep}
                post.update(
                    log_marginal_likelihood=report["log_marginal_likelihood"],
                    test=report["test"]["laplace"],
                    fit_seconds=report["fit_seconds"],
                    optimize_seconds=report["optimize_seconds"],
                )
                if name == "digits" or (name == "mnist1d" and structure == "kron"):
                    post["fit_time"] = {"ours": our_fit_times(trained, subset, structure, args.repeats)}
                    post["fit_time"]["laplace_torch"] = (
                        {"error": "not run (--no-peer)"}
                        if args.no_peer
                        else peer_fit_times(trained, subset, structure, args.repeats, runs)
                    )
                entry["posteriors"].append(post)
                print(name, subset, structure, post["test"], flush=True)
            title = f"{name}: test split, MAP and Laplace posteriors"
            if entry["likelihood"] == "classification":
                plot_reliability(curves, out / f"laplace-{name}.png", title)
            else:
                plot_coverage(COVERAGE_LEVELS, curves, out / f"laplace-{name}.png", title)
            results["datasets"][name] = entry
    results["environment"]["load_after"] = load_average()
    write_text(out / "laplace.json", json.dumps(results, indent=2) + "\n")
    write_text(out / "laplace.md", markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
