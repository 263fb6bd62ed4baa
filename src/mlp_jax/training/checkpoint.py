"""Checkpoints: save any pytree of arrays to one ``.npz`` file, load it back against a template.

Format (version 1). A checkpoint is a numpy ``.npz`` archive (a zip of ``.npy`` arrays) holding:

- ``leaf_00000``, ``leaf_00001``, ... : the tree's leaves in `jax.tree.flatten` order. A typed PRNG key
  leaf is stored as its raw `jax.random.key_data` (shape ``key_shape + impl_shape``, uint32). A leaf whose
  dtype numpy cannot store without pickle (the ml_dtypes ``bfloat16``, ``float8_*``, ``int4``, ...) is
  stored as its bits, viewed as ``uint8`` / ``uint16`` / ...
- ``__meta__``: a 1-D uint8 array holding UTF-8 JSON::

      {"format": "mlp-jax-checkpoint", "version": 1,
       "treedef": "PyTreeDef(...)",           # str of the saved treedef, for error messages only
       "leaves": [{"path": ".params[0].w",     # jax.tree_util.keystr of the leaf's path
                   "shape": [784, 128],        # logical shape (a key array's shape, without impl dims)
                   "dtype": "bfloat16",        # str of the true dtype, e.g. "float32", "key<fry>"
                   "stored_dtype": "uint16",   # dtype of the .npy array in the file
                   "key_impl": null}, ...],    # PRNG impl name ("threefry2x32") for key leaves
       "metadata": {...}}                      # the caller's JSON-serialisable dict

Saving is atomic: the archive is written to a temporary file in the destination's directory, flushed,
fsynced and moved into place with `os.replace`, so a crash mid-write leaves the previous checkpoint intact.
Loading never unpickles (``allow_pickle=False``) and checks every leaf's shape and dtype against the template.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import CheckpointError
from mlp_jax.training import npz
from mlp_jax.training.files import write_atomic

FORMAT = "mlp-jax-checkpoint"
VERSION = 1
META_KEY = "__meta__"


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


def _is_key(dtype) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _bits_dtype(dtype: np.dtype) -> np.dtype | None:
    """Unsigned int dtype to store an ml_dtypes dtype (bfloat16, ...) as bits; None for native numpy dtypes."""
    if dtype.kind == "V" and dtype.fields is None:
        return np.dtype(f"uint{8 * dtype.itemsize}")
    return None


def _encode(i: int, path: str, leaf: Any) -> tuple[np.ndarray, dict]:
    """The array to store for one leaf, and its entry in ``__meta__['leaves']``."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and _is_key(dtype):
        stored = np.asarray(jax.random.key_data(leaf))
        shape, impl = leaf.shape, str(jax.random.key_impl(leaf))
    else:
        array = np.asarray(leaf)
        if array.dtype.kind == "O":
            raise CheckpointError(f"leaf {i} ({path}): expected a numeric array, found {type(leaf).__name__}")
        bits = _bits_dtype(array.dtype)
        stored = array.view(bits) if bits is not None else array
        shape, dtype, impl = array.shape, array.dtype, None
    entry = {
        "path": path,
        "shape": list(shape),
        "dtype": str(dtype),
        "stored_dtype": str(stored.dtype),
        "key_impl": impl,
    }
    return stored, entry


