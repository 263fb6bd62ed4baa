"""Reading the user's data files into numpy arrays: a CSV with a header row, an ``.npz`` archive (through
`mlp_jax.training.npz`: no pickles, every header checked), and IDX files (MNIST's format, optionally gzipped).

Every reader raises `DataError`, one line naming the file, what was expected and what was found. What the
arrays mean (features, targets, the task) is decided by `mlp_jax.training.data`.

A file may be small on disk and huge once decompressed (a "decompression bomb"): each reader takes a limit
on the bytes it reads (`max_bytes`; by default `max_data_bytes()`, that is ``$MLP_JAX_MAX_DATA_BYTES`` or
`MAX_DATA_BYTES`), checks the sizes a file's headers claim against it before reading any data, and reads
in chunks, stopping at the first byte past what the header announced.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlp_jax.core.errors import DataError
from mlp_jax.training import npz

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_DATA_BYTES = 256 * 2**20  # default limit on one data file's bytes once decompressed
MAX_DATA_BYTES_ENV = "MLP_JAX_MAX_DATA_BYTES"  # environment variable that overrides it, in bytes
_CHUNK_BYTES = 1 << 20
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ------------------------------------------------------------------------------------------------ limit


def max_data_bytes() -> int:
    """The limit on one data file's decompressed bytes: ``$MLP_JAX_MAX_DATA_BYTES`` if set, else
    `MAX_DATA_BYTES`."""
    text = os.environ.get(MAX_DATA_BYTES_ENV)
    if text is None or not text.strip():
        return MAX_DATA_BYTES
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_DATA_BYTES_ENV} must be a positive whole number of bytes, got {text!r}")
    return value


def _limit(max_bytes: int | None) -> int:
    return max_data_bytes() if max_bytes is None else max_bytes


def _over_limit(path: Path, what: str, size: int, limit: int) -> DataError:
    return DataError(
        f"{path}: {what} {size} bytes, more than the limit of {limit} bytes on a data file "
        f"(set {MAX_DATA_BYTES_ENV} to raise it)"
    )


# -------------------------------------------------------------------------------------------------- CSV


def read_csv(path: Path, target: str | None, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header row -> features (n, d) float64 and the target column (n,): float64 when every
    target cell is a number, else the cells as strings (class labels, stripped of surrounding spaces).
    Every feature cell must be a finite number. A file of more than `max_bytes` bytes is refused unread."""
    limit = _limit(max_bytes)
    if path.stat().st_size > limit:
        raise _over_limit(path, "the file holds", path.stat().st_size, limit)
    header: list[str] | None = None
    features: list[list[float]] = []
    cells: list[str] = []  # the target column, as written
    lines: list[int] = []  # the line of each row, for error messages
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if all(cell.strip() == "" for cell in row):
                    continue  # blank line
                if header is None:
                    header = [cell.strip() for cell in row]
                    _check_header(path, header)
                    col = _target_index(path, header, target)
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}, line {reader.line_num}: expected {len(header)} cells (one per header "
                        f"column), got {len(row)}"
                    )
                line = reader.line_num
                features.append([_parse_cell(path, line, header[i], c) for i, c in enumerate(row) if i != col])
                cells.append(row[col].strip())
                lines.append(line)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: expected UTF-8 text, got undecodable bytes ({e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV: {e}") from None
    if header is None:
        raise DataError(f"{path}: expected a header row and data rows, got an empty file")
    if not features:
        raise DataError(f"{path}: expected data rows after the header, got none")
    return np.array(features, np.float64), _target_column(path, header[col], cells, lines)


def _target_index(path: Path, header: list[str], target: str | None) -> int:
    """The column of `target` in the header (the last column when None)."""
    if target is None:
        return len(header) - 1
    if header.count(target) == 1:
        return header.index(target)
    problem = "not found" if target not in header else "appears more than once"
    raise DataError(f"{path}: target column {target!r} {problem}; available columns: {', '.join(header)}")


def _target_column(path: Path, name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """The target cells as float64 (n,) when all are numbers (each finite), else as strings (n,)."""
    try:
        values = np.array([float(cell) for cell in cells], np.float64)
    except ValueError:  # a cell that is no number: the column holds class labels
        if "" in cells:
            line = lines[cells.index("")]
            raise DataError(
                f"{path}, line {line}, column {name!r}: expected a number or a class label, got an empty cell"
            ) from None
        return np.array(cells, dtype=str)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(
            f"{path}, line {lines[bad[0]]}, column {name!r}: expected a finite number, got {cells[bad[0]]!r}"
        )
    return values


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) < 2:
        raise DataError(f"{path}: expected a header with at least two columns (features and a target), got {header}")
    if "" in header:
        raise DataError(
            f"{path}: expected a name for every column in the header row, column {header.index('') + 1} is empty"
        )
    if all(_is_number(cell) for cell in header):
        raise DataError(f"{path}: expected a header row of column names first, got numbers: {','.join(header)}")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_cell(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}, column {column!r}: expected a finite number, got {cell!r}")
    return value


# -------------------------------------------------------------------------------------------------- NPZ


def read_npz(path: Path, target: str | None, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of one layout: x_train, y_train, x_test, y_test; or x and y (y is `target` when given).
    Arrays that decompress to more than `max_bytes` bytes together are refused before any is read."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: expected an .npz (zip) archive written by np.savez, got a file that is not one")
    wanted: dict[str, str] = {}

    def pick(keys: list[str]) -> list[str]:
        if target is not None:
            wanted.update(x="x", y=target)
        elif all(k in keys for k in NPZ_SPLIT_KEYS):
            wanted.update({k: k for k in NPZ_SPLIT_KEYS})
        else:
            wanted.update(x="x", y="y")
        missing = [k for k in wanted.values() if k not in keys]
        if missing:
            raise DataError(
                f"{path}: expected arrays {', '.join(NPZ_SPLIT_KEYS)} or x and y (or x and "
                f"target=...), missing {', '.join(missing)}; found {', '.join(keys) or 'none'}"
            )
        return list(wanted.values())

    try:
        hint = f" on a data file (set {MAX_DATA_BYTES_ENV} to raise it)"
        arrays = npz.load(path, pick, max_bytes=_limit(max_bytes), limit_hint=hint)
    except DataError:
        raise
    except npz.NpzError as e:
        raise DataError(f"{path}: {e}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt .npz archive: {e}") from None
    return {role: arrays[key] for role, key in wanted.items()}


# -------------------------------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """One IDX file (optionally gzipped, by a ``.gz`` suffix) -> an array of its stored dtype and dims.
    Data of more than `max_bytes` bytes, as the header announces it, is refused before it is read; the
    file is read in chunks up to the announced size, so a file holding more ends the read at once."""
    path = Path(path)
    limit = _limit(max_bytes)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            dims, dtype = _idx_header(path, f)
            expected = math.prod(dims) * dtype.itemsize
            if expected > limit:
                raise _over_limit(path, f"its IDX header says dims {dims} of {dtype.name} =", expected, limit)
            data = bytearray()
            while len(data) < expected:
                chunk = f.read(min(_CHUNK_BYTES, expected - len(data)))
                if not chunk:
                    break
                data += chunk
            extra = bool(f.read(1))
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: expected a gzipped IDX file, could not decompress it: {e}") from None
    if len(data) < expected or extra:
        kind, got = ("truncated", str(len(data))) if len(data) < expected else ("oversized", "more")
        raise DataError(
            f"{path}: {kind} IDX data, header says dims {dims} of {dtype.name} = {expected} bytes, got {got}"
        )
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_header(path: Path, f: io.BufferedIOBase) -> tuple[tuple[int, ...], np.dtype]:
    """The dims and dtype an IDX header announces, read from the open file `f`."""
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES or magic[3] == 0:
        raise DataError(f"{path}: expected an IDX magic number 00 00 <type code> <ndim>, got {magic.hex(' ')}")
    ndim, dtype = magic[3], np.dtype(_IDX_DTYPES[magic[2]])
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header, expected {4 + 4 * ndim} bytes for {ndim} dims, got {4 + len(raw_dims)}"
        )
    return tuple(int(d) for d in np.frombuffer(raw_dims, ">u4")), dtype


def read_idx_dir(path: Path, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A directory of the four MNIST IDX files (each optionally .gz) -> x_train, y_train, x_test, y_test:
    images flattened to (n, rows*cols) float32, in [0, 1] when stored as bytes, and their labels (n,).
    Each file may hold at most `max_bytes` bytes of data (`read_idx`)."""
    files = {}
    for stem in IDX_FILES:
        found = [p for p in (path / stem, path / f"{stem}.gz") if p.is_file()]
        if not found:
            present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            raise DataError(
                f"{path}: expected the MNIST IDX files {', '.join(IDX_FILES)} (each optionally .gz), "
                f"missing {stem}; the directory holds {present}"
            )
        files[stem] = read_idx(found[0], max_bytes)
    parts = []
    for images, labels in ((files[IDX_FILES[0]], files[IDX_FILES[1]]), (files[IDX_FILES[2]], files[IDX_FILES[3]])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{path}: expected images (n, rows, cols) and labels (n,), got shapes {images.shape} and {labels.shape}"
            )
        x = images.reshape(len(images), math.prod(images.shape[1:])).astype(np.float32)
        parts += [x / 255.0 if images.dtype == np.uint8 else x, labels]
    return parts[0], parts[1], parts[2], parts[3]
