"""`mlp_jax.training.readers`: the user's CSV, NPZ and IDX files read as arrays, and a one-line DataError naming
the file for each malformed one."""

from __future__ import annotations

import gzip
import re
import zipfile

import numpy as np
import pytest
from data_helpers import check_invariants, write_csv, write_mnist_dir

from mlp_jax.training.data import DataError, load_dataset, read_idx
from mlp_jax.training.readers import read_csv, read_idx_dir, read_npz

# ---------------------------------------------------------------------------------------------------- CSV


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], [[1, 2, 0], [3, "oops", 1]])
    with pytest.raises(DataError, match=r"line 3, column 'b': expected a finite number, got 'oops'"):
        load_dataset(path)


def test_csv_missing_target_lists_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4, 1]])
    with pytest.raises(DataError, match=r"target column 'label' not found; available columns: a, b, y"):
        load_dataset(path, target="label")


def test_csv_without_header(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["1", "2", "0"], [[3, 4, 1]])
    with pytest.raises(DataError, match="expected a header row"):
        load_dataset(path)


def test_csv_ragged_row(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4]])
    with pytest.raises(DataError, match=r"line 3: expected 3 cells"):
        load_dataset(path)


# ---------------------------------------------------------------------------------------------------- NPZ


def test_npz_object_array_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.array([{"a": 1}, 2, 3, 4], dtype=object))
    with pytest.raises(DataError, match=r"array 'y' holds Python objects.*allow_pickle=False"):
        load_dataset(tmp_path / "d.npz")


@pytest.mark.parametrize("content", [b"not a zip file at all", b"PK\x03\x04" + b"\x00" * 40], ids=["text", "bad-zip"])
def test_corrupt_npz(tmp_path, content):
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(DataError, match=r"d\.npz"):
        load_dataset(tmp_path / "d.npz")


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((50, 2)), y=np.arange(50) % 2)
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d\.npz"):
        load_dataset(tmp_path / "d.npz")


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((4, 2)))
    with pytest.raises(DataError, match=r"missing x, y; found features"):
        load_dataset(tmp_path / "d.npz")


def test_npz_header_claiming_a_huge_array_is_refused(tmp_path):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**14,)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\x00" * 8)
        archive.writestr("y.npy", header.getvalue() + b"\x00" * 8)
    with pytest.raises(DataError, match=r"array 'x': its header says shape \(100000000000000,\).*holds 8"):
        load_dataset(tmp_path / "d.npz")


def test_missing_keys_are_not_called_corrupt(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), z=np.ones(4))
    with pytest.raises(DataError, match="missing y; found x, z") as error:
        load_dataset(tmp_path / "d.npz")
    assert "corrupt" not in str(error.value) and str(error.value).count("d.npz") == 1


# ---------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzipped"])
def test_idx_directory(tmp_path, gz):
    arrays = write_mnist_dir(tmp_path / "mnist", gz=gz)
    ds = load_dataset(tmp_path / "mnist")
    check_invariants(ds)
    assert ds.x_train.shape == (30, 12) and ds.x_test.shape == (10, 12) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_test, np.arange(10))
    scaled = ds.x_test * ds.feature_std + ds.feature_mean  # back in [0, 1] units
    np.testing.assert_allclose(scaled, arrays["t10k-images-idx3-ubyte"].reshape(10, 12) / 255, atol=1e-5)


def test_read_idx_other_dtype(tmp_path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "a").write_bytes(bytes([0, 0, 0x0C, 2]) + np.asarray([2, 3], ">u4").tobytes() + array.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b"\x01\x02" + b[2:], "expected an IDX magic number"),
        (lambda b: b[:4] + b[4:6], "truncated IDX header"),
        (lambda b: b[:-5], "truncated IDX data"),
        (lambda b: gzip.compress(b)[:-10], "could not decompress"),
    ],
    ids=["bad-magic", "truncated-header", "truncated-data", "truncated-gzip"],
)
def test_malformed_idx(tmp_path, corrupt, message):
    write_mnist_dir(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    if message == "could not decompress":
        path.unlink()
        path = path.with_name(path.name + ".gz")
    path.write_bytes(corrupt(data))
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "mnist")


