"""Reading an ``.npz`` archive a user hands us (a data set, a checkpoint): no pickles
(``allow_pickle=False``), and every member's ``.npy`` header checked against the bytes the member
really holds before any array is allocated, so a header that claims a huge shape is a clear error, not
a ``MemoryError`` (or a machine swapping) deep inside numpy. `load` takes an optional limit on the bytes the
arrays decompress to, checked before any is read, and streams each member in chunks."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlp_jax.core.errors import NpzError

CHUNK_BYTES = 1 << 20  # what one read of a member decompresses at most


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
            if dtype.itemsize == 0:
                raise NpzError(f"array {name!r}: its dtype {dtype} has elements of zero bytes, which hold no data")
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


def load(
    path: Path,
    names: Callable[[list[str]], list[str]] | None = None,
    *,
    max_bytes: int | None = None,
    limit_hint: str = "",
) -> dict[str, np.ndarray]:
    """The arrays of the archive at `path` (only those `names` picks from the list of all, if given),
    after `check_members`. Raises `NpzError` for a bad member, a bare .npy file, arrays whose data
    together exceed `max_bytes` (None: no limit; `limit_hint` is added to that message, e.g. how to raise
    the limit), or an array too large for this machine's memory; a file that is no zip archive raises
    ``zipfile.BadZipFile`` or ``OSError``.

    The sizes are checked before anything is decompressed, and each member is then streamed in chunks
    into a buffer that grows only with the bytes really read: a member that claims more data than it
    holds ends in an error, never in a buffer of the claimed size."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(6) == np.lib.format.MAGIC_PREFIX:
                raise NpzError("expected an .npz archive, found a bare .npy array")
    check_members(path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename[: -len(".npy")]: info for info in archive.infolist() if info.filename.endswith(".npy")}
        chosen = list(dict.fromkeys(names(list(members)) if names else members))  # each name once
        total = sum(members[name].file_size for name in chosen)
        if max_bytes is not None and total > max_bytes:
            raise NpzError(
                f"arrays {', '.join(map(repr, chosen))} decompress to {total} bytes, more than the limit of "
                f"{max_bytes} bytes{limit_hint}"
            )
        return {name: _read_array(archive, members[name], name) for name in chosen}


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """One ``.npy`` member (its header already checked by `check_members`), read in chunks of
    `CHUNK_BYTES`: the buffer grows with the data the member really yields."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(member)
        count = math.prod(shape)
        size = count * dtype.itemsize
        try:
            data = bytearray()
            while len(data) < size:
                chunk = member.read(min(CHUNK_BYTES, size - len(data)))
                if not chunk:
                    raise NpzError(f"array {name!r}: truncated data, expected {size} bytes, got {len(data)}")
                data += chunk
            member.read(1)  # at the end of the member: zipfile checks its CRC
            array = np.frombuffer(data, dtype=dtype, count=count)
        except MemoryError:
            raise NpzError(f"array {name!r} needs more memory than this machine can allocate") from None
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)
