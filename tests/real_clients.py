"""Driving Debian's mail clients (mbsync, fetchmail, getmail) from the tests.

A missing client fails the test in CI (``CI`` set: .ci/run installs them) and skips it
on a developer's machine."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

def require_client(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (CI installs it with apt)")
        pytest.skip(f"{tool} is not installed")
    return path


async def run_client(*command: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,), timeout: float = 300) -> str:
    """The command's output (stdout and stderr); fails unless it exits with one of ``ok``."""
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = output.decode("utf-8", "replace")
    assert process.returncode in ok, f"{command[0]} failed ({process.returncode}):\n{text}"
    return text


async def fetchmail_without_keeping(tmp_path: Path, *, proto: str, port: int, password: str, timeout: float = 300) -> tuple[str, list[bytes]]:
    """Fetch user alice's INBOX from 127.0.0.1:``port`` with fetchmail (upgrading to TLS,
    certificate not checked), not keeping the messages on the server, through an MDA
    into a folder. Returns fetchmail's output and the messages, in arrival order."""
    fetchmail = require_client("fetchmail")
    home = tmp_path / "fetchmail"
    home.mkdir()
    inbox = tmp_path / "fetched"
    inbox.mkdir()
    deliver = home / "deliver.sh"
    deliver.write_text(f'#!/bin/sh\nexec cat > "$(mktemp -p {inbox} msg.XXXXXXXX)"\n', encoding="utf-8")
    deliver.chmod(0o700)
    fetchmailrc = home / "fetchmailrc"
    fetchmailrc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto {proto} port {port} auth password\n"
        f'    user "alice" there with password "{password}" is "{os.environ.get("USER", "root")}" here\n'
        f'    no keep fetchall no rewrite sslproto "tls1.2+" no sslcertck mda "{deliver}"\n',
        encoding="utf-8",
    )
    fetchmailrc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    # fetchmail exits 0 when it fetched mail, 1 when there was none.
    output = await run_client(
        fetchmail, "--nodetach", "--nosyslog", "-v", "-f", str(fetchmailrc), "-i", str(home / "fetchids"), env=env, ok=(0, 1), timeout=timeout
    )
    return output, [path.read_bytes() for path in sorted(inbox.iterdir())]
