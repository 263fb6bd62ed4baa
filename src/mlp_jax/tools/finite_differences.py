"""Central finite differences of the loss for `mlp_jax.tools.gradcheck`: the step, the probes (every entry
of a small leaf; seeded random entries or unit directions in a big one) and the differences with steps h
and 2h, evaluated in float64 on a float64 copy of the net. The rule they follow is in gradcheck's docstring."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlp_jax.core.model import loss as loss_fn
from mlp_jax.core.params import Params

Array = jax.Array


def fd_step(dtype) -> float:
    """The central-difference step for evaluating in `dtype`, per unit of ``max(1, |theta|)``: eps^(1/3)."""
    return float(jnp.finfo(dtype).eps) ** (1 / 3)


class Probes(NamedTuple):
    """Where the finite differences look: entries of the flattened params, and directions in big leaves."""

    entries: tuple[Array, Array]  # indices into the flattened params (n,) and their steps (n,)
    directions: dict[int, tuple[Array, Array]]  # leaf j -> unit directions (n_j, *shape) and their step ()


@partial(jax.jit, static_argnames=("activation", "loss"))
def finite_differences(params, x, y, sample_weight, probes: Probes, *, activation, loss):
    """Central differences of the loss with steps h and 2h: ``(by_entry (n, 2), {j: by_direction (n_j, 2)})``,
    for the entry probes of the flattened params and the directions in each leaf j."""
    value = lambda p: loss_fn(p, x, y, activation, loss, sample_weight)
    central = lambda at, h: (value(at(h)) - value(at(-h))) / (2 * h)  # at(t): params moved by t along the probe
    theta, unflatten = ravel_pytree(params)
    leaves, treedef = jax.tree.flatten(params)

    def entry(probe):
        i, h = probe
        at = lambda t: unflatten(theta.at[i].add(t))
        return jnp.stack([central(at, h), central(at, 2 * h)])

    n = probes.entries[0].shape[0]
    by_entry = jax.lax.map(entry, probes.entries, batch_size=64) if n else jnp.zeros((0, 2), theta.dtype)
    by_direction = {}
    for j, (directions, h) in probes.directions.items():

        def along(v, j=j, h=h):
            at = lambda t: jax.tree.unflatten(treedef, [*leaves[:j], leaves[j] + t * v, *leaves[j + 1 :]])
            return jnp.stack([central(at, h), central(at, 2 * h)])

        by_direction[j] = jax.lax.map(along, directions, batch_size=64)
    return by_entry, by_direction


def make_probes(
    params64: Params, fd_entries: int, fd_mode: str, seed: int
) -> tuple[Probes, list[np.ndarray], list[str]]:
    """The probes for `finite_differences`; per leaf, its own probes (entry indices (n,) or unit
    directions (n, *shape)) and how they were chosen."""
    rng = np.random.default_rng(seed)
    h = fd_step(jnp.float64)
    indices: list[np.ndarray] = []  # flat indices of the entry probes, leaf by leaf
    steps: list[np.ndarray] = []  # and their steps
    directions: dict[int, tuple[Array, Array]] = {}
    per_leaf: list[np.ndarray] = []
    how: list[str] = []
    offset = 0
    for j, leaf in enumerate(jax.tree.leaves(params64)):
        flat = np.asarray(leaf).ravel()
        if flat.size <= fd_entries:
            per_leaf.append(np.arange(flat.size))
            how.append(f"all {flat.size} entries")
        elif fd_mode == "entries":
            per_leaf.append(np.sort(rng.choice(flat.size, fd_entries, replace=False)))
            how.append(f"{fd_entries} random of {flat.size} entries (seed {seed})")
        else:
            v = rng.standard_normal((fd_entries, *leaf.shape))
            v /= np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
            directions[j] = (jnp.asarray(v), jnp.asarray(h * max(1.0, float(np.max(np.abs(flat))))))
            per_leaf.append(v)
            how.append(f"{fd_entries} random unit directions in {flat.size} entries (seed {seed})")
        if per_leaf[-1].ndim == 1:
            indices.append(offset + per_leaf[-1])
            steps.append(h * np.maximum(1.0, np.abs(flat[per_leaf[-1]])))
        offset += flat.size
    entries = (
        jnp.asarray(np.concatenate(indices) if indices else np.zeros(0), jnp.int32),  # none: every
        jnp.asarray(np.concatenate(steps) if steps else np.zeros(0)),
    )  # leaf probed by directions
    return Probes(entries, directions), per_leaf, how


def split_by_leaf(by_entry: np.ndarray, by_direction: dict, per_leaf: list[np.ndarray]) -> list[np.ndarray]:
    """The finite differences of each leaf, in leaf order: (n, 2), with steps h and 2h."""
    out, start = [], 0
    for j, probe in enumerate(per_leaf):
        if probe.ndim == 1:
            out.append(by_entry[start : start + len(probe)])
            start += len(probe)
        else:
            out.append(np.asarray(by_direction[j], np.float64))
    return out  # each (n, 2): steps h and 2h


def project(g: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """What the finite differences estimate for gradient leaf `g`: entries, or directional derivatives."""
    if probe.ndim == 1:
        return g.ravel()[probe]
    return probe.reshape(probe.shape[0], -1) @ g.ravel()


class FiniteDifferences(NamedTuple):
    """Per leaf, in ``jax.tree.leaves(params)`` order."""

    values: list[np.ndarray]  # (n, 2): the central differences with steps h and 2h
    probes: list[np.ndarray]  # entry indices (n,) or unit directions (n, *shape)
    how: list[str]  # how the leaf was probed


def central_differences(
    params64: Params, x64, y64, weight64, *, activation: str, loss: str, fd_entries: int, fd_mode: str, seed: int
) -> FiniteDifferences:
    """Probe every leaf of the float64 net (`make_probes`) and difference the loss along each probe."""
    probes, per_leaf, how = make_probes(params64, fd_entries, fd_mode, seed)
    by_entry, by_direction = finite_differences(params64, x64, y64, weight64, probes, activation=activation, loss=loss)
    return FiniteDifferences(split_by_leaf(np.asarray(by_entry, np.float64), by_direction, per_leaf), per_leaf, how)
