"""The object store contract, run against both backends (local folder, moto's S3 server)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.errors import ConfigurationError
from services.settings import Settings
from services.storage.factory import open_object_store
from services.storage.local import LocalObjectStore
from services.storage.object_store import InvalidKeyError, ObjectStore, ObjectStoreError
from services.storage.s3 import S3ObjectStore
from tests.fixtures.object_store import MakeS3Store
from tests.paths import ROOT

BAD_KEYS = [
    "",
    "/abs/key",
    "../escape",
    "a/../../b",
    "a/./b",
    "a//b",
    "dir/",
    ".hidden",
    "a/.tmp-file",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    "x" * 1025,
]


async def test_put_get_exists_roundtrip(object_store: ObjectStore) -> None:
    assert await object_store.get("a/b/c.bin") is None
    assert not await object_store.exists("a/b/c.bin")
    await object_store.put("a/b/c.bin", b"\x00first\xff")
    assert await object_store.get("a/b/c.bin") == b"\x00first\xff"
    assert await object_store.exists("a/b/c.bin")
    await object_store.put("a/b/c.bin", b"second")
    assert await object_store.get("a/b/c.bin") == b"second"
    await object_store.put("empty", b"")
    assert await object_store.get("empty") == b""
    assert not await object_store.exists("a/b")  # a "directory" is not an object


async def test_list_is_a_sorted_string_prefix_match(object_store: ObjectStore) -> None:
    keys = ["p/A/2020/01/x", "p/A/2019/12/x", "p/AB/2020/01/x", "p/B/x", "q/x"]
    for key in keys:
        await object_store.put(key, key.encode())
    assert await object_store.list() == sorted(keys)
    assert await object_store.list("p/A/") == ["p/A/2019/12/x", "p/A/2020/01/x"]
    assert await object_store.list("p/A") == ["p/A/2019/12/x", "p/A/2020/01/x", "p/AB/2020/01/x"]
    assert await object_store.list("p/A/2020") == ["p/A/2020/01/x"]
    assert await object_store.list("p/B/x") == ["p/B/x"]
    assert await object_store.list("nothing/") == []


async def test_get_many_maps_missing_keys_to_none(object_store: ObjectStore) -> None:
    await object_store.put("k/1", b"one")
    await object_store.put("k/3", b"three")
    got = await object_store.get_many(["k/1", "k/2", "k/3"])
    assert got == {"k/1": b"one", "k/2": None, "k/3": b"three"}
    assert await object_store.get_many([]) == {}


async def test_delete_removes_and_tolerates_missing(object_store: ObjectStore) -> None:
    await object_store.put("d/1/x", b"1")
    await object_store.put("d/2/x", b"2")
    await object_store.delete("d/1/x")
    await object_store.delete("d/1/x")
    await object_store.delete("never/there")
    assert await object_store.get("d/1/x") is None
    assert not await object_store.exists("d/1/x")
    assert await object_store.list("d/") == ["d/2/x"]


async def test_ping_is_true_for_a_usable_store(object_store: ObjectStore) -> None:
    assert await object_store.ping() is True


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_rejected_everywhere(object_store: ObjectStore, key: str) -> None:
    for call in (
        object_store.get(key),
        object_store.put(key, b"x"),
        object_store.delete(key),
        object_store.exists(key),
        object_store.get_many([key]),
    ):
        with pytest.raises(InvalidKeyError):
            await call
    assert await object_store.list() == []


@pytest.mark.parametrize("prefix", ["/abs", "../", "a/../b/", "a//", ".hidden/"])
async def test_bad_prefixes_are_rejected(object_store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        await object_store.list(prefix)


async def test_readers_see_whole_objects_during_overwrites(object_store: ObjectStore) -> None:
    versions = [bytes([n]) * 2_000_000 for n in (1, 2)]
    await object_store.put("big/obj", versions[0])
    stop = asyncio.Event()

    async def writer() -> None:
        for n in range(6):
            await object_store.put("big/obj", versions[n % 2])
        stop.set()

    seen = set()

    async def reader() -> None:
        while not stop.is_set():
            data = await object_store.get("big/obj")
            assert data in versions, "a reader saw a partial or mixed object"
            seen.add(data[:1] if data else b"")

    await asyncio.gather(writer(), reader())
    assert seen


async def test_local_failed_write_keeps_old_object_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("k/obj", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ObjectStoreError, match="k/obj"):
        await store.put("k/obj", b"new")
    monkeypatch.undo()
    assert await store.get("k/obj") == b"old"
    assert sorted(p.name for p in (tmp_path / "objects" / "k").iterdir()) == ["obj"]


KILLED_WRITER = """
import asyncio, sys
from pathlib import Path
from services.storage.factory import LocalObjectStore

async def main():
    store = LocalObjectStore(Path(sys.argv[1]))
    n = 0
    while True:
        n += 1
        await store.put("victim/data.bin", bytes([n % 250 + 1]) * 30_000_000)
        print(n, flush=True)

