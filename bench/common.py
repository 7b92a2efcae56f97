"""What the benchmark scripts share: the text their generated messages are made of,
free ports, and facts about the machine and its load."""

from __future__ import annotations

import contextlib
import os
import platform
import queue
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

_FIRST = (
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert "
    "Sybil Trent Victor Walter Yasmin Zoe Amir Bea Chen Dagny Emeka Farah Goran Hana Ines"
)
_LAST = (
    "Smith Jones Garcia Müller Rossi Dubois Novak Silva Tanaka Kowalski Andersen Okafor "
    "Haddad Ivanova Nguyen Kim Larsen Moreau Costa Schmidt O'Brien Fischer Petrov Weber"
)
FIRST_NAMES = _FIRST.split()
LAST_NAMES = _LAST.split()
TOPICS = (
    "Quarterly report", "Meeting notes", "Invoice", "Release plan", "Travel booking",
    "Build failure", "Design review", "Support ticket", "Newsletter", "Contract draft",
    "Team lunch", "Security advisory", "Pull request", "Budget", "Onboarding",
)
# Each benchmark adds a few words of its own at the end.
COMMON_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "if so what out up more about into them can only other new some could time these two "
    "may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see men work long"
).split()


def sentence(rng: random.Random, words: list[str]) -> str:
    chosen = [rng.choice(words) for _ in range(rng.randint(6, 16))]
    return chosen[0].capitalize() + " " + " ".join(chosen[1:]) + "."


def paragraphs(rng: random.Random, words: list[str], size: int) -> list[str]:
    """Lines of text from ``words``, wrapped at 72 columns with a blank line after each
    paragraph, about ``size`` bytes."""
    lines: list[str] = []
    length = 0
    while length < size:
        line = ""
        for word in " ".join(sentence(rng, words) for _ in range(rng.randint(2, 5))).split():
            if line and len(line) + len(word) + 1 > 72:
                lines.append(line)
                length += len(line) + 2
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines += [line, ""]
        length += len(line) + 4
    return lines


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listen_settings() -> list[str]:
    """The settings naming a listening address (http_listen, smtp_listen, ...)."""
    from postern.config import Settings

    return [name for name in Settings.model_fields if name.endswith("_listen")]


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of the machine so far, from /proc/stat: the share
    stolen over a run is the time the hypervisor gave these vCPUs to other guests,
    which no target can use and which varies from minute to minute."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[7]
    return 0, 0


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen between two ``cpu_ticks`` readings (0..1)."""
    total = after[0] - before[0]
    return (after[1] - before[1]) / total if total > 0 else 0.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine_basics() -> dict[str, str]:
    """CPUs, CPU model, memory, kernel, Python and SQLite of this machine."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "cpu model": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


class ServeProcess:
    """``postern serve`` as a subprocess: every door on a free loopback port of its
    own (so nothing else on the machine gets in the way) unless ``settings`` names
    one, and its output drained by a thread."""

    def __init__(self, settings: dict[str, str], command_prefix: list[str] | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
        for name in listen_settings():
            env[f"POSTERN_{name.upper()}"] = f"127.0.0.1:{free_port()}"
        env.update(settings, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [*(command_prefix or []), sys.executable, "-m", "postern", "serve"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip())
            self.lines.put(line.rstrip())
        self.lines.put(None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line == "ready":
                return
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("postern serve did not become ready:\n" + "\n".join(self.output))

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
