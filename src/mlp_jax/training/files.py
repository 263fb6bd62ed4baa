"""Writing output files whole or not at all: a temporary file in the destination's directory, flushed
to disk, then ``os.replace``, so a run killed mid-write leaves the previous file (or none), never a
truncated one. The temporary is named ``.NAME.PID.XXXXXXXX.tmp`` (PID: the writer's process id); one left
behind by a killed writer is removed by `remove_stale_temporaries` on the next run in that directory."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary binary file next to `path`, fsync it, then move it onto `path`.

    A symlink is followed (its target is replaced, the link stays); an existing file keeps its
    permissions, a new one gets the umask's. A stream rather than a file, something that is not a
    regular file (a pipe) or a path under /dev or /proc (``/dev/stdout``, whatever it points at), is
    appended to in place."""
    path = Path(path)
    if path.exists() and (not path.is_file() or path.absolute().parts[1:2] in (("dev",), ("proc",))):
        with open(path, "ab") as f:
            write(f)
        return
    path = _destination(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by the `with tmp` below, renamed after)
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)  # not the temporary file's 0600
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _destination(path: Path) -> Path:
    """The file a write to `path` lands in: `path`, or the end of its chain of symlinks (created if the
    chain dangles, as ``open`` does; a loop raises, as ``open`` does)."""
    if not path.is_symlink():
        return path
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        return Path(os.path.realpath(path))


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (changing it, even for a
    moment, would race with files other threads create)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o22)
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


# ``.NAME.PID.XXXXXXXX.tmp`` as `write_atomic` names its temporaries, or ``.NAME.XXXXXXXX.tmp`` as it did
# before they carried the writer's pid; NAME one of the kinds of file a run writes
_TEMPORARY = re.compile(r"\.(?P<name>[^/]+\.(?:npz|json|png))\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp")


def _is_running(pid: int) -> bool:
    """Whether a process with id `pid` exists on this machine (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or a pid we cannot ask about: assume it lives
    return True


def remove_stale_temporaries(directory: Path, *, older_than: float) -> list[Path]:
    """Remove the temporaries `write_atomic` left in `directory` when their writer was killed; returns them.

    Only files of `write_atomic`'s naming for ``.npz``, ``.json`` and ``.png`` files are touched, and only
    those last modified before `older_than` (a `time.time()`, e.g. when this run started) whose writer is
    gone (or, for the older naming without a pid, unknown): a temporary still being written is kept."""
    try:
        entries = list(Path(directory).iterdir())
    except OSError:  # no such directory (yet), or not readable: nothing of ours to clean
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or (match["pid"] is not None and _is_running(int(match["pid"]))):
            continue
        try:
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mtime < older_than:
                entry.unlink()
                removed.append(entry)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed
