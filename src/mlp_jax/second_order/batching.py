"""A data set cut into equal, padded chunks, so that a per-chunk function compiles once: the last chunk is
filled up with copies of the first rows, whose ``mask`` is 0."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Chunk(NamedTuple):
    x: Array  # (size, d_in)
    y: Array  # (size,) labels or (size, out) targets
    mask: Array  # (size,): 1 for a real example, 0 for padding, in x's dtype


def check_batch_size(batch_size: int | None, n: int) -> int:
    """The chunk size: `batch_size`, at most `n`, or `n` when None; a ValueError unless a positive integer."""
    if batch_size is None:
        return n
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
    return min(batch_size, n)


def chunks(x: Array, y: Array, size: int) -> Iterator[Chunk]:
    """``ceil(n / size)`` chunks of exactly `size` rows; the last is padded with rows of mask 0."""
    n = x.shape[0]
    for start in range(0, n, size):
        stop = min(start + size, n)
        pad = size - (stop - start)
        idx = jnp.concatenate([jnp.arange(start, stop), jnp.zeros((pad,), jnp.int32)])
        mask = (jnp.arange(size) < stop - start).astype(x.dtype)
        yield Chunk(x[idx], y[idx], mask)


def stacked_chunks(x: Array, y: Array, size: int) -> Chunk:
    """Every chunk stacked on a leading axis, for a `lax.scan`: x (num_chunks, size, d_in), and so on."""
    parts = list(chunks(x, y, size))
    return Chunk(*(jnp.stack(leaves) for leaves in zip(*parts)))
