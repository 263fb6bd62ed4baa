"""Data loading: every builtin, the user's CSV / NPZ / IDX files, train-only standardisation, and each error."""

from __future__ import annotations

import functools
import gzip
import random
import zipfile

import numpy as np
import pytest

from mlp_jax.training.data import KNOWN_DATASETS, DataError, Dataset, default_loss, load_dataset, read_idx

REGRESSION = {"sine", "diabetes"}
FAST_GENERATED = ["moons", "circles", "spirals", "sine"]


@functools.cache
def builtin(name: str) -> Dataset:
    return load_dataset(name)


def check_invariants(ds: Dataset) -> None:
    """Shapes, dtypes, task fields and train-split standardisation that every Dataset must satisfy."""
    n_train, d = ds.x_train.shape
    assert ds.x_test.ndim == 2 and ds.x_test.shape[1] == d and n_train > 0 and len(ds.x_test) > 0
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.feature_mean.shape == ds.feature_std.shape == (d,) and np.all(ds.feature_std > 0)
    assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
    # train columns are centred; non-constant ones have unit std (constant ones are left at 0)
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-4)
    std = ds.x_train.std(0)
    assert np.all((np.abs(std - 1) < 1e-3) | (std == 0))
    assert len(ds.y_train) == n_train and len(ds.y_test) == len(ds.x_test)
    if ds.task == "classification":
        assert ds.y_train.dtype == ds.y_test.dtype == np.int32 and ds.y_train.ndim == ds.y_test.ndim == 1
        assert ds.num_classes == len(ds.class_names) >= 2 and ds.target_mean is None
        for y in (ds.y_train, ds.y_test):
            assert y.min() >= 0 and y.max() < ds.num_classes
        assert default_loss(ds) == "softmax_cross_entropy" and ds.num_outputs == ds.num_classes
    else:
        assert ds.task == "regression" and ds.num_classes == 0 and ds.class_names == ()
        assert ds.y_train.dtype == ds.y_test.dtype == np.float32 and ds.y_train.ndim == 2
        assert ds.target_mean.shape == ds.target_std.shape == ds.y_train.shape[1:]
        np.testing.assert_allclose(ds.y_train.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(ds.y_train.std(0), 1, atol=1e-3)
        assert default_loss(ds) == "mse" and ds.num_outputs == ds.y_train.shape[1]


# ----------------------------------------------------------------------------------------------- builtins


@pytest.mark.parametrize("name", [n for n in KNOWN_DATASETS if n != "mnist1d"])
def test_builtin_loads(name):
    ds = builtin(name)
    check_invariants(ds)
    assert ds.name == name
    assert ds.task == ("regression" if name in REGRESSION else "classification")


@pytest.mark.parametrize(
    "name, features, classes",
    [
        ("iris", 4, 3),
        ("wine", 13, 3),
        ("breast_cancer", 30, 2),
        ("digits", 64, 10),
        ("moons", 2, 2),
        ("circles", 2, 2),
        ("spirals", 2, 3),
        ("sine", 1, 0),
        ("diabetes", 10, 0),
    ],
)
def test_builtin_sizes(name, features, classes):
    ds = builtin(name)
    assert ds.num_features == features and ds.num_classes == classes
    if classes:  # stratified split: every class in both halves
        assert set(np.unique(ds.y_train)) == set(np.unique(ds.y_test)) == set(range(classes))


def test_mnist1d_offline_default_split_and_global_rng_untouched():
    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d")
    assert (np.random.random(), random.random()) == before  # the package reseeds globally; restored
    check_invariants(ds)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40) and ds.num_classes == 10


def test_xor_is_the_four_points_in_both_splits():
    ds = builtin("xor")
    original = ds.x_train * ds.feature_std + ds.feature_mean
    np.testing.assert_array_equal(original, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1, 0])
    np.testing.assert_array_equal(ds.x_test, ds.x_train)
    np.testing.assert_array_equal(ds.y_test, ds.y_train)


def test_spirals_three_balanced_arms():
    ds = builtin("spirals")
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert ds.num_classes == 3 and np.bincount(labels).tolist() == [300, 300, 300]


