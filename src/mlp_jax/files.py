"""Writing output files whole or not at all: a temporary file in the destination's directory, flushed
to disk, then ``os.replace``, so a run killed mid-write leaves the previous file (or none), never a
truncated one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary binary file next to `path`, fsync it, then move it onto `path`."""
    path = Path(path)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o666 & ~_umask())  # as open() would make it, not the temporary file's 0600
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """`path`'s whole content becomes `text` (UTF-8), atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG at `path`, atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
