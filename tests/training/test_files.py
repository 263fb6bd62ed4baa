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


def _dead_pid() -> int:
    """The id of a process that has exited (and been waited for)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temporaries_of_our_naming_are_removed_and_nothing_else(tmp_path):
    import time

    from mlp_jax.training.files import remove_stale_temporaries

    old = time.time() - 60
    dead, alive = _dead_pid(), os.getpid()
    names = {
        ".checkpoint.npz.k2j_x9ab.tmp": True,  # the naming before temporaries carried their writer's pid
        f".checkpoint.npz.{dead}.k2j_x9ab.tmp": True,  # its writer is gone
        f".metrics.json.{dead}.abcdefgh.tmp": True,
        f".loss.png.{dead}.abcdefgh.tmp": True,
        f".checkpoint.npz.{alive}.abcdefgh.tmp": False,  # its writer is alive
        ".checkpoint.npz.tmp": False,  # not our naming
        "checkpoint.npz.k2j_x9ab.tmp": False,
        ".notes.txt.k2j_x9ab.tmp": False,
        "checkpoint.npz": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / ".checkpoint.npz.zzzzzzzz.tmp"  # written after the run started: maybe in use
    fresh.write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path, older_than=time.time() - 30)
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name] + [n for n, s in names.items() if not s])
    assert remove_stale_temporaries(tmp_path / "missing", older_than=time.time()) == []


def test_temporaries_carry_the_writers_pid(tmp_path):
    seen = []
    write_atomic(tmp_path / "a.json", lambda f: seen.append(os.path.basename(f.name)))
    assert seen[0].startswith(f".a.json.{os.getpid()}.") and seen[0].endswith(".tmp")
