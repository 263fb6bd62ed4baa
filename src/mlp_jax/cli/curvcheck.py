"""``mlp-jax curvcheck``: `check_curvature` on a random net of the given sizes, a per-layer table of each
curvature quantity against its float64 autodiff reference; exit 0 when every check passes, 1 when one
fails, 2 on bad arguments."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from mlp_jax.core.activations import get_activation
from mlp_jax.core.errors import UsageError
from mlp_jax.core.losses import get_loss, target_kind
from mlp_jax.core.params import check_size_limits
from mlp_jax.core.x64 import x64_mode
from mlp_jax.tools.curvcheck import check_curvature
from mlp_jax.tools.gradcheck import DTYPES, random_problem
from mlp_jax.training.files import write_text

MAX_PARAMETERS = 4096  # the reference is a dense P x P Hessian


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="4,8,8,3", help="layer sizes d_0,...,d_L (default 4,8,8,3)")
    parser.add_argument("--activation", default="tanh", help="activation name (default tanh)")
    parser.add_argument("--loss", default="softmax_cross_entropy", help="loss name (default softmax_cross_entropy)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="default float64")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the net, the data and v (default 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"--sizes must be comma-separated positive integers such as 4,8,8,3, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise UsageError(f"--sizes needs at least two positive integers (input and output), got {text!r}")
    try:
        check_size_limits(sizes)
    except ValueError as error:
        raise UsageError(f"--sizes: {error}") from None
    count = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    if count > MAX_PARAMETERS:
        raise UsageError(
            f"--sizes: the reference is a dense Hessian, so at most {MAX_PARAMETERS} parameters, got {count}"
        )
    return sizes


def run_cli(args: argparse.Namespace) -> int:
    sizes = _sizes(args.sizes)
    if not 1 <= args.batch <= 4096:
        raise UsageError(f"--batch must be in [1, 4096], got {args.batch}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    try:
        get_activation(args.activation), get_loss(args.loss)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if target_kind(args.loss) == "labels" and sizes[-1] < 2:
        raise UsageError(f"loss {args.loss!r} takes class labels: the last size must be >= 2, got {sizes[-1]}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"cannot write --json {args.json}: its directory does not exist")
    with x64_mode(True):
        params, x, y = random_problem(sizes, args.batch, args.loss, DTYPES[args.dtype], args.seed)
        try:
            report = check_curvature(params, x, y, activation=args.activation, loss=args.loss, seed=args.seed)
        except ValueError as error:  # a registered name without the second derivatives the check needs
            raise UsageError(str(error)) from None
    print(report.table())
    if args.json:
        try:
            write_text(Path(args.json), report.to_json() + "\n")
        except OSError as error:
            raise UsageError(f"cannot write --json {args.json}: {error.strerror}") from None
    return 0 if report.ok else 1