asyncio.run(main())
"""


def test_local_writer_killed_mid_write_leaves_no_half_object(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # one complete object exists; the next write is in flight
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    store = LocalObjectStore(root)
    data = asyncio.run(store.get("victim/data.bin"))
    assert data is not None and len(data) == 30_000_000
    assert data.count(data[:1]) == len(data), "object mixes two writes"
    assert asyncio.run(store.list()) == ["victim/data.bin"]  # leftover temp files are never listed


async def test_local_ping_is_false_when_root_is_not_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    assert await LocalObjectStore(blocker / "objects").ping() is False


async def test_local_delete_prunes_empty_partitions(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("a/b/c/obj", b"x")
    await store.delete("a/b/c/obj")
    assert not (tmp_path / "objects" / "a").exists()
    assert (tmp_path / "objects").is_dir()


async def test_s3_prefixes_isolate_stores_in_one_bucket(make_s3_store: MakeS3Store) -> None:
    first = make_s3_store(prefix="one")
    second = make_s3_store(prefix="two/nested", bucket=first.bucket)
    bare = make_s3_store(bucket=first.bucket)
    await first.put("k", b"1")
    await second.put("k", b"2")
    assert await first.list() == ["k"]
    assert await second.get("k") == b"2"
    assert await bare.list() == ["one/k", "two/nested/k"]


async def test_s3_list_follows_pagination(make_s3_store: MakeS3Store) -> None:
    store = make_s3_store(prefix="pg", list_page_size=7)
    keys = [f"many/{n:03d}" for n in range(23)]
    await asyncio.gather(*(store.put(key, b"x") for key in keys))
    assert await store.list("many/") == keys


async def test_s3_missing_bucket_fails_clearly(make_s3_store: MakeS3Store) -> None:
    store = make_s3_store(bucket="no-such-bucket-here", max_attempts=1)
    assert await store.ping() is False
    with pytest.raises(ObjectStoreError, match="put 'k/x'.*NoSuchBucket"):
        await store.put("k/x", b"1")


async def test_s3_unreachable_endpoint_pings_false(aws_test_env: None) -> None:
    patient = S3ObjectStore("bucket", endpoint_url="http://127.0.0.1:9")  # default retries
    impatient = S3ObjectStore("bucket", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    try:
        assert await patient.ping() is False  # health checks make one attempt, not five
        with pytest.raises(ObjectStoreError, match="get 'k'"):
            await impatient.get("k")
    finally:
        await patient.close()
        await impatient.close()


def _settings(url: str) -> Settings:
    return dataclasses.replace(Settings(), object_store_url=url)


async def test_open_object_store_local(tmp_path: Path) -> None:
    store = open_object_store(_settings(f"file://{tmp_path}/objs"))
    assert isinstance(store, LocalObjectStore) and store.root == tmp_path / "objs"
    default = open_object_store(Settings.from_env({"DATA_DIR": str(tmp_path / "d")}))
    assert isinstance(default, LocalObjectStore)
    assert default.root == (tmp_path / "d" / "objects").resolve()
    local = open_object_store(_settings("file://localhost/srv/objects"))
    assert isinstance(local, LocalObjectStore) and local.root == Path("/srv/objects")


async def test_open_object_store_s3(aws_test_env: None) -> None:
    settings = dataclasses.replace(
        _settings("s3://my-bucket/some/prefix/"),
        s3_endpoint_url="https://acct.r2.cloudflarestorage.com",
        aws_region="auto",
    )
    store = open_object_store(settings)
    try:
        assert isinstance(store, S3ObjectStore)
        assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
        assert store.client.meta.region_name == "auto"
        assert "secret" not in store.description.lower()
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://Bad_Bucket",
        "s3://ab",
        "s3://user:secret@bucket",
        "s3://bucket:9000/x",
        "s3://bucket/../x",
        "s3://bucket/a//b",
        "s3://bucket?x=1",
        "file://somehost/data",
        "file:relative/dir",
        "file:///",
        "file:///data#frag",
        "ftp://host/x",
        "objects",
    ],
)
def test_open_object_store_rejects_malformed_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="OBJECT_STORE_URL") as caught:
        open_object_store(_settings(url))
    assert "secret" not in caught.value.message


def test_settings_reject_unknown_scheme_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="OBJECT_STORE_URL"):
        Settings.from_env({"OBJECT_STORE_URL": "gs://bucket"})


async def test_store_works_as_async_context_manager(make_s3_store: MakeS3Store) -> None:
    store = make_s3_store()
    async with store as opened:
        await opened.put("x", b"1")
        assert await opened.get("x") == b"1"


def test_local_store_is_safe_across_threads(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects", fsync=False)
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            for i in range(20):
                asyncio.run(store.put(f"t/{n}/{i}", bytes([i])))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(asyncio.run(store.list("t/"))) == 80
