"""Builders and checks shared by the data tests (test_data, test_datasets, test_readers)."""

from __future__ import annotations

import gzip

import numpy as np

from mlp_jax.training.data import Dataset, default_loss


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


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(v) for v in r) for r in rows]) + "\n")
    return path


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
