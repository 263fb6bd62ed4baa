"""The run directory of `mlp-jax train`: the names of its files, the checks made on it before a run starts (it
can be written; it does not hold another run unless that one is to be replaced), the progress saved with its
checkpoint, and ``metrics.json`` (strict JSON) and the plots written into it."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import CheckpointError, UsageError
from mlp_jax.core.model import forward
from mlp_jax.core.params import Params
from mlp_jax.training.checkpoint import read_metadata
from mlp_jax.training.config import ResolvedConfig, is_json_number
from mlp_jax.training.data import Dataset
from mlp_jax.training.files import write_text

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
PLOTS = ("loss.png", "decision_boundary.png")
RUN_FILES = (CHECKPOINT, METRICS, *PLOTS)  # what a run writes; a directory with either of the first two holds one


def check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """UsageError unless a run can write into `out`: a directory, or one that can be created (nothing is
    created here); for a new run, one that holds no run yet, unless `overwrite` is set."""
    if resume and overwrite:
        raise UsageError("overwrite=True starts a new run; resume=True continues one: ask for one of them")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output directory {str(out)!r} exists and is not a directory")
    if not out.exists():
        ancestor = next(p for p in out.absolute().parents if p.exists())
        if not ancestor.is_dir():
            raise UsageError(f"cannot create output directory {str(out)!r}: {str(ancestor)!r} is not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise UsageError(f"cannot create output directory {str(out)!r}: {str(ancestor)!r} is not writable")
    elif not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {str(out)!r} is not writable")
    held = [name for name in (CHECKPOINT, METRICS) if (out / name).exists()]
    if held and not resume and not overwrite:
        raise UsageError(
            f"{out} already holds a run ({', '.join(held)}); pass --overwrite to replace it, "
            f"--resume {out} to continue it, or another --out"
        )


def clear_run(out: Path) -> None:
    """Remove the files of the run in `out` (`RUN_FILES`), so that a new run there never mixes with it."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def saved_epoch(out: Path) -> int | None:
    """The epoch count of the checkpoint in `out` as it is on disk; None when there is no readable one."""
    try:
        epoch = read_metadata(out / CHECKPOINT).get("epoch")
    except CheckpointError:
        return None
    return epoch if isinstance(epoch, int) else None


def saved_progress(path: Path) -> dict[str, Any]:
    """The epoch count, history and best validation loss saved with the checkpoint at `path`, checked;
    UsageError naming the field for anything malformed."""
    try:
        meta = read_metadata(path)
    except CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None

    def bad(field: str, expected: str) -> UsageError:
        return UsageError(
            f"cannot resume from {path}: metadata {field!r}: expected {expected}, found {meta.get(field)!r:.200}"
        )

    epoch, history, best = meta.get("epoch"), meta.get("history"), meta.get("best")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise bad("epoch", "an int >= 0")
    if (
        not isinstance(history, list)
        or len(history) != epoch
        or not all(
            isinstance(h, dict) and all(isinstance(k, str) and is_json_number(v) for k, v in h.items()) for h in history
        )
    ):
        raise bad("history", f"a list of {epoch} dicts of numbers, one per epoch")
    if not (
        isinstance(best, dict)
        and set(best) == {"val_loss", "epoch"}
        and isinstance(best["epoch"], int)
        and (best["val_loss"] is None or is_json_number(best["val_loss"]))
    ):
        raise bad("best", "{'val_loss': a number or None, 'epoch': an int}")
    if best["val_loss"] is not None and not math.isfinite(best["val_loss"]):  # inf, too, means no validation loss yet
        best = {"val_loss": None, "epoch": best["epoch"]}
    return {"epoch": epoch, "history": history, "best": best}


def finite_or_null(tree: Any, where: str = "") -> tuple[Any, list[str]]:
    """`tree` (dicts, lists, numbers) with every NaN or infinite float replaced by None, and the paths
    of those replaced (``history[3].test_loss``)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return None, [where]
    if isinstance(tree, dict):
        pairs = [(k, finite_or_null(v, f"{where}.{k}" if where else k)) for k, v in tree.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, paths) in pairs for p in paths]
    if isinstance(tree, list):
        items = [finite_or_null(v, f"{where}[{i}]") for i, v in enumerate(tree)]
        return [v for v, _ in items], [p for _, paths in items for p in paths]
    return tree, []


def write_metrics(out: Path, metrics: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Write `metrics` to ``out/metrics.json`` as strict JSON (no NaN or Infinity tokens): a value that is not
    finite becomes null, with a warning on stderr unless `quiet`. Returns the metrics as written."""
    metrics, not_finite = finite_or_null(metrics)
    if not_finite and not quiet:
        print(
            f"mlp-jax train: warning: {', '.join(not_finite)} not finite (null in {METRICS}); the test "
            "split may hold values far outside the training split's range",
            file=sys.stderr,
        )
    write_text(out / METRICS, json.dumps(metrics, indent=2, allow_nan=False))
    return metrics


def write_plots(out: Path, history: list[dict], data: Dataset, params: Params, config: ResolvedConfig) -> None:
    """``loss.png``, and ``decision_boundary.png`` for a classification set with two features."""
    from mlp_jax.training.plots import plot_decision_boundary, plot_history

    plot_history(history, out / "loss.png", title=f"{data.name}: {config.activation} MLP {list(config.hidden)}")
    if data.x_train.shape[1] == 2 and data.task == "classification":
        params = jax.tree.map(np.asarray, params)  # on the host: no eager ops on global arrays

        def predict(grid: np.ndarray) -> np.ndarray:
            logits = np.asarray(forward(params, jnp.asarray(grid), config.activation))
            return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)

        x = np.concatenate([data.x_train, data.x_test])
        y = np.concatenate([data.y_train, data.y_test])
        plot_decision_boundary(predict, x, y, out / "decision_boundary.png", title=f"{data.name}: decision boundary")
