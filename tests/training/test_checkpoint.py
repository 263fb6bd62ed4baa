"""`mlp_jax.training.checkpoint`: bit-identical round trips, atomic writes, and a clear error for every bad file."""

from __future__ import annotations

import json
import os
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlp_jax.core.params import init_params
from mlp_jax.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class TrainState(NamedTuple):
    params: tuple  # tuple of Layer(w, b)
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar
    key: jax.Array  # typed PRNG key


def make_state(seed: int, sizes=(3, 4, 2), dtype=jnp.float32, steps: int = 1) -> TrainState:
    """A state with non-trivial optimizer moments: `steps` adam updates on made-up gradients."""
    params = init_params(jax.random.key(seed), list(sizes), dtype=dtype)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5 + i), params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return TrainState(params, opt_state, jnp.asarray(steps, jnp.int32), jax.random.key(seed + 100))


def leaf_bytes(leaf) -> tuple[str, tuple, bytes]:
    """dtype, shape and raw bytes of a leaf; a key leaf by its key data."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return str(leaf.dtype), leaf.shape, np.asarray(jax.random.key_data(leaf)).tobytes()
    return str(leaf.dtype), leaf.shape, np.asarray(leaf).tobytes()


def assert_identical(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert isinstance(leaf_a, jax.Array)
        assert leaf_bytes(leaf_a) == leaf_bytes(leaf_b)


@pytest.fixture
def ckpt(tmp_path):
    return tmp_path / "state.ckpt"


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16], ids=["float32", "float64", "bfloat16"])
def test_round_trip_train_state(ckpt, dtype):
    state = make_state(0, dtype=dtype, steps=2)
    metadata = {"config": {"sizes": [3, 4, 2], "lr": 0.01}, "epoch": 2, "history": [1.5, 0.75]}
    save_checkpoint(ckpt, state, metadata)
    loaded, meta = load_checkpoint(ckpt, make_state(7, dtype=dtype, steps=0))
    assert_identical(loaded, state)
    assert meta == metadata
    assert jax.random.key_impl(loaded.key) == jax.random.key_impl(state.key)
    # The restored key draws the same numbers as the original.
    assert np.array_equal(jax.random.normal(loaded.key, (3,)), jax.random.normal(state.key, (3,)))


def test_bfloat16_stored_as_bits_and_restored(ckpt):
    # numpy writes ml_dtypes' bfloat16 as an opaque void type, so the file keeps its bits as uint16.
    x = jnp.asarray([1.0, -2.5, 3.140625, jnp.inf], jnp.bfloat16)
    save_checkpoint(ckpt, {"x": x})
    with np.load(ckpt, allow_pickle=False) as npz:
        assert npz["leaf_00000"].dtype == np.uint16
        meta = json.loads(npz["__meta__"].tobytes())
    assert meta["leaves"][0]["dtype"] == "bfloat16"
    loaded, _ = load_checkpoint(ckpt, {"x": jnp.zeros(4, jnp.bfloat16)})
    assert_identical(loaded, {"x": x})


@pytest.mark.x64  # the int64 scalar leaf is int64 only in 64-bit mode
def test_round_trip_key_batch_scalars_and_shape_dtype_template(ckpt):
    tree = {"keys": jax.random.split(jax.random.key(1), 3), "n": jnp.int64(5), "empty": jnp.zeros((0, 2))}
    save_checkpoint(ckpt, tree)
    loaded, meta = load_checkpoint(ckpt, jax.eval_shape(lambda: tree))
    assert_identical(loaded, tree)
    assert meta == {}


def test_meta_documents_the_format(ckpt):
    save_checkpoint(ckpt, make_state(0), {"epoch": 1})
    with np.load(ckpt, allow_pickle=False) as npz:
        names = sorted(npz.files)
        meta = json.loads(npz["__meta__"].tobytes().decode("utf-8"))
    n = len(jax.tree.leaves(make_state(0)))
    assert names == ["__meta__"] + [f"leaf_{i:05d}" for i in range(n)]
    assert (meta["format"], meta["version"]) == ("mlp-jax-checkpoint", 1)
    assert meta["treedef"].startswith("PyTreeDef(")
    assert meta["leaves"][0] == {
        "path": ".params[0].w",
        "shape": [3, 4],
        "dtype": "float32",
        "key_impl": None,
        "stored_dtype": "float32",
    }
    assert meta["leaves"][-1]["path"] == ".key"
    assert meta["leaves"][-1]["key_impl"] == "threefry2x32"
    assert meta["metadata"] == {"epoch": 1}


def test_overwrite_replaces_previous(ckpt):
    save_checkpoint(ckpt, make_state(0, steps=1))
    save_checkpoint(ckpt, make_state(0, steps=3), {"epoch": 3})
    loaded, meta = load_checkpoint(ckpt, make_state(0, steps=0))
    assert_identical(loaded, make_state(0, steps=3))
    assert meta == {"epoch": 3}


# --- atomicity -----------------------------------------------------------------------------------------------


def _crash_in_savez(monkeypatch):
    def savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half an archive")  # some bytes reach the disk, then the process "dies"
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", savez)


def _crash_in_replace(monkeypatch):
    def replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("crash", [_crash_in_savez, _crash_in_replace], ids=["during_savez", "during_replace"])
def test_crash_during_write_keeps_previous_checkpoint(ckpt, monkeypatch, crash):
    old = make_state(0, steps=1)
    save_checkpoint(ckpt, old, {"epoch": 1})
    crash(monkeypatch)
    with pytest.raises((KeyboardInterrupt, OSError)):
        save_checkpoint(ckpt, make_state(0, steps=2), {"epoch": 2})
    monkeypatch.undo()
    assert os.listdir(ckpt.parent) == [ckpt.name]  # no temporary file left behind
    loaded, meta = load_checkpoint(ckpt, make_state(5, steps=0))
    assert_identical(loaded, old)
    assert meta == {"epoch": 1}


# --- errors --------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.ckpt.* not found"):
        load_checkpoint(tmp_path / "nope.ckpt", make_state(0))


def test_missing_directory_on_save(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "no_dir" / "x.ckpt", make_state(0))


def test_random_bytes(ckpt):
    ckpt.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match=r"expected a valid \.npz archive"):
        load_checkpoint(ckpt, make_state(0))


def test_truncated_zip(ckpt):
    save_checkpoint(ckpt, make_state(0))
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"expected a valid \.npz archive"):
        load_checkpoint(ckpt, make_state(0))


def test_bare_npy_file(ckpt):
    with open(ckpt, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"found a bare \.npy array"):
        load_checkpoint(ckpt, make_state(0))


def test_wrong_leaf_count(ckpt):
    save_checkpoint(ckpt, make_state(0, sizes=(3, 4, 2)))
    with pytest.raises(CheckpointError, match=r"expected 21 leaves .*found 15"):
        load_checkpoint(ckpt, make_state(0, sizes=(3, 4, 4, 2)))


def test_wrong_shape(ckpt):
    save_checkpoint(ckpt, make_state(0, sizes=(3, 4, 2)))
    match = r"leaf 0 \(\.params\[0\]\.w\): expected shape \(3, 5\) .*found shape \(3, 4\)"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt, make_state(0, sizes=(3, 5, 2)))


@pytest.mark.x64  # a float64 template
def test_wrong_dtype(ckpt):
    save_checkpoint(ckpt, make_state(0, dtype=jnp.float32))
    with pytest.raises(CheckpointError, match=r"leaf 0 .*expected shape \(3, 4\) dtype float64, found .*dtype float32"):
        load_checkpoint(ckpt, make_state(0, dtype=jnp.float64))


def test_wrong_key_impl(ckpt):
    save_checkpoint(ckpt, {"key": jax.random.key(0)})
    with pytest.raises(CheckpointError, match=r"expected shape \(\) dtype key<rbg>, found shape \(\) dtype key<fry>"):
        load_checkpoint(ckpt, {"key": jax.random.key(0, impl="rbg")})


class _Evil:
    """Unpickling this creates the marker file, so a test can tell whether any pickle ran."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _good_meta(path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz["__meta__"]


