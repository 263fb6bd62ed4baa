"""The `mlp-jax` command line: `train`, `gradcheck`, `curvcheck`, `bench`, `laplace` and `hessian` subcommands.

Bad input (unknown names, malformed flags, missing or malformed files) prints one line on stderr and
exits with code 2, no traceback. Each subcommand lives in its own module and exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``; it raises `UsageError` for bad input found
before any work starts. ``mlp-jax`` with no subcommand trains the default model.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence

from mlp_jax.core.errors import UsageError

SUBCOMMANDS = {
    "train": ("mlp_jax.cli.train", "train an MLP on a data set; write metrics, plots and a checkpoint"),
    "gradcheck": ("mlp_jax.cli.gradcheck", "compare manual, autodiff and finite-difference gradients"),
    "curvcheck": ("mlp_jax.cli.curvcheck", "compare each curvature quantity with its float64 autodiff reference"),
    "bench": ("mlp_jax.cli.bench", "benchmark manual against autodiff gradients"),
    "laplace": ("mlp_jax.cli.laplace", "a Laplace posterior for a trained run; its calibration on the test split"),
    "hessian": ("mlp_jax.cli.hessian", "the loss Hessian's top eigenvalues, trace and spectral density of a run"),
}
USAGE = f"""usage: mlp-jax [--import MODULE ...] [{{{",".join(SUBCOMMANDS)}}}] [options]

Multilayer perceptrons in JAX with a hand-written backprop.

commands:
{chr(10).join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())}

  --import MODULE  import a module first (one that calls register_activation, say), found in the
                   current directory as with python -m; repeatable
  mlp-jax COMMAND --help shows a command's options; no command means train.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, without argparse's usage block
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _current_directory_first() -> None:
    """Put the current directory first on `sys.path`, as ``python -m`` does, so that ``--import mymodule``
    finds ``./mymodule.py``: the ``mlp-jax`` console script's path starts at its own folder instead."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def main(argv: Sequence[str] | None = None) -> int:
    rest = list(sys.argv[1:] if argv is None else argv)
    imports = []
    while rest[:1] == ["--import"] or (rest and rest[0].startswith("--import=")):
        if rest[0] == "--import":
            if len(rest) < 2:
                print("mlp-jax: error: --import needs a module name", file=sys.stderr)
                return 2
            imports.append(rest[1])
            rest = rest[2:]
        else:
            imports.append(rest.pop(0).split("=", 1)[1])
    if rest[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    command = "train"
    if rest and not rest[0].startswith("-"):
        command = rest.pop(0)
        if command not in SUBCOMMANDS:
            print(f"mlp-jax: error: unknown command {command!r}; expected one of {list(SUBCOMMANDS)}", file=sys.stderr)
            return 2
    if imports:
        _current_directory_first()
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as error:
            print(f"mlp-jax: error: --import {module}: {error}", file=sys.stderr)
            return 2
    module_name, description = SUBCOMMANDS[command]
    subcommand = importlib.import_module(module_name)
    parser = _Parser(prog=f"mlp-jax {command}", description=description)
    subcommand.add_cli_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    args.command_line = shlex.join(["mlp-jax", command, *rest])  # recorded by outputs that say how to reproduce them
    try:
        return int(subcommand.run_cli(args))
    except UsageError as error:
        print(f"mlp-jax {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
