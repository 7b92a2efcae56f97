"""Content-addressed storage for raw messages.

A blob's key is the lowercase hex SHA-256 of its bytes.  Two backends share the
:class:`BlobStore` protocol:

* :class:`LocalBlobStore` keeps blobs on a local filesystem under
  ``root/ab/abcd...`` and makes every write atomic and durable (temporary
  file, ``fsync``, ``os.replace``, directory ``fsync``).
* :class:`ObjectBlobStore` wraps any ``obstore`` store (S3, GCS, Azure, memory,
  ...) using the object path ``ab/cd/<key>``.

:func:`open_blob_store` picks the backend from a location string.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import queue
import re
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

import obstore
from obstore.store import MemoryStore
from obstore.store import from_url as _obstore_from_url

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "ObjectBlobStore",
    "blob_key",
    "open_blob_store",
    "validate_key",
]

log = logging.getLogger(__name__)

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_FANOUT_RE = re.compile(r"[0-9a-f]{2}")
_TEMP_PREFIX = ".tmp-"

#: Hash in a worker thread above this size so big messages do not stall the loop.
_HASH_IN_THREAD_THRESHOLD = 1 << 20
#: Maximum number of temporary files held open at once by ``put_many``.
_MAX_OPEN_FILES = 256
#: Maximum number of concurrent requests ``ObjectBlobStore.put_many`` issues.
_OBJECT_CONCURRENCY = 16

_FILE_MODE = 0o600
_DIR_MODE = 0o700


class BlobNotFound(KeyError):
    """Raised when a blob with the requested key is not stored."""

    def __str__(self) -> str:  # KeyError.__str__ would repr() the argument
        return f"blob not found: {self.args[0]}" if self.args else "blob not found"


@runtime_checkable
class BlobStore(Protocol):
    async def put(self, data: bytes) -> str: ...

    async def put_many(self, items: Sequence[bytes]) -> list[str]: ...

    async def ensure_many(self, blobs: dict[str, bytes]) -> None: ...

    async def get(self, key: str) -> bytes: ...

    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def keys(self) -> AsyncIterator[str]: ...

    async def close(self) -> None: ...


def blob_key(data: bytes) -> str:
    """Return the key (lowercase hex SHA-256) for ``data``."""
    return hashlib.sha256(data).hexdigest()


def validate_key(key: str) -> str:
    """Return ``key`` if it is exactly 64 lowercase hex characters, else raise ValueError.

    This is what keeps a caller-supplied key from ever naming a path outside the
    store (``../``, absolute paths, separators, NUL bytes...).
    """
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"invalid blob key: {key!r}")
    return key


async def _hash(data: bytes) -> str:
    if len(data) >= _HASH_IN_THREAD_THRESHOLD:
        return await asyncio.to_thread(blob_key, data)
    return blob_key(data)


def _answer(answers: Sequence[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in answers:
        if future.done():  # cancelled: the caller went away
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")


# --------------------------------------------------------------------------- local


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class _Lane:
    """Daemon threads that run calls taken from one queue, for blocking file calls.

    A hand-off is one put on a ``SimpleQueue``: no ``concurrent.futures`` Future (with
    its Condition), work item or executor bookkeeping per call, which cost more than
    the ``fsync`` they hand off once a mail worker makes a few thousand a second. A
    call reports its own outcome (see ``_parallel`` and ``_run_queued``). Threads
    start while no thread is idle, up to ``limit``, and last as long as the process."""

    def __init__(self, limit: int, name: str) -> None:
        self._limit = limit
        self._name = name
        self._calls: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._threads = 0
        self._idle = 0

    def run(self, call: Callable[[], object]) -> None:
        with self._guard:
            start = self._idle == 0 and self._threads < self._limit
            if start:
                self._threads += 1
            else:
                self._idle -= 1  # that thread is spoken for
        if start:
            try:
                threading.Thread(target=self._serve, name=f"{self._name}-{self._threads}", daemon=True).start()
            except BaseException:
                with self._guard:
                    self._threads -= 1
                raise
        self._calls.put(call)

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call()
            except BaseException:  # a call answers for itself; the thread goes on
                log.exception("a blob thread's call failed")
            with self._guard:
                self._idle += 1


# fsyncs run side by side (_parallel); the write jobs (_run_queued) have threads of
# their own: a job waits on fsyncs for milliseconds, and a dozen of them in flight on
# the event loop's default executor would queue the database's work behind them.
_sync_lane = _Lane(32, "postern-fsync")
_write_lane = _Lane(32, "postern-blob-write")


def _parallel(function: Callable[[Any], object], items: Sequence[Any]) -> None:
    """``function(item)`` for every item, concurrently; returns when all are done and
    raises the first error. Used for fsync, which waits on the disk, not the CPU."""
    if len(items) <= 1:
        for item in items:
            function(item)
        return
    errors: list[BaseException] = []
    left = [len(items) - 1]
    guard = threading.Lock()
    done = threading.Lock()
    done.acquire()

    def one(item: Any) -> None:
        try:
            function(item)
        except BaseException as error:
            errors.append(error)
        with guard:
            left[0] -= 1
            last = left[0] == 0
        if last:
            done.release()

    for item in items[1:]:
        _sync_lane.run(functools.partial(one, item))
    # The first in this thread, which would only wait otherwise: one hand-off fewer.
    first: BaseException | None = None
    try:
        function(items[0])
    except Exception as error:
        first = error
    done.acquire()  # every other one has finished
    for failure in (first, *errors):
        if failure is not None:
            raise failure


class LocalBlobStore:
    """Blobs as files under ``root/ab/<key>``: 256 directories.

    Stores written before 2026-11 put them one level deeper, under
    ``root/ab/cd/<key>``. Its 65,536 leaves meant that until a store held some
    hundred thousand blobs nearly every write made a directory of its own: a second
    inode, a block and a second directory sync for each message. Blobs found there
    are read, listed and deleted where they are; new ones go to the top level.

    Writes are atomic (temporary file in the same directory, then ``os.replace``)
    and, unless ``fsync=False``, durable once ``put``/``put_many`` returns: the
    file is fsynced before the rename, and the directory (plus any fan-out parent
    that had to be created) is fsynced after it.

    Deletes are not fsynced: a delete that is lost in a crash only resurrects an
    orphan, which the next garbage collection removes again.
    """

    def __init__(self, root: Path | str, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._root = str(self.root)
        # put_many calls waiting for a thread (see _queue_write).
        self._queue_lock = threading.Lock()
        self._queued: list[tuple[list[bytes], asyncio.Future[list[str]]]] = []
        self._job_queued = False

    def __repr__(self) -> str:
        return f"LocalBlobStore(root={str(self.root)!r}, fsync={self.fsync})"

    # -- paths

    def _paths(self, key: str) -> tuple[str, str]:
        """Where the blob ``key`` is written, and where an older store kept it."""
        return f"{self._root}/{key[0:2]}/{key}", f"{self._root}/{key[0:2]}/{key[2:4]}/{key}"

    def _located(self, key: str) -> Iterator[tuple[str, os.stat_result]]:
        """Each stored copy of the blob ``key`` (a regular file), with its metadata."""
        for path in self._paths(key):
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode):
                yield path, st

    def _find(self, key: str) -> str | None:
        """The path of the stored blob ``key``, or None."""
        return next((path for path, _ in self._located(key)), None)

    def _stored(self, key: str, size: int) -> bool:
        """Whether the blob ``key`` is stored whole (a copy of ``size`` bytes)."""
        return any(st.st_size == size for _, st in self._located(key))

    def path_for(self, key: str) -> Path:
        """Filesystem path of the blob ``key`` (validated): where it is stored, or
        where it would be written."""
        key = validate_key(key)
        return Path(self._find(key) or self._paths(key)[0])

    def _open(self, key: str) -> BinaryIO | None:
        for path in self._paths(key):
            try:
                return open(path, "rb")
            except (FileNotFoundError, NotADirectoryError):
                continue
        return None

    def _read(self, key: str, amount: int = -1) -> bytes | None:
        """The first ``amount`` bytes (all: -1) of the blob ``key``; None if missing."""
        fh = self._open(key)
        if fh is None:
            return None
        with fh:
            return fh.read(amount)

    def read_many(self, keys: Sequence[str], limit: int | None = None) -> list[bytes | None]:
        """Blocking: the bytes (the first ``limit`` bytes) of several blobs, None for
        a missing one. For callers that read many small blobs in one thread hop."""
        amount = -1 if limit is None else limit
        return [self._read(validate_key(key), amount) for key in keys]

    # -- writing (runs in a worker thread)

    def _dir(self, key: str) -> str:
        # Strings, not Paths, on the write path: pathlib's operators cost more than
        # the system calls they name.
        return f"{self._root}/{key[0:2]}"

    def _ensure_dir(self, directory: str, to_sync: set[str]) -> None:
        """Create ``directory`` (``root`` or a fan-out directory under it) and any
        missing parent, recording the parents whose entries changed, to fsync.
        The directory itself first: its parent (the root) almost always exists."""
        if directory == self._root:
            existed = self.root.exists()
            self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            if not existed:
                to_sync.add(str(self.root.parent))
            return
        parent = directory.rpartition("/")[0]
        try:
            try:
                os.mkdir(directory, _DIR_MODE)
            except FileNotFoundError:  # its parent is new as well
                self._ensure_dir(parent, to_sync)
                os.mkdir(directory, _DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
        else:
            to_sync.add(parent)

    def _write_batch(self, items: Sequence[bytes], keys: list[str] | None) -> list[str]:
        """Hash (unless ``keys`` given) and store ``items``; return their keys.

        Phases: write every new blob to a temporary file, fsync them all, rename
        them all into place, then fsync each touched directory once.
        """
        if keys is None:
            keys = [blob_key(data) for data in items]
        seen: set[str] = set()
        todo: list[tuple[str, bytes]] = []
        for key, data in zip(keys, items):
            if key not in seen:
                seen.add(key)
                todo.append((key, data))
        for start in range(0, len(todo), _MAX_OPEN_FILES):
            self._write_group(todo[start : start + _MAX_OPEN_FILES])
        return keys

    def _write_group(self, todo: Sequence[tuple[str, bytes]]) -> None:
        dirs_to_sync: set[str] = set()
        pending: list[tuple[int, str, str]] = []  # (fd, temp path, final path)
        open_fds: set[int] = set()
        renamed = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            for key, data in todo:
                directory = self._dir(key)
                final = f"{directory}/{key}"
                if self._stored(key, len(data)):
                    continue  # content addressed: no rewrite
                tmp = f"{directory}/{_TEMP_PREFIX}{secrets.token_hex(8)}"
                try:
                    fd = os.open(tmp, flags, _FILE_MODE)
                except FileNotFoundError:  # a new fan-out directory
                    self._ensure_dir(directory, dirs_to_sync)
                    fd = os.open(tmp, flags, _FILE_MODE)
                open_fds.add(fd)
                pending.append((fd, tmp, final))
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if self.fsync:
                # All at once: the filesystem commits concurrent syncs together (one
                # journal commit for the batch on ext4), where one after another each
                # waits for a commit of its own.
                _parallel(os.fsync, [fd for fd, _tmp, _final in pending])
            for fd, _tmp, _final in pending:
                open_fds.discard(fd)
                os.close(fd)
            for index, (_fd, tmp, final) in enumerate(pending):
                os.replace(tmp, final)
                renamed = index + 1
                dirs_to_sync.add(final.rpartition("/")[0])
        except BaseException:
            for fd in open_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            for _fd, tmp, _final in pending[renamed:]:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            raise
        if self.fsync:
            # Every directory at once, a new fan-out directory's parent with it: the
            # filesystem commits them together. Their order would only matter to a
            # crash before they all return, and until then no row refers to the blob.
            _parallel(_fsync_dir, sorted(dirs_to_sync, reverse=True))

    # -- public API

    async def put(self, data: bytes) -> str:
        return (await self.put_many([data]))[0]

    async def put_many(self, items: Sequence[bytes]) -> list[str]:
        items = [bytes(item) for item in items]
        if not items:
            return []
        return await self._queue_write(items)

    async def ensure_many(self, blobs: dict[str, bytes]) -> None:
        """Write again whichever of these blobs (by key) is missing; a look at the
        others (cached metadata, in the event loop's thread) and no thread at all
        when none is."""
        missing = [data for key, data in blobs.items() if not self._stored(key, len(data))]
        if missing:
            await self.put_many(missing)

    async def _queue_write(self, items: list[bytes]) -> list[str]:
        """``_write_batch(items)`` in a worker thread, in one job with the other
        put_many calls made before a thread takes it.

        A delivery stages its blob alone; when deliveries arrive faster than threads
        wake up, their writes share one hand-off to a thread and one wake-up of the
        event loop (per loop) to answer them, and their fsyncs run together."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        with self._queue_lock:
            self._queued.append((items, future))
            submit = not self._job_queued
            self._job_queued = True
        if submit:
            try:
                _write_lane.run(self._run_queued)
            except BaseException as error:  # no thread to run it
                with self._queue_lock:
                    stranded, self._queued = self._queued, []
                    self._job_queued = False
                for _, waiting in stranded:
                    if not waiting.done():
                        waiting.set_exception(error if isinstance(error, Exception) else RuntimeError("no thread to write blobs"))
        return await future

    def _run_queued(self) -> None:
        """In a worker thread: every put_many queued so far, then their answers."""
        with self._queue_lock:
            queued, self._queued = self._queued, []
            self._job_queued = False
        if not queued:
            return
        outcomes: list[list[str] | Exception]
        try:
            keys = self._write_batch([data for items, _ in queued for data in items], None)
        except Exception as error:
            if len(queued) == 1:
                outcomes = [error]
            else:  # each call on its own, so that each hears only its own failure
                outcomes = [self._write_or_error(items) for items, _ in queued]
        except BaseException as error:  # nobody would hear it otherwise: answer all
            outcomes = [RuntimeError(f"blob write interrupted: {error!r}")] * len(queued)
        else:
            outcomes = []
            start = 0
            for items, _ in queued:
                outcomes.append(keys[start : start + len(items)])
                start += len(items)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[str]], list[str] | Exception]]] = {}
        for (_, future), outcome in zip(queued, outcomes):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                loop.call_soon_threadsafe(_answer, answers)

    def _write_or_error(self, items: list[bytes]) -> list[str] | Exception:
        try:
            return self._write_batch(items, None)
        except Exception as error:
            return error

    async def get(self, key: str) -> bytes:
        key = validate_key(key)
        data = await asyncio.to_thread(self._read, key)
        if data is None:
            raise BlobNotFound(key)
        return data

    async def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        _check_chunk_size(chunk_size)
        key = validate_key(key)
        fh = await asyncio.to_thread(self._open, key)
        if fh is None:
            raise BlobNotFound(key)
        try:
            while True:
                chunk = await asyncio.to_thread(fh.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            fh.close()

    async def exists(self, key: str) -> bool:
        key = validate_key(key)
        return await asyncio.to_thread(self._find, key) is not None

    async def delete(self, key: str) -> None:
        key = validate_key(key)

        def _unlink() -> None:
            for path in self._paths(key):
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    pass

        await asyncio.to_thread(_unlink)

    @staticmethod
    def _subdirs(directory: Path) -> list[str]:
        try:
            with os.scandir(directory) as it:
                return sorted(e.name for e in it if _FANOUT_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    @staticmethod
    def _keys_in(directory: Path, prefix: str) -> list[str]:
        try:
            with os.scandir(directory) as it:
                return [e.name for e in it if e.name.startswith(prefix) and _KEY_RE.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _keys_under(self, first: str) -> list[str]:
        """The keys in the fan-out directory ``first``, and in its older leaves."""
        level1 = self.root / first
        found = set(self._keys_in(level1, first))
        for second in self._subdirs(level1):
            found.update(self._keys_in(level1 / second, first + second))
        return sorted(found)

    async def keys(self) -> AsyncIterator[str]:
        """Every stored key, in sorted order; temporary and stray files are skipped."""
        for first in await asyncio.to_thread(self._subdirs, self.root):
            for key in await asyncio.to_thread(self._keys_under, first):
                yield key

    async def cleanup_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Remove leftover ``.tmp-*`` files (from a crash mid-write) older than the
        given age; return how many were removed.  Temporary files younger than that
        may belong to a write in progress and are left alone."""
        cutoff = time.time() - older_than_seconds

        def _clean(directory: Path) -> int:
            removed = 0
            try:
                with os.scandir(directory) as it:
                    entries = [e for e in it if e.name.startswith(_TEMP_PREFIX)]
            except (FileNotFoundError, NotADirectoryError):
                return 0
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    continue
            return removed

        total = await asyncio.to_thread(_clean, self.root)
        for first in await asyncio.to_thread(self._subdirs, self.root):
            level1 = self.root / first
            total += await asyncio.to_thread(_clean, level1)
            for second in await asyncio.to_thread(self._subdirs, level1):  # older leaves
                total += await asyncio.to_thread(_clean, level1 / second)
        return total

    async def close(self) -> None:
        return None


# -------------------------------------------------------------------------- object


def _object_path(key: str) -> str:
    return f"{key[0:2]}/{key[2:4]}/{key}"


def _key_from_object_path(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) != 3:
        return None
    first, second, key = parts
    if _KEY_RE.fullmatch(key) is None or first != key[0:2] or second != key[2:4]:
        return None
    return key


class ObjectBlobStore:
    """Blobs in any ``obstore`` object store, at object path ``ab/cd/<key>``.

    Object stores make each put atomic and durable when it is acknowledged; a
    put is skipped when ``head`` finds an object of the right size already.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"ObjectBlobStore({self.store!r})"

    async def _put_keyed(self, key: str, data: bytes) -> None:
        path = _object_path(key)
        try:
            meta = await obstore.head_async(self.store, path)
        except FileNotFoundError:
            pass
        else:
            if meta["size"] == len(data):
                return
        await obstore.put_async(self.store, path, data)

    async def put(self, data: bytes) -> str:
        data = bytes(data)
        key = await _hash(data)
        await self._put_keyed(key, data)
        return key

    async def put_many(self, items: Sequence[bytes]) -> list[str]:
        items = [bytes(item) for item in items]
        if not items:
            return []
        if sum(len(i) for i in items) >= _HASH_IN_THREAD_THRESHOLD:
            keys = await asyncio.to_thread(lambda: [blob_key(i) for i in items])
        else:
            keys = [blob_key(i) for i in items]
        unique = dict(zip(keys, items))
        semaphore = asyncio.Semaphore(_OBJECT_CONCURRENCY)

        async def one(key: str, data: bytes) -> None:
            async with semaphore:
                await self._put_keyed(key, data)

        await asyncio.gather(*(one(k, d) for k, d in unique.items()))
        return keys

    async def ensure_many(self, blobs: dict[str, bytes]) -> None:
        """Write again whichever of these blobs (by key) is missing."""
        if blobs:
            await self.put_many(list(blobs.values()))

    async def get(self, key: str) -> bytes:
        path = _object_path(validate_key(key))
        try:
            result = await obstore.get_async(self.store, path)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        _check_chunk_size(chunk_size)
        path = _object_path(validate_key(key))
        try:
            result = await obstore.get_async(self.store, path)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        # Re-chunk so callers see at most chunk_size bytes per chunk, like the
        # local store, whatever the backend delivers.
        buffer = bytearray()
        async for piece in result.stream(min_chunk_size=chunk_size):
            buffer += piece
            while len(buffer) >= chunk_size:
                yield bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
        if buffer:
            yield bytes(buffer)

    async def exists(self, key: str) -> bool:
        path = _object_path(validate_key(key))
        try:
            await obstore.head_async(self.store, path)
        except FileNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        path = _object_path(validate_key(key))
        try:
            await obstore.delete_async(self.store, path)
        except FileNotFoundError:
            pass

    async def keys(self) -> AsyncIterator[str]:
        """Every stored key; objects not shaped like ``ab/cd/<key>`` are skipped."""
        async for batch in obstore.list(self.store, chunk_size=1000):
            for meta in batch:
                key = _key_from_object_path(meta["path"])
                if key is not None:
                    yield key

    async def cleanup_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Object stores never leave partial objects visible; nothing to clean."""
        return 0

    async def close(self) -> None:
        return None


# ----------------------------------------------------------------------- factory


def open_blob_store(location: str, *, fsync: bool = True) -> BlobStore:
    """Open the blob store named by ``location``.

    * ``memory://`` -> :class:`ObjectBlobStore` over a fresh ``MemoryStore``
    * ``file:///abs/path`` or a plain filesystem path -> :class:`LocalBlobStore`
    * ``s3://bucket/prefix`` and any other URL obstore understands ->
      :class:`ObjectBlobStore` (credentials from the environment, as obstore does)
    """
    location = location.strip()
    if not location:
        raise ValueError("empty blob store location")
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme == "memory":
        return ObjectBlobStore(MemoryStore())
    if scheme == "file":
        parsed = urlparse(location)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must not name a remote host: {location!r}")
        path = unquote(parsed.path)
        if not path:
            raise ValueError(f"file URL has no path: {location!r}")
        return LocalBlobStore(Path(path), fsync=fsync)
    if scheme:
        return ObjectBlobStore(_obstore_from_url(location))
    return LocalBlobStore(Path(location).expanduser(), fsync=fsync)
