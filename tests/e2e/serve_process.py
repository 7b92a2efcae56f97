"""``postern serve`` as a real process, for the end-to-end and crash tests.

:class:`ServeProcess` starts ``python -m postern serve`` with an environment, reads
its printout (stdout) and its log (stderr) in background threads, and stops it with
a signal or kills it. Every wait has a timeout; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

from sqlalchemy.ext.asyncio import create_async_engine

TEST_DATABASE_URL = os.environ.get("POSTERN_TEST_DATABASE_URL")
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def drop_schema(schema: str, url: str | None = None) -> None:
    database_url = url or TEST_DATABASE_URL
    assert database_url

    async def main() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await engine.dispose()

    asyncio.run(main())


class ServeProcess:
    """One life of ``postern serve``: its printout (stdout) and its log (stderr)."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._ended = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postern", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._threads = [threading.Thread(target=self._pump, daemon=True), threading.Thread(target=self._drain, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def errors(self) -> str:
        return "".join(self.stderr_lines)

    def read_until(self, wanted: str, timeout: float) -> bool:
        """Collect stdout lines until one equals ``wanted``; False at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {wanted!r} line within {timeout} s\nstdout:\n{self.output}\nstderr:\n{self.errors}")
            try:
                line = self._queue.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self._ended:
                    return False
                continue
            if line is None:
                self._ended = True
                return False
            self.lines.append(line)
            if line.strip() == wanted:
                return True

    def wait_ready(self) -> bool:
        """True when it printed "ready"; False when it could not listen on its port."""
        if self.read_until("ready", READY_TIMEOUT):
            return True
        self.wait_exit()
        if "cannot start" in self.errors and "in use" in self.errors:
            return False
        raise AssertionError(f"serve exited ({self.proc.returncode}) before ready\nstdout:\n{self.output}\nstderr:\n{self.errors}")

    def wait_exit(self) -> int:
        """Wait for the process to end and for all it printed."""
        code = self.proc.wait(timeout=STOP_TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=STOP_TIMEOUT)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._ended = True
            else:
                self.lines.append(line)
        return code

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.wait_exit()

    def kill9(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait_exit()
