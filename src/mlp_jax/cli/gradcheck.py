"""``mlp-jax gradcheck``: `check_gradients` on a random net of the given sizes; exit 0 when every check
passes, 1 when one fails, 2 on bad arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlp_jax.core.activations import get_activation
from mlp_jax.core.errors import UsageError
from mlp_jax.core.losses import get_loss, target_kind
from mlp_jax.core.params import MAX_LAYER_SIZE, check_size_limits
from mlp_jax.core.x64 import x64_mode
from mlp_jax.tools.gradcheck import DTYPES, FD_MODES, check_gradients, random_problem
from mlp_jax.training.files import write_text


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="4,16,16,3", help="layer sizes d_0,...,d_L (default 4,16,16,3)")
    parser.add_argument("--activation", default="tanh", help="activation name (default tanh)")
    parser.add_argument("--loss", default="softmax_cross_entropy", help="loss name (default softmax_cross_entropy)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="params dtype (default float32)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the net, the data and the probes (default 0)")
    parser.add_argument("--fd-entries", type=int, default=64, help="finite-difference probes per big leaf (default 64)")
    parser.add_argument(
        "--fd-mode", default="entries", choices=list(FD_MODES), help="probe big leaves at random entries or directions"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")


def run_cli(args: argparse.Namespace) -> int:
    """Check a `random_problem`; print the table (and write the JSON); 0 when everything is within
    tolerance, 1 when not. Bad arguments raise `UsageError`."""
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise UsageError(
            f"--sizes must be comma-separated positive integers such as 4,16,16,3, got {args.sizes!r}"
        ) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise UsageError(f"--sizes needs at least two positive integers (input and output), got {args.sizes!r}")
    try:  # before anything is allocated: a size past the limits once aborted the interpreter
        check_size_limits(sizes)
    except ValueError as error:
        raise UsageError(f"--sizes: {error}") from None
    if args.batch < 1 or args.fd_entries < 1:
        raise UsageError(f"--batch and --fd-entries must be >= 1, got {args.batch} and {args.fd_entries}")
    if args.batch > MAX_LAYER_SIZE:
        raise UsageError(f"--batch must be at most {MAX_LAYER_SIZE} (MAX_LAYER_SIZE, 2**31 - 1), got {args.batch}")
    if args.seed < 0:  # numpy's and JAX's generators take non-negative seeds
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    try:
        get_activation(args.activation), get_loss(args.loss)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if target_kind(args.loss) == "labels" and sizes[-1] < 2:
        raise UsageError(f"loss {args.loss!r} takes class labels: the last size must be >= 2, got {sizes[-1]}")

    if args.json and not Path(args.json).resolve().parent.is_dir():  # before the work, not after it
        raise UsageError(f"cannot write --json {args.json}: its directory does not exist")
    with x64_mode(True):  # the reference and the finite differences are float64
        params, x, y = random_problem(sizes, args.batch, args.loss, DTYPES[args.dtype], args.seed)
        report = check_gradients(
            params,
            x,
            y,
            activation=args.activation,
            loss=args.loss,
            fd_entries=args.fd_entries,
            fd_mode=args.fd_mode,
            seed=args.seed,
        )
    print(report.table())
    if args.json:
        try:
            write_text(Path(args.json), report.to_json() + "\n")
        except OSError as error:
            raise UsageError(f"cannot write --json {args.json}: {error.strerror}") from None
    return 0 if report.ok else 1
