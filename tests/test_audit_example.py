"""docs/audit.md's Python example runs as printed and prints what the page says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_audit_example_prints_what_the_docs_say(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "audit.md").read_text()
    section = page[page.index("## In Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"prints\n\n```\n(.*?)```", section, re.S)
    assert code is not None and printed is not None
    (tmp_path / "example.py").write_text(code.group(1))
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed.group(1)
