"""Local storage: objects listed with size and mtime, deleted (twice is fine), an existing
object's upload refreshes its mtime, and no key reaches outside the root."""

from __future__ import annotations

import os

import pytest

from compressor.storage import LocalStorage, StoredObject

KEY = "products/7/" + "a" * 64 + ".jpg"


async def listed(storage: LocalStorage) -> list[StoredObject]:
    return sorted([o async for o in storage.list()], key=lambda o: o.key)


async def test_objects_are_listed_with_their_size_and_mtime(tmp_path):
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, b"12345", "image/jpeg")
    await storage.put("products/8/b.jpg", b"12", "image/jpeg")
    (tmp_path / "elsewhere.txt").write_text("not ours")

    objects = await listed(storage)

    assert [(o.key, o.size) for o in objects] == [(KEY, 5), ("products/8/b.jpg", 2)]
    assert objects[0].mtime == os.stat(tmp_path / KEY).st_mtime
    assert await storage.stat(KEY) == objects[0]


async def test_an_empty_or_missing_store_lists_nothing(tmp_path):
    assert await listed(LocalStorage(tmp_path / "nothing")) == []


async def test_deleting_removes_the_object_and_its_empty_directory_and_may_repeat(tmp_path):
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, b"x", "image/jpeg")

    await storage.delete(KEY)
    await storage.delete(KEY)  # a redelivered clean-up

    assert await storage.stat(KEY) is None
    assert not (tmp_path / "products" / "7").exists()
    await storage.put(KEY, b"x", "image/jpeg")  # the directory comes back with an upload
    assert await storage.stat(KEY) is not None


async def test_uploading_an_object_that_exists_refreshes_its_mtime(tmp_path):
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, b"x", "image/jpeg")
    os.utime(tmp_path / KEY, (1_000_000, 1_000_000))  # an old object

    await storage.put(KEY, b"x", "image/jpeg")  # a job uploading the same bytes again

    stat = await storage.stat(KEY)
    assert stat is not None
    assert stat.mtime > 1_000_000


@pytest.mark.parametrize("key", ["../outside.jpg", "products/../../outside.jpg", "/etc/passwd"])
async def test_no_key_reaches_outside_the_root(tmp_path, key):
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(ValueError, match="outside"):
        await storage.delete(key)
