"""`mlp_jax.training.data`: user data as a `Dataset` (train-only standardisation, task inference, label encoding),
the checks of features and targets, and load_dataset's arguments and errors."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import check_invariants, write_csv

from mlp_jax.training.data import DataError, load_dataset

# ---------------------------------------------------------------------------------------------- CSV files


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


# ------------------------------------------------------------------------------------------------- errors


def test_unknown_name_lists_builtins():
    with pytest.raises(DataError, match=r"unknown data set 'mnist2'.*xor, moons.*mnist1d"):
        load_dataset("mnist2")


@pytest.mark.parametrize("name", ["missing.csv", "missing.npz", "some/dir"])
def test_missing_file(tmp_path, name):
    with pytest.raises(DataError, match="not found"):
        load_dataset(str(tmp_path / name))


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


# ------------------------------------------------------------------------------------ degenerate shapes


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            dict(x=np.ones((0, 3)), y=np.ones(0)),
            r"expected at least one example \(row\), got features of shape \(0, 3\)",
        ),
        (dict(x=np.ones((0, 3)), y=np.arange(0)), r"got features of shape \(0, 3\)"),
        (dict(x=np.ones((0, 3)), y=np.ones(5)), r"got features of shape \(0, 3\)"),
        (dict(x=np.ones((5, 3)), y=np.ones(0)), r"same number of rows, got 5 and 0"),
        (dict(x=np.ones((5, 3)), y=np.ones(4)), r"same number of rows, got 5 and 4"),
        (dict(x=np.ones((5, 0)), y=np.arange(5) % 2), r"at least one feature per row, got an array of shape \(5, 0\)"),
        (dict(x=np.ones((10, 3)), y=np.ones((10, 0))), r"at least one target value per row, got shape \(10, 0\)"),
        (dict(x=np.ones((1, 3)), y=np.ones(1) * 0.5), r"at least one train and one test row, got 1 rows"),
        (
            dict(x_train=np.ones((0, 3)), y_train=np.ones(0), x_test=np.ones((2, 3)), y_test=np.ones(2)),
            r"train features: expected at least one example \(row\), got features of shape \(0, 3\)",
        ),
        (
            dict(x_train=np.ones((4, 3)), y_train=np.ones(4), x_test=np.ones((2, 3)), y_test=np.ones(3)),
            r"test features and targets must have the same, non-zero number of rows, got 2 and 3",
        ),
    ],
    ids=[
        "no-rows",
        "no-rows-int",
        "no-rows-5-targets",
        "no-targets",
        "y-short",
        "no-features",
        "no-target-columns",
        "one-example",
        "split-no-train-rows",
        "split-y-length",
    ],
)
def test_degenerate_npz_shapes_are_one_line_data_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message) as error:
        load_dataset(tmp_path / "d.npz")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        (b"a,b,y\n", "expected data rows after the header, got none"),
        (b"a,b,y\n1,2,0.5\n", "at least one train and one test row, got 1 rows"),
        (b"y\n1\n2\n", "at least two columns"),
    ],
    ids=["header-only", "one-row", "target-only"],
)
def test_degenerate_csv_shapes_are_one_line_data_errors(tmp_path, text, message):
    (tmp_path / "d.csv").write_bytes(text)  # bytes: conftest reads str parameters as dtype names
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "d.csv")


# ------------------------------------------------------------------------------------------- task and labels


def test_many_distinct_integers_are_not_silently_regression(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [[i, i % 60] for i in range(240)])  # 60 distinct integers
    with pytest.raises(DataError, match=r"60 distinct integer values, more than 50.*task='classification' or task="):
        load_dataset(path)
    ds = load_dataset(path, task="classification")
    check_invariants(ds)
    assert ds.num_classes == 60 and ds.class_names[:3] == ("0", "1", "2")
    assert load_dataset(path, task="regression").task == "regression"
    few = write_csv(tmp_path / "e.csv", ["x", "y"], [[i, i % 50] for i in range(200)])
    assert load_dataset(few).num_classes == 50  # at most 50: class labels


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_], ids=["float32", "int64", "bool"])
def test_one_hot_targets_are_classification(tmp_path, dtype):
    labels = np.arange(40) % 3
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(40, 2)), y=np.eye(3, dtype=dtype)[labels])
    ds = load_dataset(tmp_path / "d.npz")
    check_invariants(ds)
    assert ds.task == "classification" and ds.class_names == ("0", "1", "2")
    regression = load_dataset(tmp_path / "d.npz", task="regression")
    assert regression.task == "regression" and regression.y_train.shape == (32, 3)


def test_one_hot_split_layout_keeps_its_labels(tmp_path):
    eye = np.eye(4)
    y_train, y_test = np.arange(20) % 4, np.array([3, 0, 1, 2])
    np.savez(
        tmp_path / "d.npz",
        x_train=np.ones((20, 2)) * y_train[:, None],
        y_train=eye[y_train],
        x_test=np.ones((4, 2)),
        y_test=eye[y_test],
    )
    ds = load_dataset(tmp_path / "d.npz")
    assert ds.task == "classification" and ds.num_classes == 4
    np.testing.assert_array_equal(ds.y_test, y_test)
    np.testing.assert_array_equal(ds.y_train, y_train)


def test_rows_of_zeros_and_ones_that_are_not_one_hot_stay_regression(tmp_path):
    y = np.eye(3)[np.arange(30) % 3]
    y[0] = [1, 1, 0]  # two ones in a row
    np.savez(tmp_path / "d.npz", x=np.ones((30, 2)) * np.arange(30)[:, None], y=y)
    assert load_dataset(tmp_path / "d.npz").task == "regression"
    with pytest.raises(DataError, match=r"one label per row \(or one-hot rows\), got targets of shape \(30, 3\)"):
        load_dataset(tmp_path / "d.npz", task="classification")


def test_csv_string_labels_are_classes_in_sorted_order(tmp_path):
    names = ["dog", "cat", "bird", " cat"]  # the cell " cat" is the label "cat"
    rows = [[i, i % 5, names[i % 4]] for i in range(40)]
    ds = load_dataset(write_csv(tmp_path / "d.csv", ["a", "b", "animal"], rows))
    check_invariants(ds)
    assert ds.task == "classification" and ds.class_names == ("bird", "cat", "dog")
    x_all = np.concatenate([ds.x_train, ds.x_test]) * ds.feature_std + ds.feature_mean
    y_all = np.concatenate([ds.y_train, ds.y_test])
    for a, code in zip(np.round(x_all[:, 0]).astype(int), y_all):
        assert ds.class_names[code] == names[a % 4].strip()
    with pytest.raises(DataError, match=r"regression targets must be numbers, got text labels such as 'dog'"):
        load_dataset(tmp_path / "d.csv", task="regression")


def test_csv_and_npz_string_labels_give_the_same_classes(tmp_path):
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(30, 2)), np.array(["b", "a", "10", "9", "b"] * 6)
    write_csv(tmp_path / "d.csv", ["f1", "f2", "y"], [[*row, label] for row, label in zip(x.tolist(), labels)])
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    np.savez(tmp_path / "b.npz", x=x, y=labels.astype("S"))  # bytes labels: decoded as UTF-8
    from_csv, from_npz, from_bytes = (load_dataset(tmp_path / n) for n in ("d.csv", "d.npz", "b.npz"))
    assert from_csv.class_names == from_npz.class_names == from_bytes.class_names == ("10", "9", "a", "b")
    np.testing.assert_array_equal(from_csv.y_test, from_npz.y_test)
    np.testing.assert_array_equal(from_bytes.y_test, from_npz.y_test)
