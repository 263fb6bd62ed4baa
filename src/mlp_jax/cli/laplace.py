"""``mlp-jax laplace``: a Laplace posterior for a trained run (`mlp_jax.training.laplace_report`): fitted on its
training split, the prior chosen by marginal likelihood, compared with the MAP network on the test split;
writes laplace.json and reliability.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlp_jax.core.errors import UsageError
from mlp_jax.second_order.glm import STRUCTURES, SUBSETS
from mlp_jax.second_order.laplace import LINKS
from mlp_jax.training.laplace_report import laplace_report, write_laplace
from mlp_jax.training.trained import load_trained


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", required=True, metavar="RUN_DIR", help="a run that mlp-jax train wrote")
    parser.add_argument("--structure", default="diag", choices=STRUCTURES, help="curvature structure (default diag)")
    parser.add_argument("--subset", default="all", choices=SUBSETS, help="weights the posterior is over (default all)")
    parser.add_argument("--link", default="probit", choices=LINKS, help="classification predictive (default probit)")
    parser.add_argument(
        "--prior-precision", type=float, help="use this prior precision instead of optimizing the marginal likelihood"
    )
    parser.add_argument("--batch-size", type=int, default=512, help="rows per curvature chunk (default 512)")
    parser.add_argument(
        "--out", metavar="DIR", help="where to write laplace.json and reliability.png (default RUN_DIR)"
    )


def _table(report: dict) -> str:
    test = report["test"]
    names = list(test["map"])
    rows = [f"{'test':<10}" + "".join(f"{name:>12}" for name in names)]
    for model in ("map", "laplace"):
        rows.append(f"{model:<10}" + "".join(f"{test[model][name]:>12.4f}" for name in names))
    head = (
        f"laplace: {report['dataset']} {report['sizes']}, {report['subset']} {report['structure']}, "
        f"{report['num_parameters']} weights; prior precision {report['prior_precision']:.4g}"
        + (f", sigma_noise {report['sigma_noise']:.4g}" if report["likelihood"] == "regression" else "")
        + f"; log marginal likelihood {report['log_marginal_likelihood']:.2f}; fit {report['fit_seconds']:.2f} s"
    )
    return "\n".join([head, *rows])


def run_cli(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.prior_precision is not None and not args.prior_precision > 0:
        raise UsageError(f"--prior-precision must be a positive number, got {args.prior_precision}")
    out = Path(args.out) if args.out else Path(args.resume)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is not a directory")
    trained = load_trained(args.resume)
    report, _, curves = laplace_report(
        trained,
        structure=args.structure,
        subset=args.subset,
        link=args.link,
        prior_precision=args.prior_precision,
        batch_size=args.batch_size,
    )
    report["command"] = args.command_line
    try:
        written = write_laplace(out, report, curves)
    except OSError as error:
        raise UsageError(f"cannot write into {str(out)!r}: {error.strerror}") from None
    print(_table(report))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