def test_object_array_refused_without_running_it(ckpt, tmp_path):
    save_checkpoint(ckpt, {"x": jnp.zeros(1)})
    meta = _good_meta(ckpt)
    evil = _Evil()
    evil.marker = str(tmp_path / "pwned")
    with open(ckpt, "wb") as f:
        np.savez(f, leaf_00000=np.array([evil], dtype=object), __meta__=meta)
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_checkpoint(ckpt, {"x": jnp.zeros(1)})
    assert not (tmp_path / "pwned").exists()


def test_object_leaf_refused_on_save(ckpt):
    with pytest.raises(CheckpointError, match=r"leaf 0 \(\['x'\]\): expected a numeric array, found object$"):
        save_checkpoint(ckpt, {"x": object()})
    assert not ckpt.exists()


def test_non_json_metadata_refused_on_save(ckpt):
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_checkpoint(ckpt, {"x": jnp.zeros(1)}, {"bad": jnp.zeros(1)})
    assert not ckpt.exists()


def test_missing_meta(ckpt):
    with open(ckpt, "wb") as f:
        np.savez(f, leaf_00000=np.zeros(1))
    with pytest.raises(CheckpointError, match="expected a '__meta__' entry"):
        load_checkpoint(ckpt, {"x": jnp.zeros(1)})


