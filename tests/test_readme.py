"""The README's examples run as printed, from a fresh folder: the embedding example prints
what its comments say, and the HTTP session answers what the README shows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http_server import ESCROW, free_port, running

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


def _http_section() -> tuple[str, list[tuple[str, str]]]:
    """The keys file and the curl session (each command with the output printed under it)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## HTTP service") : readme.index("## CS console")]
    keys = re.search(r"```yaml\n(.*?)```", section, re.S)
    session = re.search(r"```console\n(.*?)```", section, re.S)
    assert keys is not None and session is not None
    steps: list[tuple[str, str]] = []
    for line in session.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], ""))
        elif line.startswith("    ") and not steps[-1][1]:  # the command goes on
            steps[-1] = (f"{steps[-1][0]}\n{line}", "")
        else:
            steps[-1] = (steps[-1][0], f"{steps[-1][1]}{line}\n")
    return keys.group(1), steps


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq")), reason="the session uses curl and jq"
)
def test_the_http_session_answers_as_printed(tmp_path: Path) -> None:
    keys, steps = _http_section()
    (tmp_path / "keys.yaml").write_text(keys)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [ESCROW, "--store", "sqlite:///exchange.db", "serve", "--keys", "keys.yaml",
             "--port", str(port)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    with running(server, f"http://127.0.0.1:{port}", log):
        assert len(steps) >= 8
        for command, printed in steps:
            done = subprocess.run(
                ["bash", "-c", command.replace("localhost:8080", f"localhost:{port}")],
                cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.stdout.rstrip("\n") == printed.rstrip("\n"), command
