"""Whether the previous run on a data directory stopped cleanly.

The mail workers' SQLite connection commits with ``synchronous=NORMAL`` and syncs the
WAL itself right after the COMMIT (``storage.database._InlineConnection``), and a
250 waits for that sync. In the millisecond between the two, another process can read
the new rows: an IMAP session can show a client a new message's UID, or a flag
change's MODSEQ. A crash of the machine in that millisecond loses the transaction, and
the next one would take the same UID again: the client, which caches messages by UID,
would show the lost message's content in its place.

So each ``postern serve`` holds a mark in the data directory while it runs: a file of
its own under ``running/``, locked (``flock``) for the life of the process and removed
when it stops. The kernel drops the lock however the process ends, and a crash of the
machine drops all of them. A mark whose lock can be taken was left by a run that did
not stop cleanly; the start that finds one moves every folder's counters on before it
opens any door (``MailStore.advance_counters_after_unclean_stop``). A gap in UIDs is
allowed by IMAP; a UID given twice is not.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from postern.storage.ids import new_id

try:
    import fcntl
except ImportError:  # not POSIX: no marks, nothing learnt about the previous run
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("postern")

DIRECTORY = "running"


@dataclass
class RunMark:
    # True when a run before this one on the data directory did not stop cleanly.
    previous_run_unclean: bool
    _path: Path | None = None
    _fd: int | None = None

    def release(self) -> None:
        """At a clean stop: remove the mark (then drop its lock)."""
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._path = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _locked_file(path: Path, create: bool = False) -> int:
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def acquire(data_dir: Path) -> RunMark:
    """Take this process's mark in ``data_dir``, after removing the marks of runs that
    ended without removing their own. A data directory where no mark can be kept is
    logged, and the start goes on."""
    if fcntl is None:
        return RunMark(previous_run_unclean=False)
    directory = data_dir / DIRECTORY
    unclean = False
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        unclean = _remove_stale_marks(directory)
        path, fd = _make_mark(directory)
    except OSError as error:
        log.warning("cannot keep a run mark in %s (%s): an unclean stop of this run will not be noticed", directory, error)
        return RunMark(previous_run_unclean=unclean)
    return RunMark(previous_run_unclean=unclean, _path=path, _fd=fd)


def _remove_stale_marks(directory: Path) -> bool:
    """Remove the marks no live process holds; True if one was a run's mark."""
    unclean = False
    for entry in directory.iterdir():
        try:
            fd = _locked_file(entry)
        except (BlockingIOError, FileNotFoundError):
            continue  # the mark of a live process, or one another start took first
        except OSError as error:
            log.warning("ignoring %s in %s: %s", entry.name, directory, error)
            continue
        try:
            if not entry.name.startswith("."):  # not a mark left half made (below)
                log.warning("the run of postern that held %s did not stop cleanly", entry.name)
                unclean = True
            entry.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return unclean


def _make_mark(directory: Path) -> tuple[Path, int]:
    # Locked before it is visible under its name: a process starting at the same time
    # can never take a live mark for a stale one.
    name = new_id()
    making = directory / f".{name}"
    fd = _locked_file(making, create=True)
    try:
        os.rename(making, directory / name)
    except BaseException:
        os.close(fd)
        making.unlink(missing_ok=True)
        raise
    return directory / name, fd
