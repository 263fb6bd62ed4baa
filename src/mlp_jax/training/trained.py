"""A finished `mlp-jax train` run, loaded back: its config, its splits rebuilt from the same data and seed, and
the params it reported (`load_trained`). What the commands that analyse a trained network (`mlp-jax laplace`,
`mlp-jax hessian`) start from.

Nothing is trained here and nothing in the run directory is written. The checkpoint is read as the untrusted
file it is (`mlp_jax.training.checkpoint`: no pickle, shapes checked against the config before anything is
allocated), and a user's data file must still be the one the run was trained on (its sha256).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import CheckpointError, UsageError
from mlp_jax.core.params import Params, check_layer_sizes, init_params
from mlp_jax.training.checkpoint import load_checkpoint, read_metadata
from mlp_jax.training.config import ResolvedConfig, config_from_saved, make_optimizer
from mlp_jax.training.rundir import CHECKPOINT, check_saved_widths, saved_dataset, saved_progress
from mlp_jax.training.splits import Splits, load_splits
from mlp_jax.training.steps import init_train_state, num_batches

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained run: `params` are those its ``metrics.json`` reports (the best validation epoch's when the run
    restored them, else the last epoch's), `epochs` how many it trained, `splits` its host arrays."""

    run_dir: Path
    config: ResolvedConfig
    splits: Splits
    params: Params
    epochs: int
    restored_best: bool

    @property
    def sizes(self) -> list[int]:
        """The layer sizes, input first: ``[d_in, *hidden, n_out]``."""
        return [self.splits.x_train.shape[1], *self.config.hidden, self.splits.n_out]


class Float64Run(NamedTuple):
    """A trained run's params and splits as float64 JAX arrays; integer labels stay integers."""

    params: Params
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array


def as_float64(trained: Trained) -> Float64Run:
    """The run's params (float32 as trained, cast) and its training and test splits in float64, for the
    analyses that run in float64 (`mlp-jax laplace`, `mlp-jax hessian`). Needs JAX's 64-bit mode on."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("as_float64 needs JAX's 64-bit mode on (x64_mode(True))")

    def cast(a: Any) -> Array:
        return jnp.asarray(a, jnp.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a)

    s = trained.splits
    params = jax.tree.map(cast, trained.params)
    return Float64Run(params, cast(s.x_train), cast(s.y_train), cast(s.data.x_test), cast(s.y_test))


def load_trained(run_dir: str | Path) -> Trained:
    """The run in `run_dir` (a directory `mlp-jax train --out` wrote), loaded; UsageError naming what is
    missing or malformed (no checkpoint, a config or shapes that do not match, a data file that changed)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise UsageError(f"no trained run in {str(run_dir)!r}: {CHECKPOINT} not found (train one with mlp-jax train)")
    try:
        meta = read_metadata(path)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    saved = config_from_saved(meta.get("config"), str(path))
    sha = meta.get("dataset_sha256")
    dataset = saved_dataset(saved.dataset, sha if isinstance(sha, str) else None, run_dir)
    config = dataclasses.replace(saved, dataset=dataset).resolved()
    check_saved_widths(path, config.hidden)
    progress = saved_progress(path)
    config, splits = load_splits(config)
    sizes = [splits.x_train.shape[1], *config.hidden, splits.n_out]
    try:
        check_layer_sizes(sizes)
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = make_optimizer(config, num_batches(len(splits.x_train), min(config.batch_size, len(splits.x_train))))

    def fresh() -> Any:
        init_key, train_key = jax.random.split(jax.random.key(config.seed))
        return init_train_state(init_params(init_key, sizes, init=config.init), optimizer, train_key)

    template: Any = jax.eval_shape(fresh)
    with_best = progress["best_params"] is True
    if with_best:
        template = {"state": template, "best_params": template.params}
    try:
        loaded, _ = load_checkpoint(path, template)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    restored = with_best and config.restore_best and config.patience is not None
    params = loaded["best_params"] if restored else (loaded["state"] if with_best else loaded).params
    return Trained(run_dir, config, splits, params, progress["epoch"], restored)