def test_spirals_separable():
    """A 1-nearest-neighbour classifier is near perfect, so an MLP can reach >= 99%."""
    ds = builtin("spirals")
    dist = ((ds.x_test[:, None, :] - ds.x_train[None, :, :]) ** 2).sum(-1)
    assert np.mean(ds.y_train[dist.argmin(1)] == ds.y_test) >= 0.99


def test_sine_is_sine_in_original_units():
    ds = builtin("sine")
    x = ds.x_train * ds.feature_std + ds.feature_mean
    y = ds.y_train * ds.target_std + ds.target_mean
    assert x.min() >= -3 and x.max() <= 3 and ds.y_train.shape == (800, 1)
    assert np.std(y - np.sin(x)) == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize("name", FAST_GENERATED)
def test_deterministic_by_seed(name):
    a, b, c = load_dataset(name, seed=3), load_dataset(name, seed=3), load_dataset(name, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)


def test_split_by_seed_and_fraction():
    a, b = load_dataset("iris", seed=0), load_dataset("iris", seed=1)
    assert not np.array_equal(a.x_test, b.x_test)
    assert len(load_dataset("iris", test_fraction=0.5).x_test) == 75


# ---------------------------------------------------------------------------------------------- CSV files


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(v) for v in r) for r in rows]) + "\n")
    return path


def test_csv_standardised_with_train_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5.0, 2.0, (50, 2)), rng.normal(-40.0, 9.0, (50, 2))])  # far-apart rows
    y = rng.normal(size=100)
    ds = load_dataset(write_csv(tmp_path / "d.csv", ["a", "b", "y"], np.column_stack([x, y]).tolist()))
    check_invariants(ds)
    assert ds.task == "regression"
    # the stored statistics are exactly the train split's: mapping back recovers original rows in both splits
    train = ds.x_train * ds.feature_std + ds.feature_mean
    test = ds.x_test * ds.feature_std + ds.feature_mean
    np.testing.assert_allclose(ds.feature_mean, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.feature_std, train.std(0), rtol=1e-5)
    recovered = np.concatenate([train, test])
    np.testing.assert_allclose(np.sort(recovered, axis=0), np.sort(x, axis=0), rtol=1e-5, atol=1e-4)
    # and the test split is not standardised with its own statistics
    assert not np.allclose(ds.x_test.mean(0), 0, atol=1e-3)


def test_csv_target_column_and_label_remapping(tmp_path):
    rows = [[i, float(i) / 2, [3, 7, 9][i % 3]] for i in range(30)]
    path = write_csv(tmp_path / "d.csv", ["label", "f1", "f2"], [[r[2], r[0], r[1]] for r in rows])
    ds = load_dataset(path, target="label")
    check_invariants(ds)
    assert ds.task == "classification" and ds.num_classes == 3 and ds.class_names == ("3", "7", "9")
    assert ds.num_features == 2


def test_csv_default_target_is_last_and_constant_column_is_safe(tmp_path):
    rows = [[1.0, i, i % 2] for i in range(20)]  # column "c" is constant
    ds = load_dataset(write_csv(tmp_path / "d.csv", ["c", "x", "y"], rows))
    check_invariants(ds)
    assert ds.feature_std[0] == 1 and np.all(ds.x_train[:, 0] == 0) and ds.num_classes == 2


def test_task_override(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [[i, i % 4] for i in range(40)])
    assert load_dataset(path).task == "classification"
    ds = load_dataset(path, task="regression")
    check_invariants(ds)
    assert ds.task == "regression" and ds.y_train.shape == (32, 1)


# ---------------------------------------------------------------------------------------------- NPZ files


def test_npz_split_layout_keeps_its_split(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(20, 3)), rng.normal(size=(6, 3))
    y_train, y_test = np.arange(20) % 2, np.array([0, 1, 0, 1, 1, 1])
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_dataset(tmp_path / "d.npz")
    check_invariants(ds)
    np.testing.assert_array_equal(ds.y_test, y_test)
    np.testing.assert_allclose(ds.x_test * ds.feature_std + ds.feature_mean, x_test, rtol=1e-5, atol=1e-6)


