"""``mlp-jax hessian``: the spectrum of a trained run's loss Hessian on its training split
(`mlp_jax.training.hessian_report`): top eigenvalues, trace, spectral density; writes hessian.json and,
with --density, hessian_density.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlp_jax.core.errors import UsageError
from mlp_jax.second_order.spectrum import MATRICES
from mlp_jax.training.hessian_report import hessian_report, write_hessian
from mlp_jax.training.trained import load_trained


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", required=True, metavar="RUN_DIR", help="a run that mlp-jax train wrote")
    parser.add_argument("--top", type=int, default=5, help="how many top eigenvalues (default 5; 0 for none)")
    parser.add_argument("--trace", action="store_true", help="estimate the trace (Hutchinson)")
    parser.add_argument("--density", action="store_true", help="the spectral density (stochastic Lanczos quadrature)")
    parser.add_argument("--matrix", default="hessian", choices=MATRICES, help="hessian (default) or its GGN")
    parser.add_argument("--iterations", type=int, help="Lanczos steps (default min(parameters, 100))")
    parser.add_argument("--samples", type=int, default=100, help="Hutchinson probes (default 100)")
    parser.add_argument("--probes", type=int, default=10, help="SLQ probes (default 10)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per product chunk (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random probes (default 0)")
    parser.add_argument("--out", metavar="DIR", help="where to write hessian.json (default RUN_DIR)")


def run_cli(args: argparse.Namespace) -> int:
    for name in ("top", "seed"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("samples", "probes", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.iterations is not None and args.iterations < 1:
        raise UsageError(f"--iterations must be >= 1, got {args.iterations}")
    if not (args.top or args.trace or args.density):
        raise UsageError("nothing to compute: ask for --top K, --trace or --density")
    out = Path(args.out) if args.out else Path(args.resume)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is not a directory")
    trained = load_trained(args.resume)
    report = hessian_report(
        trained,
        top=args.top,
        trace=args.trace,
        density=args.density,
        matrix=args.matrix,
        num_iterations=args.iterations,
        num_samples=args.samples,
        num_probes=args.probes,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    report["command"] = args.command_line
    try:
        written = write_hessian(out, report)
    except OSError as error:
        raise UsageError(f"cannot write into {str(out)!r}: {error.strerror}") from None
    print(
        f"hessian: {report['dataset']} {report['sizes']}, {report['epochs']} epochs, {report['num_parameters']} weights"
    )
    if "top_eigenvalues" in report:
        print("top eigenvalues: " + ", ".join(f"{v:.5g}" for v in report["top_eigenvalues"]))
    if "trace" in report:
        print(f"trace: {report['trace']['value']:.5g} +- {report['trace']['standard_error']:.2g} (standard error)")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