def test_idx_missing_file(tmp_path):
    write_mnist_dir(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset(tmp_path / "mnist")


# ------------------------------------------------------------------------------------- the readers themselves


def test_read_csv_gives_the_features_and_the_target_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "label", "b"], [[1, 0, 2.5], [3, 1, -4], [5, 0, 6]])
    x, y = read_csv(path, "label")
    np.testing.assert_array_equal(x, [[1, 2.5], [3, -4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 0])
    assert x.dtype == y.dtype == np.float64
    _, last = read_csv(path, None)  # no target named: the last column
    np.testing.assert_array_equal(last, [2.5, -4, 6])


def test_read_npz_picks_the_split_layout_or_x_and_y(tmp_path):
    split = {k: np.arange(4.0) for k in ("x_train", "y_train", "x_test", "y_test")}
    np.savez(tmp_path / "split.npz", **split, extra=np.zeros(1))
    assert sorted(read_npz(tmp_path / "split.npz", None)) == ["x_test", "x_train", "y_test", "y_train"]
    np.savez(tmp_path / "xy.npz", x=np.ones((3, 2)), y=np.arange(3), price=np.arange(3.0) + 10)
    assert sorted(read_npz(tmp_path / "xy.npz", None)) == ["x", "y"]
    renamed = read_npz(tmp_path / "xy.npz", "price")  # target= names the array that plays y
    np.testing.assert_array_equal(renamed["y"], [10.0, 11.0, 12.0])


def test_read_idx_dir_gives_flat_images_in_the_unit_range_and_labels(tmp_path):
    arrays = write_mnist_dir(tmp_path / "mnist", gz=False)
    x_train, y_train, x_test, y_test = read_idx_dir(tmp_path / "mnist")
    assert x_train.shape == (30, 12) and x_test.shape == (10, 12) and x_train.dtype == np.float32
    np.testing.assert_allclose(x_train, arrays["train-images-idx3-ubyte"].reshape(30, 12) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y_train, np.arange(30) % 10)
    np.testing.assert_array_equal(y_test, np.arange(10))


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((0, 4, 3)), np.zeros(0), r"train features: expected at least one example \(row\)"),
        (np.zeros((5, 0, 3)), np.arange(5), r"at least one feature per row, got an array of shape \(5, 0\)"),
        (np.zeros((5, 4, 3)), np.arange(4), r"expected images \(n, rows, cols\) and labels \(n,\)"),
    ],
    ids=["no-images", "no-pixels", "label-count"],
)
def test_degenerate_idx_shapes_are_one_line_data_errors(tmp_path, images, labels, message):
    from data_helpers import idx_bytes

    write_mnist_dir(tmp_path / "mnist", gz=True)
    for name, array in (("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)):
        (tmp_path / "mnist" / name).write_bytes(gzip.compress(idx_bytes(array)))
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "mnist")


# ------------------------------------------------------------------------------------- decompression bombs


def test_npz_bomb_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    from data_helpers import peak_traced_bytes, write_zeros_npz

    path = write_zeros_npz(tmp_path / "bomb.npz", {"x": (2**21, 1), "y": (2**21,)})  # 32 MiB of zeros
    assert path.stat().st_size < 2**18  # a 32 MiB array in a file of a few hundred KiB
    monkeypatch.setenv("MLP_JAX_MAX_DATA_BYTES", str(2**20))
    peak, error = peak_traced_bytes(lambda: load_dataset(path))
    assert isinstance(error, DataError), error
    assert re.search(
        r"bomb\.npz: arrays 'x', 'y' decompress to 335\d+ bytes, more than the limit of 1048576 bytes "
        r"on a data file \(set MLP_JAX_MAX_DATA_BYTES to raise it\)",
        str(error),
    ), error
    assert peak < 2**20


def test_npz_member_claiming_2_gb_is_refused_by_the_default_limit(tmp_path):
    from data_helpers import claim_uncompressed_size, npy_header

    from mlp_jax.training.readers import MAX_DATA_BYTES, max_data_bytes

    assert MAX_DATA_BYTES == 256 * 2**20 and max_data_bytes() == MAX_DATA_BYTES
    header = npy_header((2**31,), "|u1")
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x.npy", header + b"\x00" * 8)
    claim_uncompressed_size(tmp_path / "d.npz", "x.npy", len(header) + 2**31)
    with pytest.raises(DataError, match=r"arrays 'x' decompress to 2147483\d+ bytes, more than the limit of 268435456"):
        read_npz(tmp_path / "d.npz", "x")  # x plays both parts here: the limit is checked first


def test_idx_gzip_bomb_is_refused_at_its_header(tmp_path):
    from data_helpers import gzip_of_zeros, peak_traced_bytes

    path = tmp_path / "train-images-idx3-ubyte.gz"
    dims = (2**15, 32, 32)  # 32 MiB of uint8 zeros, as the header says
    path.write_bytes(gzip_of_zeros(bytes([0, 0, 0x08, 3]) + np.asarray(dims, ">u4").tobytes(), 2**25))
    peak, error = peak_traced_bytes(lambda: read_idx(path, max_bytes=2**20))
    assert isinstance(error, DataError), error
    assert "IDX header says dims (32768, 32, 32) of uint8 = 33554432 bytes, more than the limit of 1048576" in str(
        error
    )
    assert peak < 2**20
    assert read_idx(path).shape == dims  # under the default limit it loads


def test_idx_gzip_holding_more_than_its_header_says_stops_at_the_first_extra_byte(tmp_path):
    from data_helpers import gzip_of_zeros, peak_traced_bytes

    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip_of_zeros(bytes([0, 0, 0x08, 1]) + np.asarray([10], ">u4").tobytes(), 2**25))
    peak, error = peak_traced_bytes(lambda: read_idx(path))
    assert isinstance(error, DataError) and "oversized IDX data, header says dims (10,) of uint8 = 10 bytes" in str(
        error
    )
    assert peak < 4 * 2**20  # one decompressed chunk, not the 32 MiB the file holds


