"""Builders and checks shared by the data tests (test_data, test_datasets, test_readers)."""

from __future__ import annotations

import gzip
import io
import math
import zipfile

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


def npy_header(shape: tuple, descr: str = "<f8") -> bytes:
    """The .npy header (format 1.0) of an array of `shape` and dtype `descr`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def write_zeros_npz(path, members: dict[str, tuple], descr: str = "<f8"):
    """An .npz whose members (name -> shape) hold zeros, deflated and written in 1 MiB chunks: a small file
    that decompresses to the full size (a decompression bomb when the shapes are large)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, shape in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(npy_header(shape, descr))
                left = math.prod(shape) * np.dtype(descr).itemsize
                while left:
                    f.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
    return path


def claim_uncompressed_size(path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the zip at `path` records for its only member (stored, not deflated),
    in the local and the central header, to `size`: a header that claims more than the member holds."""
    data = bytearray(path.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    assert data[local + 30 : local + 30 + len(member)] == member.encode()
    data[local + 22 : local + 26] = size.to_bytes(4, "little")
    data[central + 24 : central + 28] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def peak_traced_bytes(function) -> tuple[int, BaseException | None]:
    """Run `function()` under tracemalloc (which sees numpy's, zlib's and Python's allocations) and return the
    peak of traced memory during the call, and the exception it raised, if any."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        raised = None
    except Exception as error:  # returned to the test, which checks it
        raised = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def gzip_of_zeros(header: bytes, n_zeros: int) -> bytes:
    """gzip of `header` followed by `n_zeros` zero bytes, compressed in 1 MiB chunks."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as f:
        f.write(header)
        chunk = bytes(1 << 20)
        while n_zeros:
            f.write(chunk[: min(n_zeros, len(chunk))])
            n_zeros -= min(n_zeros, len(chunk))
    return out.getvalue()
