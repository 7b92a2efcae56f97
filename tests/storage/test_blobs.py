from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path

import obstore
import pytest
from obstore.store import LocalStore, MemoryStore

from postern.storage import blobs as blobs_module
from postern.storage.blobs import (
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    ObjectBlobStore,
    open_blob_store,
    validate_key,
)

BAD_KEYS = [
    "../etc/passwd",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "A" * 64,
    hashlib.sha256(b"x").hexdigest().upper(),
    "abc",
    "0" * 63,
    "0" * 65,
    "g" * 64,
    "ab/cd/" + "0" * 58,
    "0" * 63 + "\n",
    "0" * 32 + "\x00" + "0" * 31,
    "",
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def collect_keys(store) -> list[str]:
    return [k async for k in store.keys()]


async def read_stream(store, key: str, chunk_size: int = 65536) -> list[bytes]:
    return [chunk async for chunk in store.stream(key, chunk_size)]


@pytest.fixture(params=["local", "local-nofsync", "memory", "obstore-local"])
async def store(request, tmp_path):
    kind = request.param
    if kind == "local":
        s = LocalBlobStore(tmp_path / "blobs")
    elif kind == "local-nofsync":
        s = LocalBlobStore(tmp_path / "blobs", fsync=False)
    elif kind == "memory":
        s = ObjectBlobStore(MemoryStore())
    else:
        root = tmp_path / "objects"
        root.mkdir()
        s = ObjectBlobStore(LocalStore(root))
    yield s
    await s.close()


@pytest.fixture
async def local(tmp_path):
    s = LocalBlobStore(tmp_path / "blobs")
    yield s
    await s.close()


# ----------------------------------------------------------------- shared behaviour


async def test_satisfies_protocol(store):
    assert isinstance(store, BlobStore)


async def test_round_trip(store):
    data = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    key = await store.put(data)
    assert await store.get(key) == data
    assert await store.exists(key)


async def test_key_is_lowercase_sha256(store):
    data = os.urandom(1000)
    key = await store.put(data)
    assert key == sha(data)
    assert len(key) == 64 and key == key.lower()
    validate_key(key)


async def test_empty_blob(store):
    key = await store.put(b"")
    assert key == sha(b"")
    assert await store.get(key) == b""
    assert await read_stream(store, key) == []


async def test_put_is_idempotent(store):
    data = b"same bytes"
    k1 = await store.put(data)
    k2 = await store.put(data)
    assert k1 == k2
    assert await collect_keys(store) == [k1]
    assert await store.get(k1) == data


async def test_put_accepts_bytes_like(store):
    data = b"bytes-like input"
    key = await store.put(bytearray(data))
    assert key == sha(data)
    assert await store.get(key) == data


async def test_large_blob(store):
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = await store.put(data)
    assert key == sha(data)
    assert await store.get(key) == data
    assert b"".join(await read_stream(store, key)) == data


async def test_put_many_round_trip_and_dedup(store):
    items = [b"one", b"two", b"one", b"three", b"two"]
    keys = await store.put_many(items)
    assert keys == [sha(i) for i in items]
    assert keys[0] == keys[2] and keys[1] == keys[4]
    assert sorted(await collect_keys(store)) == sorted({sha(i) for i in items})
    for key, item in zip(keys, items):
        assert await store.get(key) == item


async def test_put_many_skips_already_stored(store):
    first = await store.put(b"already here")
    keys = await store.put_many([b"already here", b"new"])
    assert keys == [first, sha(b"new")]
    assert sorted(await collect_keys(store)) == sorted([first, sha(b"new")])


async def test_put_many_empty(store):
    assert await store.put_many([]) == []
    assert await collect_keys(store) == []


async def test_stream_yields_exact_bytes_in_chunks(store):
    data = bytes(range(256)) * 40 + b"tail"  # 10244 bytes
    key = await store.put(data)
    chunks = await read_stream(store, key, chunk_size=1000)
    assert b"".join(chunks) == data
    assert len(chunks) == 11
    assert all(len(c) == 1000 for c in chunks[:-1])
    assert len(chunks[-1]) == 244
    assert all(isinstance(c, bytes) for c in chunks)


async def test_stream_default_chunk_size(store):
    data = os.urandom(200_000)
    key = await store.put(data)
    chunks = await read_stream(store, key)
    assert b"".join(chunks) == data
    assert all(len(c) <= 65536 for c in chunks)
    assert len(chunks) == 4


async def test_stream_rejects_bad_chunk_size(store):
    key = await store.put(b"x")
    with pytest.raises(ValueError):
        await read_stream(store, key, chunk_size=0)


async def test_get_missing_raises_blob_not_found(store):
    missing = sha(b"never stored")
    with pytest.raises(BlobNotFound) as info:
        await store.get(missing)
    assert isinstance(info.value, KeyError)
    assert missing in str(info.value)


async def test_stream_missing_raises_on_first_iteration(store):
    missing = sha(b"never stored")
    iterator = store.stream(missing)  # creating the generator does not raise
    with pytest.raises(BlobNotFound):
        await iterator.__anext__()


async def test_exists(store):
    key = sha(b"nope")
    assert not await store.exists(key)
    await store.put(b"nope")
    assert await store.exists(key)


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_bad_keys_raise_value_error(store, bad):
    with pytest.raises(ValueError):
        await store.get(bad)
    with pytest.raises(ValueError):
        await store.exists(bad)
    with pytest.raises(ValueError):
        await store.delete(bad)
    with pytest.raises(ValueError):
        await read_stream(store, bad)


async def test_bad_key_is_not_blob_not_found(store):
    # BlobNotFound is a KeyError; a malformed key must be a ValueError, not "missing".
    with pytest.raises(ValueError) as info:
        await store.get("../etc/passwd")
    assert not isinstance(info.value, KeyError)


async def test_delete_is_idempotent(store):
    key = await store.put(b"to delete")
    await store.delete(key)
    assert not await store.exists(key)
    with pytest.raises(BlobNotFound):
        await store.get(key)
    await store.delete(key)  # missing is not an error
    await store.delete(sha(b"never stored"))


async def test_delete_then_put_again(store):
    key = await store.put(b"resurrect")
    await store.delete(key)
    assert await store.put(b"resurrect") == key
    assert await store.get(key) == b"resurrect"


async def test_keys_lists_exactly_stored(store):
    assert await collect_keys(store) == []
    items = [f"message {i}".encode() for i in range(25)]
    keys = set(await store.put_many(items))
    await store.put(b"single")
    keys.add(sha(b"single"))
    await store.delete(sha(b"message 3"))
    keys.discard(sha(b"message 3"))
    listed = await collect_keys(store)
    assert len(listed) == len(set(listed))
    assert set(listed) == keys


# --------------------------------------------------------------------- local store


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_local_layout(local, tmp_path):
    data = b"layout"
    key = await local.put(data)
    path = tmp_path / "blobs" / key[:2] / key
    assert path.is_file()
    assert path.read_bytes() == data
    assert local.path_for(key) == path
    assert _files_under(tmp_path / "blobs") == [path]


async def test_local_same_bytes_twice_one_file_not_rewritten(local, tmp_path):
    key = await local.put(b"dedup me")
    path = local.path_for(key)
    before = os.stat(path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert await local.put(b"dedup me") == key
    after = os.stat(path)
    assert after.st_ino == before.st_ino
    assert after.st_mtime_ns == 1_000_000_000  # not rewritten
    assert _files_under(tmp_path / "blobs") == [path]


async def test_local_rewrites_truncated_file(local):
    data = b"complete content"
    key = await local.put(data)
    path = local.path_for(key)
    path.write_bytes(data[:5])  # damaged (wrong size) copy gets replaced
    assert await local.put(data) == key
    assert path.read_bytes() == data


async def test_local_no_temp_files_left(local, tmp_path):
    await local.put_many([os.urandom(100) for _ in range(20)])
    await local.put(b"x")
    leftovers = [p for p in (tmp_path / "blobs").rglob(".tmp-*")]
    assert leftovers == []


async def test_local_put_many_fsync_order(local, monkeypatch):
    """put_many writes everything, fsyncs every file, renames, then fsyncs each
    touched directory once, all in a single worker-thread call."""
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fake_fsync(fd):
        events.append(("fsync", fd))
        return real_fsync(fd)

    def fake_replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    def fake_fsync_dir(path):
        events.append(("dirsync", Path(path)))
        fd = os.open(path, os.O_RDONLY)
        try:
            real_fsync(fd)
        finally:
            os.close(fd)

    thread_calls = []
    real_write_batch = local._write_batch

    def counting_write_batch(items, keys):
        thread_calls.append(threading.get_ident())
        return real_write_batch(items, keys)

    monkeypatch.setattr(blobs_module.os, "fsync", fake_fsync)
    monkeypatch.setattr(blobs_module.os, "replace", fake_replace)
    monkeypatch.setattr(blobs_module, "_fsync_dir", fake_fsync_dir)
    monkeypatch.setattr(local, "_write_batch", counting_write_batch)

    items = [f"group commit {i}".encode() for i in range(10)] + [b"group commit 0"]
    keys = await local.put_many(items)
    assert len(thread_calls) == 1 and thread_calls[0] != threading.get_ident()  # one job, in a worker thread

    kinds = [e[0] for e in events]
    n_files = 10
    assert kinds[:n_files] == ["fsync"] * n_files
    assert kinds[n_files : 2 * n_files] == ["replace"] * n_files
    assert set(kinds[2 * n_files :]) == {"dirsync"}
    synced_dirs = [e[1] for e in events if e[0] == "dirsync"]
    assert len(synced_dirs) == len(set(synced_dirs))  # one fsync per directory
    leaf_dirs = {local.path_for(k).parent for k in keys}
    assert leaf_dirs <= set(synced_dirs)
    # freshly created fan-out dirs: their parents were synced too
    assert local.root in synced_dirs
    assert {d.parent for d in leaf_dirs} <= set(synced_dirs)
    for key, item in zip(keys, items):
        assert await local.get(key) == item

    # Second time round everything is deduplicated: no writes, no syncs.
    events.clear()
    assert await local.put_many(items) == keys
    assert events == []


async def test_local_fsync_false_skips_syncs(tmp_path, monkeypatch):
    store = LocalBlobStore(tmp_path / "blobs", fsync=False)
    calls = []
    monkeypatch.setattr(blobs_module.os, "fsync", lambda fd: calls.append(fd))
    monkeypatch.setattr(blobs_module, "_fsync_dir", lambda p: calls.append(p))
    key = await store.put(b"fast")
    await store.put_many([b"a", b"b"])
    assert calls == []
    assert await store.get(key) == b"fast"


async def test_local_failed_write_leaves_no_temp(local, monkeypatch, tmp_path):
    await local.put(b"existing")  # creates root

    def broken_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(blobs_module.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        await local.put_many([b"first", b"second"])
    monkeypatch.undo()
    assert list((tmp_path / "blobs").rglob(".tmp-*")) == []
    assert not await local.exists(sha(b"first"))
    assert await collect_keys(local) == [sha(b"existing")]


async def test_local_crash_leftover_temp_ignored_and_cleaned(local):
    key = await local.put(b"real message")
    leaf = local.path_for(key).parent
    stale = leaf / ".tmp-deadbeefdeadbeef"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = leaf / ".tmp-0123456789abcdef"
    fresh.write_bytes(b"in progress")
    root_stale = local.root / ".tmp-0000000000000000"
    root_stale.write_bytes(b"x")
    os.utime(root_stale, (old, old))

    assert await collect_keys(local) == [key]

    removed = await local.cleanup_temp(older_than_seconds=3600)
    assert removed == 2
    assert not stale.exists()
    assert not root_stale.exists()
    assert fresh.exists()  # may belong to a write in progress

    assert await local.cleanup_temp(older_than_seconds=0) == 1
    assert not fresh.exists()
    assert await local.get(key) == b"real message"
    assert await collect_keys(local) == [key]


async def test_local_keys_skips_stray_files(local):
    key = await local.put(b"kept")
    root = local.root
    (root / "README").write_text("not a blob")
    (root / "zz").mkdir()
    (root / "zz" / "zz").mkdir()
    (root / "zz" / "zz" / ("z" * 64)).write_text("bad name")
    misplaced = sha(b"misplaced")
    (local.path_for(key).parent / misplaced).write_bytes(b"misplaced")  # wrong fan-out
    (local.path_for(key).parent / ("0" * 63)).write_bytes(b"short")
    assert await collect_keys(local) == [key]


async def test_local_keys_on_missing_root(tmp_path):
    store = LocalBlobStore(tmp_path / "does-not-exist")
    assert await collect_keys(store) == []
    assert not await store.exists(sha(b"x"))
    with pytest.raises(BlobNotFound):
        await store.get(sha(b"x"))
    await store.delete(sha(b"x"))
    assert await store.cleanup_temp(0) == 0


async def test_local_path_traversal_cannot_escape(local, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"top secret")
    for bad in ["../secret", "../../secret", str(secret)]:
        with pytest.raises(ValueError):
            await local.get(bad)
        with pytest.raises(ValueError):
            await local.delete(bad)
        with pytest.raises(ValueError):
            local.path_for(bad)
    assert secret.read_bytes() == b"top secret"


async def test_local_creates_nested_root(tmp_path):
    store = LocalBlobStore(tmp_path / "a" / "b" / "c")
    key = await store.put(b"deep")
    assert (tmp_path / "a" / "b" / "c" / key[:2] / key).read_bytes() == b"deep"


async def test_local_many_blobs_more_than_open_file_group(tmp_path, monkeypatch):
    monkeypatch.setattr(blobs_module, "_MAX_OPEN_FILES", 7)
    store = LocalBlobStore(tmp_path / "blobs", fsync=False)
    items = [f"blob {i}".encode() for i in range(30)]
    keys = await store.put_many(items)
    assert sorted(await collect_keys(store)) == sorted(keys)
    for key, item in zip(keys, items):
        assert await store.get(key) == item


# -------------------------------------------------------------------- object store


async def test_object_layout_and_skip_when_present(monkeypatch):
    mem = MemoryStore()
    store = ObjectBlobStore(mem)
    key = await store.put(b"object")
    meta = await obstore.head_async(mem, f"{key[:2]}/{key[2:4]}/{key}")
    assert meta["size"] == 6

    puts = []
    real_put = obstore.put_async

    async def counting_put(*args, **kwargs):
        puts.append(args[1])
        return await real_put(*args, **kwargs)

    monkeypatch.setattr(blobs_module.obstore, "put_async", counting_put)
    assert await store.put(b"object") == key
    assert await store.put_many([b"object", b"object", b"other"]) == [key, key, sha(b"other")]
    assert puts == [f"{sha(b'other')[:2]}/{sha(b'other')[2:4]}/{sha(b'other')}"]


async def test_object_keys_skip_foreign_objects():
    mem = MemoryStore()
    store = ObjectBlobStore(mem)
    key = await store.put(b"mine")
    await obstore.put_async(mem, "README", b"x")
    await obstore.put_async(mem, "ab/cd/" + "0" * 64, b"wrong fan-out")
    await obstore.put_async(mem, "ab/cd/not-a-key", b"x")
    assert await collect_keys(store) == [key]


# ------------------------------------------------------------------------- factory


async def test_open_blob_store_plain_path(tmp_path):
    store = open_blob_store(str(tmp_path / "plain"))
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "plain"
    assert store.fsync is True
    key = await store.put(b"plain")
    assert (tmp_path / "plain" / key[:2] / key).read_bytes() == b"plain"


async def test_open_blob_store_file_url(tmp_path):
    store = open_blob_store((tmp_path / "via url").as_uri(), fsync=False)
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "via url"
    assert store.fsync is False
    key = await store.put(b"file url")
    assert await store.get(key) == b"file url"
    assert (tmp_path / "via url" / key[:2] / key).is_file()


def test_open_blob_store_file_url_remote_host_rejected():
    with pytest.raises(ValueError):
        open_blob_store("file://otherhost/srv/blobs")


async def test_open_blob_store_memory():
    store = open_blob_store("memory://")
    assert isinstance(store, ObjectBlobStore)
    key = await store.put(b"in memory")
    assert await store.get(key) == b"in memory"
    # each call gives a separate store
    other = open_blob_store("memory://")
    assert not await other.exists(key)


def test_open_blob_store_s3(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = open_blob_store("s3://bucket/some/prefix")
    assert isinstance(store, ObjectBlobStore)
    assert "S3Store" in type(store.store).__name__
    assert store.store.prefix == "some/prefix"


def test_open_blob_store_empty():
    with pytest.raises(ValueError):
        open_blob_store("  ")


async def test_local_concurrent_put_many_share_a_thread_job(tmp_path, monkeypatch):
    """put_many calls made while a thread job is queued join it: each gets its own
    keys, and every blob is synced and in place when its call returns."""
    store = LocalBlobStore(tmp_path / "blobs")
    jobs: list[int] = []
    real_write_batch = store._write_batch

    def counting_write_batch(items, keys):
        jobs.append(len(items))
        return real_write_batch(items, keys)

    monkeypatch.setattr(store, "_write_batch", counting_write_batch)
    calls = [[f"call {i} blob {j}".encode() for j in range(i % 3 + 1)] for i in range(12)]
    results = await asyncio.gather(*(store.put_many(items) for items in calls))
    assert results == [[sha(item) for item in items] for items in calls]
    assert sum(jobs) == sum(len(items) for items in calls)
    assert len(jobs) < len(calls)  # all queued in one loop turn: far fewer jobs than calls
    for items in calls:
        for item in items:
            assert await store.get(sha(item)) == item


async def test_local_failed_write_fails_only_its_own_call(tmp_path, monkeypatch):
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put(b"creates the root")
    real_write = blobs_module.os.write

    def failing_write(fd, data):
        if bytes(data) == b"doomed":
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(blobs_module.os, "write", failing_write)
    good, bad, other = await asyncio.gather(
        store.put_many([b"good"]), store.put_many([b"doomed"]), store.put_many([b"other", b"good"]), return_exceptions=True
    )
    assert good == [sha(b"good")] and other == [sha(b"other"), sha(b"good")]
    assert isinstance(bad, OSError) and bad.errno == 28
    monkeypatch.undo()
    assert not await store.exists(sha(b"doomed"))
    assert list((tmp_path / "blobs").rglob(".tmp-*")) == []


async def test_local_cancelled_put_many_leaves_the_others_answered(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    waiting = asyncio.ensure_future(store.put_many([b"abandoned"]))
    kept = asyncio.ensure_future(store.put_many([b"kept"]))
    await asyncio.sleep(0)
    waiting.cancel()
    assert await kept == [sha(b"kept")]
    assert (await asyncio.gather(waiting, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    # The abandoned blob may be written (an orphan, for the collector) or not.
    assert await store.put(b"after") == sha(b"after")


@pytest.mark.parametrize("kind", ["local", "memory"])
async def test_ensure_many_writes_only_what_is_missing(tmp_path, kind, monkeypatch):
    store = LocalBlobStore(tmp_path / "blobs") if kind == "local" else ObjectBlobStore(MemoryStore())
    present, gone = b"present", b"gone"
    await store.put_many([present, gone])
    await store.delete(sha(gone))
    written: list[list[bytes]] = []
    real_put_many = store.put_many

    async def recording_put_many(items):
        written.append(list(items))
        return await real_put_many(items)

    monkeypatch.setattr(store, "put_many", recording_put_many)
    await store.ensure_many({sha(present): present, sha(gone): gone})
    assert await store.get(sha(gone)) == gone and await store.get(sha(present)) == present
    if kind == "local":
        assert written == [[gone]]  # the present one only looked at, in the loop's thread
        written.clear()
        await store.ensure_many({sha(present): present})
        assert written == []


def test_parallel_runs_every_item_side_by_side_and_raises_the_first_error() -> None:
    started: list[int] = []
    both_running = threading.Barrier(3, timeout=10)

    def waits_for_the_others(item: int) -> None:
        started.append(item)
        both_running.wait()  # only returns once all three run at the same time

    blobs_module._parallel(waits_for_the_others, [1, 2, 3])
    assert sorted(started) == [1, 2, 3]

    def fails_on_odd(item: int) -> None:
        if item % 2:
            raise OSError(item, "no space")

    with pytest.raises(OSError):
        blobs_module._parallel(fails_on_odd, list(range(10)))
    # A failure in a lane thread is heard too, and the lane goes on working.
    with pytest.raises(OSError, match="no space"):
        blobs_module._parallel(fails_on_odd, [0, 3])
    blobs_module._parallel(lambda item: None, list(range(100)))


def test_a_lane_starts_threads_only_while_none_is_idle_and_at_most_its_limit() -> None:
    lane = blobs_module._Lane(3, "test-lane")
    release = threading.Event()
    finished: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        release.wait(10)
        with lock:
            finished.append(n)

    for n in range(10):
        lane.run(lambda n=n: call(n))
    assert lane._threads == 3  # the other seven wait for a thread
    release.set()
    deadline = time.monotonic() + 10
    while len(finished) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(finished) == list(range(10))
    # Idle threads take the next calls: no new thread.
    for n in range(10, 13):
        lane.run(lambda n=n: call(n))
    while len(finished) < 13 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lane._threads == 3 and len(finished) == 13


async def test_local_new_store_syncs_every_directory_it_creates(tmp_path, monkeypatch):
    """A store whose root does not exist yet: the root and the fan-out directory are
    created, and each directory whose entries changed is synced."""
    synced: list[str] = []
    monkeypatch.setattr(blobs_module, "_fsync_dir", lambda path: synced.append(str(path)))
    store = LocalBlobStore(tmp_path / "deep" / "blobs")
    key = await store.put(b"first")
    fan_out = store.path_for(key).parent
    assert fan_out.parent == store.root
    assert set(synced) == {str(tmp_path / "deep"), str(store.root), str(fan_out)}
    synced.clear()
    # Another blob in the same fan-out directory: that directory alone.
    other = next(data for data in (b"second %d" % i for i in range(100_000)) if blobs_module.blob_key(data)[:2] == key[:2])
    await store.put(other)
    assert synced == [str(fan_out)]
    assert await store.get(key) == b"first"


async def test_local_file_in_place_of_a_fan_out_directory_fails_cleanly(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"blocked"
    key = blobs_module.blob_key(data)
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / key[:2]).write_bytes(b"not a directory")
    with pytest.raises(OSError):
        await store.put(data)
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [key[:2]]


def _legacy_path(store: LocalBlobStore, key: str) -> Path:
    return store.root / key[:2] / key[2:4] / key


async def _put_legacy(store: LocalBlobStore, data: bytes) -> str:
    """A blob where a store written before 2026-11 kept it: root/ab/cd/<key>."""
    key = sha(data)
    path = _legacy_path(store, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


async def test_local_reads_blobs_of_the_older_layout(local):
    old = await _put_legacy(local, b"written by an older postern")
    new = await local.put(b"written now")
    assert local.path_for(old) == _legacy_path(local, old)
    assert local.path_for(new) == local.root / new[:2] / new
    assert await local.get(old) == b"written by an older postern"
    assert b"".join(await read_stream(local, old, 5)) == b"written by an older postern"
    assert await local.exists(old)
    assert local.read_many([old, new, sha(b"missing")], None) == [b"written by an older postern", b"written now", None]
    assert local.read_many([old, new], 7) == [b"written", b"written"]
    assert await collect_keys(local) == sorted([old, new])


async def test_local_older_layout_same_bytes_not_written_again(local):
    key = await _put_legacy(local, b"kept where it is")
    assert await local.put(b"kept where it is") == key
    await local.ensure_many({key: b"kept where it is"})
    assert _files_under(local.root) == [_legacy_path(local, key)]
    # A damaged older copy (wrong size) is written again, at the top level.
    damaged = await _put_legacy(local, b"damaged older copy")
    _legacy_path(local, damaged).write_bytes(b"damaged")
    await local.ensure_many({damaged: b"damaged older copy"})
    assert (local.root / damaged[:2] / damaged).read_bytes() == b"damaged older copy"
    assert await local.get(damaged) == b"damaged older copy"


async def test_local_delete_and_listing_cover_both_layouts(local):
    key = await _put_legacy(local, b"twice")
    (local.root / key[:2] / key).write_bytes(b"twice")  # both copies, as after a rewrite
    assert await collect_keys(local) == [key]  # listed once
    await local.delete(key)
    assert not await local.exists(key)
    assert await collect_keys(local) == []
    with pytest.raises(BlobNotFound):
        await local.get(key)
    with pytest.raises(BlobNotFound):
        await read_stream(local, key)


async def test_local_cleanup_temp_in_older_leaves(local):
    key = await _put_legacy(local, b"older leaf")
    stale = _legacy_path(local, key).parent / ".tmp-deadbeefdeadbeef"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert await local.cleanup_temp(older_than_seconds=3600) == 1
    assert not stale.exists()
    assert await local.get(key) == b"older leaf"
