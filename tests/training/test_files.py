"""`mlp_jax.training.files`: an output file is replaced whole or left as it was."""

import os
import stat

import pytest

from mlp_jax.training.files import write_atomic, write_text


def test_write_text_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    write_text(path, "new")
    assert path.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not the temporary file's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("old")

    def write_half_then_fail(f):
        f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        write_atomic(path, write_half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_a_symlink_is_followed_and_an_existing_files_mode_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)  # neither the umask's mode nor the temporary file's 0600
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_a_pipe_is_written_in_place_not_replaced(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "report")
    reader.join(timeout=10)
    assert received == ["report"] and stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.slow  # two subprocesses
def test_dev_stdout_is_appended_to_whatever_it_is(tmp_path):
    """`--json /dev/stdout` with stdout a pipe, or redirected to a file that already holds output."""
    import subprocess
    import sys

    script = (
        "from mlp_jax.training.files import write_text; print('table', flush=True); "
        "write_text('/dev/stdout', 'json\\n')"
    )
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "table\njson\n", piped.stderr
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True, timeout=60)
    assert log.read_text() == "earlier\ntable\njson\n"


def test_a_symlink_loop_raises_and_stays_a_link(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError):
        write_text(tmp_path / "a", "x")
    assert (tmp_path / "a").is_symlink()
