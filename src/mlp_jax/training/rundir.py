"""The run directory of `mlp-jax train`: the names of its files, the checks made on it before a run starts (it
can be written; it does not hold another run unless that one is to be replaced), the progress saved with its
checkpoint, and ``metrics.json`` (strict JSON) and the plots written into it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import CheckpointError, UsageError
from mlp_jax.core.model import forward
from mlp_jax.core.params import Params
from mlp_jax.training.checkpoint import read_leaf_shapes, read_metadata
from mlp_jax.training.config import ResolvedConfig, TrainConfig, config_from_saved, is_json_number
from mlp_jax.training.data import IDX_FILES, KNOWN_DATASETS, Dataset
from mlp_jax.training.files import write_text

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
PLOTS = ("loss.png", "confusion.png", "decision_boundary.png")
RUN_FILES = (CHECKPOINT, METRICS, *PLOTS)  # what a run writes; a directory with either of the first two holds one


def check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """UsageError unless a run can write into `out`: a directory, or one that can be created (nothing is
    created here); for a new run, one that holds no run yet, unless `overwrite` is set."""
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


# ------------------------------------------------------------------------------------------ resuming

# the fields of a run's config that may change when it is resumed; any other that is given must match
MAY_CHANGE_ON_RESUME = ("epochs", "patience", "restore_best", "devices")
_MAY_CHANGE = "--epochs, --patience, --restore-best, --devices, --quiet and the multi-host options"


def dataset_sha256(dataset: str) -> str | None:
    """The sha256 of a user's data (a file's bytes; for a folder, the MNIST IDX files in it by name), or
    None for a built-in data set or a path that does not exist."""
    path = Path(dataset)
    if dataset in KNOWN_DATASETS or not path.exists():
        return None
    if not path.is_dir():
        return _file_sha256(path)
    names = sorted(p.name for p in path.iterdir() if p.name in IDX_FILES or p.name.removesuffix(".gz") in IDX_FILES)
    listing = "".join(f"{name}\0{_file_sha256(path / name)}\n" for name in names)
    return hashlib.sha256(listing.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _flag(field: str, value: Any) -> str:
    """``--hidden 16,16``: a config field and its value as the command line spells them."""
    if isinstance(value, tuple):
        value = ",".join(map(str, value)) or "none"
    return f"--{field.replace('_', '-')} {value}"


def resumed_config(config: TrainConfig, out: Path) -> TrainConfig:
    """The config to continue the run in `out` with: the saved one, with `config`'s epochs, patience,
    restore_best and devices (where given). Every other field of `config` that is not None must equal
    the saved one: UsageError naming the first that contradicts it. The data set must be the saved one:
    a user file found at its saved (resolved) path with its saved sha256, or, given in `config`, a file
    elsewhere with that sha256 (it moved)."""
    path = out / CHECKPOINT
    try:
        meta = read_metadata(path)
    except CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None
    saved = config_from_saved(meta.get("config"), str(path))
    changed: dict[str, Any] = {}
    for field in (f.name for f in dataclasses.fields(TrainConfig)):
        given, was = getattr(config, field), getattr(saved, field)
        if field == "dataset" or given is None or given == was:
            continue
        if field == "patience" and was is None:
            raise UsageError(
                f"{_flag(field, given)}: the run in {out} was started without --patience (no validation "
                "split); start a new run to use early stopping"
            )
        if field not in MAY_CHANGE_ON_RESUME:
            raise UsageError(
                f"{_flag(field, given)} contradicts the run in {out}, which has {_flag(field, was)}; "
                f"what may change on resume: {_MAY_CHANGE}"
            )
        changed[field] = given
    sha = meta.get("dataset_sha256")
    changed["dataset"] = _resumed_dataset(config.dataset, saved.dataset, sha if isinstance(sha, str) else None, out)
    return dataclasses.replace(saved, **changed)


def saved_dataset(saved: str, sha: str | None, out: Path) -> str:
    """The data set the run in `out` was trained on, `saved` as its checkpoint names it: a built-in name as
    it is, a user file's resolved path once it is checked to be there with its saved `sha` (UsageError
    otherwise)."""
    return _resumed_dataset(saved, saved, sha, out)


def _resumed_dataset(given: str, saved: str, sha: str | None, out: Path) -> str:
    """The data set to resume with (see `resumed_config`); UsageError when it is not the saved one."""
    if given in KNOWN_DATASETS or saved in KNOWN_DATASETS:
        if given != saved:
            raise UsageError(
                f"{_flag('dataset', given)} contradicts the run in {out}, which has {_flag('dataset', saved)}; "
                f"what may change on resume: {_MAY_CHANGE}"
            )
        return saved
    if Path(given).resolve() != Path(saved).resolve():
        if sha is None or dataset_sha256(given) != sha:
            why = f"its content differs (sha256 {sha[:12]}...)" if sha is not None else "that was not its data"
            raise UsageError(
                f"{_flag('dataset', given)} contradicts the run in {out}, which was trained on {saved!r}: {why}"
            )
        return str(Path(given).resolve())  # the file moved: the same bytes, elsewhere
    if not Path(saved).exists():
        raise UsageError(
            f"the run in {out} was trained on data file {saved!r}, which is not there any more; "
            "if it moved, pass its new path with --dataset"
        )
    if sha is not None and dataset_sha256(saved) != sha:
        raise UsageError(
            f"data file {saved!r} changed since the run started (sha256 {sha[:12]}... then, "
            f"{str(dataset_sha256(saved))[:12]}... now); the run in {out} cannot continue on other data"
        )
    return str(Path(saved).resolve())


def check_saved_widths(path: Path, hidden: tuple[int, ...]) -> None:
    """UsageError unless the weights saved in the checkpoint at `path` have the `hidden` widths its config
    names: checked on the saved shapes alone, before a network of that size is built."""
    try:
        shapes = read_leaf_shapes(path)
    except CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None
    weights: dict[int, tuple[int, ...]] = {}
    for leaf, shape in shapes.items():
        match = re.search(r"\.params\[(\d+)\]\.w$", leaf)
        if match and len(shape) == 2:
            weights.setdefault(int(match[1]), shape)
    widths = [weights[i][1] for i in sorted(weights)][:-1]
    if widths != list(hidden) or sorted(weights) != list(range(len(weights))):
        raise UsageError(
            f"cannot resume from {path}: its config says hidden {list(hidden)} but its saved weights have {widths}"
        )


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
    with_best = meta.get("best_params", False)  # absent before the best epoch's params were saved too
    if not isinstance(with_best, bool):
        raise bad("best_params", "true or false")
    return {"epoch": epoch, "history": history, "best": best, "best_params": with_best}


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
    """``loss.png`` (with the validation curves when there is a validation split), and for a classification
    set ``confusion.png`` (the test split) and, with two features, ``decision_boundary.png``."""
    from mlp_jax.training.plots import plot_confusion, plot_decision_boundary, plot_history

    plot_history(history, out / "loss.png", title=f"{data.name}: {config.activation} MLP {list(config.hidden)}")
    if data.task != "classification":
        return
    params = jax.tree.map(np.asarray, params)  # on the host: no eager ops on global arrays

    def predict(x: np.ndarray) -> np.ndarray:
        logits = np.asarray(forward(params, jnp.asarray(x), config.activation))
        return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)

    title = f"{data.name}, test split"
    plot_confusion(data.y_test, predict(data.x_test), data.num_classes, out / "confusion.png", data.class_names, title)
    if data.x_train.shape[1] == 2:
        x = np.concatenate([data.x_train, data.x_test])
        y = np.concatenate([data.y_train, data.y_test])
        plot_decision_boundary(predict, x, y, out / "decision_boundary.png", title=f"{data.name}: decision boundary")
