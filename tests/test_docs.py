"""Every fenced ``python`` block of README.md and docs/*.md runs, in order within its file, as a user pastes them.

A file's blocks run in one fresh Python process (so a page may set ``XLA_FLAGS`` or 64-bit mode before JAX
starts, as its reader would), in a temporary working directory, sharing one namespace; a traceback names the
Markdown file and line. A block whose info string is ``python slow`` is too slow for the quick loop: it runs
in the file's ``slow`` test only, and a page says so next to it. Blocks of other languages (bash, text) are
not run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```\s*$", re.M | re.S)

RUNNER = """
import json, sys
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for block in blocks:
    exec(compile(block["code"], block["where"], "exec"), namespace)
"""


class Block(NamedTuple):
    line: int  # of the block's first code line in the page, 1-based
    info: tuple[str, ...]  # the info string's words: ("python",) or ("python", "slow")
    code: str


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks in order. A code line's number in the page is kept by padding the code with
    blank lines, so a traceback's line is the page's line."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        first_line = text.count("\n", 0, match.start("body")) + 1
        body = "\n".join(line[len(match["indent"]) :] for line in match["body"].splitlines())
        found.append(Block(first_line, tuple(match["info"].split()), "\n" * (first_line - 1) + body))
    return found


def python_blocks(page: Path, *, slow: bool) -> list[Block]:
    return [b for b in blocks(page) if b.info[:1] == ("python",) and (slow or "slow" not in b.info[1:])]


def cases() -> list:
    params = []
    for page in PAGES:
        name = str(page.relative_to(ROOT))
        if python_blocks(page, slow=False):
            params.append(pytest.param(page, False, id=name))
        if any("slow" in b.info[1:] for b in python_blocks(page, slow=True)):
            params.append(pytest.param(page, True, id=f"{name}-slow", marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize(("page", "slow"), cases())
def test_page_snippets_run_in_order(page: Path, slow: bool, tmp_path: Path):
    request = [{"code": b.code, "where": str(page)} for b in python_blocks(page, slow=slow)]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, f"a snippet of {page.name} failed:\n{proc.stderr[-4000:]}"


def test_every_page_with_code_is_collected():
    """The collector sees the pages' python blocks (a changed fence syntax must not silently test nothing)."""
    readme = python_blocks(ROOT / "README.md", slow=True)
    assert readme, "README.md has no python block"
    assert all(b.code.strip() for b in readme)


def test_block_lines_match_the_page(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# title\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n  ```python slow\n  y = x + 1\n  ```\n")
    found = blocks(page)
    assert [(b.line, b.info) for b in found] == [(4, ("python",)), (8, ("bash",)), (12, ("python", "slow"))]
    assert found[2].code.splitlines()[11] == "y = x + 1"
    assert [b.line for b in python_blocks(page, slow=False)] == [4]