def save_checkpoint(path: str | os.PathLike, tree: Any, metadata: dict | None = None) -> None:
    """Atomically write `tree` (any pytree of arrays, typed PRNG keys allowed) and `metadata` to `path`.

    `metadata` must be JSON-serialisable (it comes back through JSON: tuples become lists, keys strings).
    The file is written exactly at `path` (no ``.npz`` suffix is added).
    """
    path = Path(path)
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"metadata: expected a dict or None, found {type(metadata).__name__}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path.parent)!r} does not exist")
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    arrays, entries = {}, []
    for i, (key_path, leaf) in enumerate(leaves_with_path):
        arrays[_leaf_name(i)], entry = _encode(i, jax.tree_util.keystr(key_path), leaf)
        entries.append(entry)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "treedef": str(treedef),
        "leaves": entries,
        "metadata": metadata or {},
    }
    try:
        meta_bytes = json.dumps(meta).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"metadata: expected JSON-serialisable values, found {e}") from None
    arrays[META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)

    write_atomic(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


def _read(path: Path, *, meta_only: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """The decoded ``__meta__`` and every array in the archive (none with `meta_only`: every member's
    header is still checked, but only ``__meta__`` is read), without unpickling anything."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    found: list[str] = []

    def pick(names: list[str]) -> list[str]:
        found.extend(names)
        return [n for n in names if n == META_KEY] if meta_only else names

    try:
        arrays = npz.load(path, pick)
    except npz.NpzError as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a valid .npz archive, found {e}") from None
    if META_KEY not in arrays:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a {META_KEY!r} entry, found {sorted(found)}")
    raw = arrays.pop(META_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"a {raw.dtype} array of shape {raw.shape}")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"JSON {type(meta).__name__}")
    except RecursionError:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected {META_KEY} to be UTF-8 JSON, found JSON nested too deeply to read"
        ) from None
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected {META_KEY} to be UTF-8 JSON, found {e}") from None
    found_format = (meta.get("format"), meta.get("version"))
    if found_format != (FORMAT, VERSION):
        raise CheckpointError(f"checkpoint {str(path)!r}: expected format {(FORMAT, VERSION)}, found {found_format}")
    return meta, arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The caller's metadata dict saved with a checkpoint, validated like `load_checkpoint` validates it
    (without reading the arrays)."""
    meta, _ = _read(Path(path), meta_only=True)
    metadata = meta.get("metadata")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a metadata dict, found {type(metadata).__name__}")
    return metadata


def read_leaf_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every saved leaf by its path (``".params[0].w": (64, 128)``), read from ``__meta__``
    alone: nothing is allocated, so a caller can check them before building anything of that size."""
    meta, _ = _read(Path(path), meta_only=True)
    entries = meta.get("leaves")
    shapes: dict[str, tuple[int, ...]] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        leaf_path, shape = (entry.get("path"), entry.get("shape")) if isinstance(entry, dict) else (None, None)
        if (
            not isinstance(leaf_path, str)
            or not isinstance(shape, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: leaf {i}: expected a path and a shape, found {entry!r:.200}"
            )
        shapes[leaf_path] = tuple(shape)
    return shapes


def _template_spec(leaf: Any) -> tuple[tuple[int, ...], str]:
    """(shape, dtype string) of a template leaf: an array, a `jax.ShapeDtypeStruct` or a Python scalar."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), str(leaf.dtype)
    array = np.asarray(leaf)
    return array.shape, str(array.dtype)


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Load ``(tree, metadata)`` from `path`; `tree` has `template`'s structure, with `jax.Array` leaves.

    `template` is a pytree shaped like the saved one (a fresh state, or `jax.eval_shape` of one); every leaf's
    shape and dtype must match. Raises `CheckpointError` for a missing, corrupt or mismatched file.
    """
    path = Path(path)
    meta, arrays = _read(path)
    template_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    entries = meta.get("leaves")
    if not isinstance(entries, list) or len(entries) != len(template_leaves):
        n_found = len(entries) if isinstance(entries, list) else entries
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected {len(template_leaves)} leaves ({treedef}), "
            f"found {n_found} ({meta.get('treedef')})"
        )
    expected_names = {_leaf_name(i) for i in range(len(entries))}
    if set(arrays) != expected_names:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected arrays {_leaf_name(0)}..{_leaf_name(len(entries) - 1)}, "
            f"found {sorted(arrays)}"
        )
    leaves = []
    for i, ((key_path, leaf), entry) in enumerate(zip(template_leaves, entries)):
        where = f"checkpoint {str(path)!r} leaf {i} ({jax.tree_util.keystr(key_path)})"
        shape, dtype = _template_spec(leaf)
        try:
            found_shape, found_dtype = tuple(entry["shape"]), entry["dtype"]
            impl = entry["key_impl"]
        except (TypeError, KeyError) as e:
            raise CheckpointError(f"{where}: expected a leaf entry in {META_KEY}, found {entry!r} ({e})") from None
        if (shape, dtype) != (found_shape, found_dtype):
            raise CheckpointError(
                f"{where}: expected shape {shape} dtype {dtype}, found shape {found_shape} dtype {found_dtype}"
                f" (saved as {entry.get('path')})"
            )
        leaves.append(_decode(where, arrays[_leaf_name(i)], leaf, found_shape, found_dtype, impl))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves), meta.get("metadata", {})


def _decode(
    where: str, stored: np.ndarray, template_leaf: Any, shape: tuple, dtype: str, impl: str | None
) -> jax.Array:
    """One leaf back as a `jax.Array`, after checking the stored array agrees with its ``__meta__`` entry."""
    if impl is not None:
        # the template's own impl where it has one (a key array), else the impl named in the file
        spec = jax.random.key_impl(template_leaf) if isinstance(template_leaf, jax.Array) else impl
        try:
            keys = jax.random.wrap_key_data(jnp.asarray(stored), impl=spec)
        except (TypeError, ValueError) as e:
            found = f"{stored.dtype}{list(stored.shape)} ({e})"
            raise CheckpointError(f"{where}: expected {spec} key data, found {found}") from None
        if keys.shape != shape:
            raise CheckpointError(f"{where}: expected key shape {shape}, found key data of shape {stored.shape}")
        return keys
    true_dtype = jnp.dtype(dtype)
    bits = _bits_dtype(true_dtype)
    expected = (bits if bits is not None else true_dtype, shape)
    if (stored.dtype, stored.shape) != expected:
        found = f"{stored.dtype}{list(stored.shape)}"
        raise CheckpointError(f"{where}: expected stored {expected[0]}{list(shape)}, found {found}")
    return jnp.asarray(stored.view(true_dtype) if bits is not None else stored)
