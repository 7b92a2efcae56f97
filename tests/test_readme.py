"""The README's walk-through, run as a newcomer runs it: every shell block between
its markers, in order, in a folder with `.venv` (this interpreter's environment),
against a real `postern serve` started with the walk-through's settings. The only
edits are the ports (free ones instead of the defaults, which may be taken here) and
the admin token the server printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serve_process import ServeProcess, free_port

README = Path(__file__).resolve().parent.parent / "README.md"
DEFAULT_PORTS = {"http": 8080, "smtp": 2525, "lmtp": 2424, "submission": 2587, "pop3": 1110, "imap": 1143}
TOKEN_LINE = re.compile(r"admin token:\s+(\S+)")


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    start, end = text.index("<!-- walkthrough:start -->"), text.index("<!-- walkthrough:end -->")
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.DOTALL)


def _exports(block: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith("export "):
            for pair in line.removeprefix("export ").split():
                name, _, value = pair.partition("=")
                found[name] = value
    return found


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the newcomer stands: the README's commands say `.venv/bin/postern`."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return tmp_path


@pytest.fixture
def walkthrough_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
    env["POSTERN_DATA_DIR"] = str(folder / "postern-data")  # the default, ./postern-data
    # The tests' cheap hashes and no fsync: the walk-through checks behaviour, not cost.
    env.update({"POSTERN_FSYNC": "false", "POSTERN_ARGON2_TIME_COST": "1", "POSTERN_ARGON2_MEMORY_KIB": "8"})
    return env


@pytest.fixture
def ports() -> dict[str, int]:
    return {door: free_port() for door in DEFAULT_PORTS}


@pytest.fixture
def server(walkthrough_env: dict[str, str], ports: dict[str, int]) -> Iterator[ServeProcess]:
    env = {**walkthrough_env, **_exports(walkthrough_blocks()[0])}
    for door, port in ports.items():
        env[f"POSTERN_{door.upper()}_LISTEN"] = f"127.0.0.1:{port}"
    process = ServeProcess(env)
    try:
        assert process.wait_ready(), process.output + process.errors
        yield process
    finally:
        process.stop()


def test_walkthrough_blocks_are_there() -> None:
    blocks = walkthrough_blocks()
    assert "postern serve" in blocks[1]
    assert len(blocks) >= 8


def test_the_walkthrough_works(folder: Path, walkthrough_env: dict[str, str], ports: dict[str, int], server: ServeProcess) -> None:
    for tool in ("swaks", "curl"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is needed (CI installs it)")
            pytest.skip(f"{tool} is not installed")
    token = TOKEN_LINE.search(server.output)
    assert token, server.output
    blocks = walkthrough_blocks()
    env = {**walkthrough_env, **_exports(blocks[0])}
    outputs: list[str] = []
    for number, block in enumerate(blocks):
        if number == 0 or "postern serve" in block:
            continue  # the settings (in env) and the server (started above)
        script = block.replace("export TOKEN=…", f"export TOKEN={token.group(1)}")
        for door, port in ports.items():
            script = script.replace(f"127.0.0.1:{DEFAULT_PORTS[door]}", f"127.0.0.1:{port}")
        result = subprocess.run(["bash", "-eu", "-o", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"block {number} failed:\n{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        outputs.append(result.stdout + result.stderr)
    domain, user, receive, read, send, autoconfig, admin = outputs
    assert "example.org. 3600 IN MX 10 mail.example.org." in domain and "._domainkey.example.org." in domain
    assert "alice@example.org" in user
    assert "250 2.0.0 Ok: stored" in receive
    assert "Subject: Hello Alice" in read and "Welcome to postern." in read
    assert "queued as" in send and "bob@example.net" in send
    assert re.search(r"\t(queued|sending|deferred)\t", send), send
    assert "<clientConfig" in autoconfig and "<hostname>mail.example.org</hostname>" in autoconfig
    assert '"username":"alice"' in admin and '"queueId"' in admin
    assert "Traceback" not in server.errors