def test_npz_xy_layout_with_target_key(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 3))  # flattened to 6 features
    np.savez(tmp_path / "d.npz", x=x, price=rng.normal(size=(40, 2)))
    ds = load_dataset(tmp_path / "d.npz", target="price")
    check_invariants(ds)
    assert ds.task == "regression" and ds.num_features == 6 and ds.y_train.shape == (32, 2)
    np.savez(tmp_path / "e.npz", x=x, y=np.arange(40) % 5)
    assert load_dataset(tmp_path / "e.npz").num_classes == 5


# ---------------------------------------------------------------------------------------------- IDX files


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_mnist_dir(directory, *, gz: bool):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (30, 4, 3)),
        "train-labels-idx1-ubyte": np.arange(30) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 4, 3)),
        "t10k-labels-idx1-ubyte": np.arange(10),
    }
    directory.mkdir()
    for name, array in arrays.items():
        data = idx_bytes(array)
        (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


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


# ------------------------------------------------------------------------------------------------- errors


def test_unknown_name_lists_builtins():
    with pytest.raises(DataError, match=r"unknown data set 'mnist2'.*xor, moons.*mnist1d"):
        load_dataset("mnist2")


@pytest.mark.parametrize("name", ["missing.csv", "missing.npz", "some/dir"])
def test_missing_file(tmp_path, name):
    with pytest.raises(DataError, match="not found"):
        load_dataset(str(tmp_path / name))


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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 0.0}, "test_fraction must be"),
        ({"test_fraction": 1.5}, "test_fraction must be"),
        ({"seed": -1}, "seed must be"),
        ({"task": "ranking"}, "task must be one of"),
        ({"target": "y"}, "target= applies to CSV and NPZ files only"),
        ({"task": "regression"}, "builtin 'iris' is a classification data set"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(DataError, match=message):
        load_dataset("iris", **kwargs)


def test_unsupported_suffix(tmp_path):
    (tmp_path / "d.txt").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="unsupported data file"):
        load_dataset(tmp_path / "d.txt")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_npz_header_claiming_a_huge_array_is_refused(tmp_path):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**14,)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\x00" * 8)
        archive.writestr("y.npy", header.getvalue() + b"\x00" * 8)
    with pytest.raises(DataError, match=r"array 'x': its header says shape \(100000000000000,\).*holds 8"):
        load_dataset(tmp_path / "d.npz")


@pytest.mark.parametrize(
    "y, message",
    [
        (np.arange(20).astype("datetime64[D]"), "dtype datetime64"),
        (np.arange(20).astype("timedelta64[s]"), "dtype timedelta64"),
        (np.zeros(20, [("a", "i4"), ("b", "f4")]), "expected numbers or string labels"),
        (np.array(3), "got a scalar"),
    ],
    ids=["datetime", "timedelta", "structured", "scalar"],
)
def test_npz_targets_must_be_numbers_or_labels(tmp_path, y, message):
    np.savez(tmp_path / "d.npz", x=np.ones((20, 2)), y=y)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "d.npz")


def test_npz_features_need_at_least_one_column(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((20, 0)), y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"at least one feature per row, got an array of shape \(20, 0\)"):
        load_dataset(tmp_path / "d.npz")


def test_features_beyond_float32_are_refused_not_zeroed(tmp_path):
    x = np.ones((20, 2))
    x[:, 0] = np.arange(20) * 1e160
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"features must be within float32's range.*column 0"):
        load_dataset(tmp_path / "d.npz")


def test_classification_needs_two_classes(tmp_path):
    (tmp_path / "one.csv").write_text("a,label\n" + "".join(f"{i},7\n" for i in range(10)))
    with pytest.raises(DataError, match="at least two classes, got only"):
        load_dataset(tmp_path / "one.csv", task="classification")


def test_float16_infinities_are_caught_without_a_cast_warning(tmp_path):
    x = np.ones((20, 2), np.float16)
    x[5, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(DataError, match="features must be finite, got inf at row 5, column 0"):
        load_dataset(tmp_path / "d.npz")
    np.savez(tmp_path / "ok.npz", x=np.ones((20, 2), np.float16), y=np.arange(20) % 2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(tmp_path / "ok.npz")


def test_missing_keys_are_not_called_corrupt(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), z=np.ones(4))
    with pytest.raises(DataError, match="missing y; found x, z") as error:
        load_dataset(tmp_path / "d.npz")
    assert "corrupt" not in str(error.value) and str(error.value).count("d.npz") == 1
