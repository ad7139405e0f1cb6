"""The README's embedding example runs as printed, from a fresh folder, and prints what its
comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _embedding_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Embedding") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_embedding_example_runs_as_printed(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_embedding_example())
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "release_blocked_by_appeal A5"
    assert lines[1].startswith("completed ")
    assert (tmp_path / "exchange.db").exists()
