"""Reading an ``.npz`` archive a user hands us (a data set, a checkpoint): no pickles
(``allow_pickle=False``), and every member's ``.npy`` header checked against the bytes the member
really holds before any array is allocated, so a header that claims a huge shape is a clear error, not
a ``MemoryError`` (or a machine swapping) deep inside numpy."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlp_jax.core.errors import NpzError


def check_members(path: Path) -> None:
    """Raise `NpzError` unless every ``.npy`` member's header is readable, names no Python objects, and
    its shape and dtype account for exactly the bytes stored after it."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member)
                except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
                    raise NpzError(f"array {name!r}: unreadable .npy header ({e})") from None
                header_bytes = member.tell()
            if dtype.hasobject:
                raise NpzError(
                    f"array {name!r} holds Python objects, which are refused (allow_pickle=False); "
                    "save plain numeric arrays"
                )
            expected, stored = math.prod(shape) * dtype.itemsize, info.file_size - header_bytes
            if expected != stored:
                raise NpzError(
                    f"array {name!r}: its header says shape {shape} of {dtype} = {expected} bytes, "
                    f"but the archive holds {stored}"
                )


def load(path: Path, names: Callable[[list[str]], list[str]] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the archive at `path` (only those `names` picks from the list of all, if given),
    after `check_members`. Raises `NpzError` for a bad member, a bare .npy file, or an array too large
    for this machine's memory; a file that is no zip archive raises ``zipfile.BadZipFile`` or ``OSError``."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(6) == np.lib.format.MAGIC_PREFIX:
                raise NpzError("expected an .npz archive, found a bare .npy array")
    check_members(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {}
        for name in names(list(archive.files)) if names else archive.files:
            try:
                arrays[name] = archive[name]
            except MemoryError:
                raise NpzError(f"array {name!r} needs more memory than this machine can allocate") from None
        return arrays
