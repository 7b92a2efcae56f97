"""The identity under which a queue worker leases the outbound rows it is sending.

A worker marks the rows it claims with its owner id. The worker of a data directory
keeps its id in a file there and holds that file under an exclusive lock (``flock``)
for as long as it runs; the kernel drops the lock when the process ends, however it
ends (SIGKILL included). So a worker that gets the lock knows that no live process holds
leases under that id: rows still "sending" under it were left by its own previous life,
killed mid-delivery, and it takes them back at once instead of waiting for their lease
(ten minutes) to run out.

A second worker on the same data directory (the lock is taken) gets a random id; what
it leaves behind comes back when the leases run out, as the rows of a worker on another
machine do.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from postern.storage.ids import is_id, new_id

try:
    import fcntl
except ImportError:  # not POSIX: no lock, no taking back before the lease ends
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("postern.outbound")

FILE_NAME = "queue-owner"


@dataclass
class QueueOwner:
    id: str
    # True when no other live process can hold leases under ``id``.
    exclusive: bool
    _fd: int | None = None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # and with it the lock
            self._fd = None


def acquire(data_dir: Path, file_name: str = FILE_NAME) -> QueueOwner:
    """The queue worker identity of ``data_dir``, locked for the life of this process
    (until ``release``), or a random one when another process holds it. Other leases
    (the remote fetch scheduler's) keep their owner in a file of their own."""
    if fcntl is None:
        return QueueOwner(new_id(), exclusive=False)
    try:
        fd = os.open(data_dir / file_name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as error:
        log.warning("cannot open %s (%s); leases of a crashed run come back when they end", file_name, error)
        return QueueOwner(new_id(), exclusive=False)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip()
        if not is_id(owner):
            owner = new_id()
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode("ascii"), 0)
            os.fsync(fd)
    except OSError:
        # Another live process runs the queue of this data directory.
        os.close(fd)
        return QueueOwner(new_id(), exclusive=False)
    return QueueOwner(owner, exclusive=True, _fd=fd)
