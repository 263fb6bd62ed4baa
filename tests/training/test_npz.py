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

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(npz.np, "frombuffer", no_memory)  # what turns the bytes read into the array
    with pytest.raises(NpzError, match="array 'x' needs more memory than this machine can allocate"):
        npz.load(path)


def test_a_file_that_is_no_zip_raises_what_zipfile_raises(tmp_path):
    path = tmp_path / "a.npz"
    path.write_bytes(b"just some text")
    with pytest.raises((zipfile.BadZipFile, OSError)):
        npz.load(path)


def test_arrays_over_the_limit_are_refused_before_any_is_read(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros(1000), y=np.zeros(10))
    read = []
    real_read = npz._read_array
    monkeypatch.setattr(npz, "_read_array", lambda a, info, name: read.append(name) or real_read(a, info, name))
    with pytest.raises(
        NpzError, match=r"arrays 'x', 'y' decompress to 8\d\d\d bytes, more than the limit of 8000 bytes"
    ):
        npz.load(path, max_bytes=8000)
    assert read == []
    assert sorted(npz.load(path, lambda names: ["y"], max_bytes=8000)) == ["y"]  # only the picked ones count
    assert npz.load(path, max_bytes=9000)["x"].shape == (1000,)


def test_a_member_holding_less_than_its_zip_header_claims_is_never_allocated_at_the_claimed_size(tmp_path):
    from data_helpers import claim_uncompressed_size, peak_traced_bytes

    path = tmp_path / "a.npz"
    header = npy_header((200_000_000,), "|u1")  # 200 MB claimed by both the .npy and the zip header
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x.npy", header + b"\x00" * 8)
    claim_uncompressed_size(path, "x.npy", len(header) + 200_000_000)
    peak, error = peak_traced_bytes(lambda: npz.load(path))
    assert isinstance(error, NpzError) and "array 'x': truncated data, expected 200000000 bytes, got 8" in str(error)
    assert peak < 8 * 2**20


def test_fortran_order_and_big_endian_arrays_read_back_exactly(tmp_path):
    path = tmp_path / "a.npz"
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.savez(path, f=f, b=np.arange(5, dtype=">i4"), s=np.array(["a", "bc"]), e=np.zeros((0, 3)))
    arrays = npz.load(path)
    for name, expected in (("f", f), ("b", np.arange(5)), ("s", np.array(["a", "bc"])), ("e", np.zeros((0, 3)))):
        np.testing.assert_array_equal(arrays[name], expected)
        assert arrays[name].shape == expected.shape


def test_zero_byte_elements_are_refused(tmp_path):
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", npy_header((10**15,), "|V0"))
    with pytest.raises(NpzError, match="elements of zero bytes"):
        npz.load(path)