@pytest.mark.parametrize(
    "meta",
    [
        b"not json",
        json.dumps({"format": "other", "version": 1}).encode(),
        json.dumps({"format": "mlp-jax-checkpoint", "version": 2}).encode(),
    ],
    ids=["not_json", "wrong_format", "wrong_version"],
)
def test_bad_meta(ckpt, meta):
    with open(ckpt, "wb") as f:
        np.savez(f, leaf_00000=np.zeros(1), __meta__=np.frombuffer(meta, np.uint8))
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(ckpt, {"x": jnp.zeros(1)})


def test_stored_array_disagrees_with_meta(ckpt):
    save_checkpoint(ckpt, {"x": jnp.zeros(2, jnp.float32)})
    meta = _good_meta(ckpt)
    with open(ckpt, "wb") as f:
        np.savez(f, leaf_00000=np.zeros(3, np.float32), __meta__=meta)
    with pytest.raises(CheckpointError, match=r"expected stored float32\[2\], found float32\[3\]"):
        load_checkpoint(ckpt, {"x": jnp.zeros(2, jnp.float32)})


def test_is_a_zip_of_npy(ckpt):
    save_checkpoint(ckpt, {"x": jnp.zeros(1)})
    with zipfile.ZipFile(ckpt) as z:
        assert sorted(z.namelist()) == ["__meta__.npy", "leaf_00000.npy"]


def lying_npy(shape: tuple, payload: bytes = b"\x00" * 8) -> bytes:
    """A .npy whose header claims `shape` of float64 while it holds only `payload`."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(ckpt):
    save_checkpoint(ckpt, {"x": jnp.zeros(2, jnp.float32)})
    with zipfile.ZipFile(ckpt, "a") as archive:  # an extra member that claims 800 TB
        archive.writestr("huge.npy", lying_npy((10**14,)))
    with pytest.raises(CheckpointError, match=r"array 'huge': its header says shape \(100000000000000,\)"):
        load_checkpoint(ckpt, {"x": jnp.zeros(2, jnp.float32)})


def test_metadata_nested_too_deeply_is_a_clear_error(ckpt):
    with open(ckpt, "wb") as f:
        np.savez(f, leaf_00000=np.zeros(1), __meta__=np.frombuffer(b"[" * 100_000, np.uint8))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(ckpt, {"x": jnp.zeros(1)})


def test_checkpoint_gets_the_usual_file_permissions(ckpt):
    save_checkpoint(ckpt, {"x": jnp.zeros(1)})
    mask = os.umask(0)
    os.umask(mask)
    assert ckpt.stat().st_mode & 0o777 == 0o666 & ~mask


def test_read_metadata_reads_only_the_header(ckpt, monkeypatch):
    """`mlp-jax train --resume` reads the metadata twice before loading the state: it must not load every
    array each time."""
    from mlp_jax.training.checkpoint import read_metadata

    save_checkpoint(ckpt, {"x": jnp.zeros(1000)}, {"epoch": 3})
    from mlp_jax.training import npz

    loaded = []
    real_read = npz._read_array  # every array npz.load returns is read by it
    monkeypatch.setattr(
        npz, "_read_array", lambda archive, info, key: loaded.append(key) or real_read(archive, info, key)
    )
    assert read_metadata(ckpt) == {"epoch": 3}
    assert loaded == ["__meta__"]


def test_read_leaf_shapes_reads_the_saved_shapes_without_the_arrays(tmp_path):
    from mlp_jax.training.checkpoint import read_leaf_shapes

    save_checkpoint(tmp_path / "c.npz", {"w": np.zeros((3, 4), np.float32), "k": jax.random.key(0)})
    assert read_leaf_shapes(tmp_path / "c.npz") == {"['k']": (), "['w']": (3, 4)}
