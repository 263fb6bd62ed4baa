"""`mlp_jax.training.npz`: an .npz a user hands us is read without pickles, every member's header checked against
the bytes it holds before anything is allocated."""

import io
import zipfile

import numpy as np
import pytest

from mlp_jax.core.errors import NpzError
from mlp_jax.training import npz


def npy_header(shape: tuple, descr: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_load_returns_the_arrays_it_picks(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.arange(6.0).reshape(2, 3), y=np.array([1, 2]), z=np.zeros(1))
    seen = []

    def pick(names):
        seen.extend(names)
        return ["x", "y"]

    arrays = npz.load(path, pick)
    assert sorted(seen) == ["x", "y", "z"] and sorted(arrays) == ["x", "y"]
    np.testing.assert_array_equal(arrays["x"], np.arange(6.0).reshape(2, 3))
    assert sorted(npz.load(path)) == ["x", "y", "z"]


def test_a_bare_npy_file_is_named_as_such(tmp_path):
    path = tmp_path / "a.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(NpzError, match=r"expected an \.npz archive, found a bare \.npy array"):
        npz.load(path)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.array([{"a": 1}, 2], dtype=object))
    with pytest.raises(NpzError, match=r"array 'x' holds Python objects.*allow_pickle=False"):
        npz.check_members(path)


def test_a_header_claiming_more_bytes_than_stored_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("huge.npy", npy_header((10**14,)) + b"\x00" * 8)
    with pytest.raises(NpzError, match=r"array 'huge': its header says shape \(100000000000000,\).*holds 8"):
        npz.load(path)


def test_an_unreadable_header_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + b"\xff" * 20)
    with pytest.raises(NpzError, match=r"array 'x': unreadable \.npy header"):
        npz.check_members(path)


def test_members_that_are_not_npy_are_left_alone(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.ones(2))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.txt", "not an array")
    npz.check_members(path)  # no error


def test_an_array_too_large_for_memory_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.ones(2))

    def no_memory(self, key):
        raise MemoryError

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", no_memory)
    with pytest.raises(NpzError, match="array 'x' needs more memory than this machine can allocate"):
        npz.load(path)


def test_a_file_that_is_no_zip_raises_what_zipfile_raises(tmp_path):
    path = tmp_path / "a.npz"
    path.write_bytes(b"just some text")
    with pytest.raises((zipfile.BadZipFile, OSError)):
        npz.load(path)