def test_the_limit_applies_to_every_reader_and_is_named(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "d.csv", ["a", "y"], [[i, i % 2] for i in range(100)])
    with pytest.raises(DataError, match=r"d\.csv: the file holds \d+ bytes, more than the limit of 100 bytes"):
        read_csv(path, None, max_bytes=100)
    monkeypatch.setenv("MLP_JAX_MAX_DATA_BYTES", "100")
    with pytest.raises(DataError, match="set MLP_JAX_MAX_DATA_BYTES to raise it"):
        load_dataset(path)
    write_mnist_dir(tmp_path / "mnist", gz=True)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: its IDX header says dims \(30, 4, 3\)"):
        load_dataset(tmp_path / "mnist")
    monkeypatch.setenv("MLP_JAX_MAX_DATA_BYTES", "1_000_000")
    assert load_dataset(path).num_classes == 2
    for bad in ("lots", "0", "-5", "1e6"):
        monkeypatch.setenv("MLP_JAX_MAX_DATA_BYTES", bad)
        with pytest.raises(
            DataError, match=f"MLP_JAX_MAX_DATA_BYTES must be a positive whole number of bytes, got '{bad}'"
        ):
            load_dataset(path)


def test_read_csv_gives_a_text_target_column_as_strings(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "label"], [[1, "cat"], [2, " dog "], [3, "7"]])
    x, y = read_csv(path, None)
    np.testing.assert_array_equal(x, [[1], [2], [3]])
    assert y.dtype.kind == "U" and y.tolist() == ["cat", "dog", "7"]
    with pytest.raises(
        DataError, match=r"line 3, column 'label': expected a number or a class label, got an empty cell"
    ):
        read_csv(write_csv(tmp_path / "e.csv", ["a", "label"], [[1, "cat"], [2, ""]]), None)
    with pytest.raises(DataError, match=r"line 3, column 'label': expected a finite number, got 'nan'"):
        read_csv(write_csv(tmp_path / "f.csv", ["a", "label"], [[1, 2.5], [2, "nan"]]), None)
    with pytest.raises(DataError, match=r"line 2, column 'a': expected a finite number, got 'cat'"):
        read_csv(write_csv(tmp_path / "g.csv", ["a", "label"], [["cat", 1]]), None)
