"""The storage garbage collection's decisions (compressor/gc.py), over an in-memory storage and
a stand-in for the database's references: the real ones are in tests/integration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from compressor import gc
from compressor.storage import StoredObject
from db import storage_refs

NOW = 1_000_000.0
HOUR = 3600.0


@dataclass
class Storage:
    objects: dict[str, StoredObject] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    # An upload landing on a key between the listing and the deletion: its new mtime.
    touched_after_listing: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, size: int, age_s: float) -> None:
        self.objects[key] = StoredObject(key, size, NOW - age_s)

    async def list(self):
        for stored in list(self.objects.values()):
            yield stored
        for key, mtime in self.touched_after_listing.items():
            self.objects[key] = StoredObject(key, self.objects[key].size, mtime)

    async def stat(self, key: str) -> StoredObject | None:
        return self.objects.get(key)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.deleted.append(key)


@pytest.fixture
def referenced(monkeypatch) -> set[str]:
    keys: set[str] = set()

    async def referenced_keys(conn: Any) -> set[str]:
        return set(keys)

    monkeypatch.setattr(storage_refs, "referenced_keys", referenced_keys)
    return keys


async def collect(storage: Storage, *, grace_s: float = HOUR, dry_run: bool = False, **kw):
    return await gc.collect(
        storage, cast(Any, None), grace_s=grace_s, dry_run=dry_run, now=lambda: NOW, **kw
    )


def store() -> Storage:
    storage = Storage()
    storage.add("products/1/referenced.jpg", 100, 2 * HOUR)
    storage.add("products/1/old.jpg", 1000, 2 * HOUR)
    storage.add("products/1/young.jpg", 10, 60)
    return storage


async def test_unreferenced_objects_older_than_the_grace_are_deleted_the_rest_kept(referenced):
    referenced.add("products/1/referenced.jpg")
    storage = store()

    report = await collect(storage)

    assert storage.deleted == ["products/1/old.jpg"]
    assert (report.objects, report.bytes) == (3, 1110)
    assert (report.referenced, report.young, report.deleted, report.deleted_bytes) == (
        1,
        1,
        1,
        1000,
    )
    assert "deleted 1 unreferenced (1.0 kB reclaimed)" in report.summary()


async def test_a_dry_run_deletes_nothing_and_counts_what_it_would(referenced):
    storage = store()

    report = await collect(storage, dry_run=True)

    assert storage.deleted == []
    assert (report.deleted, report.deleted_bytes) == (2, 1100)
    assert "would delete 2" in report.summary()


async def test_no_grace_takes_every_unreferenced_object(referenced):
    referenced.add("products/1/referenced.jpg")
    storage = store()

    await collect(storage, grace_s=0)

    assert sorted(storage.deleted) == ["products/1/old.jpg", "products/1/young.jpg"]


async def test_an_object_uploaded_again_after_the_listing_is_kept(referenced):
    storage = store()
    storage.touched_after_listing["products/1/old.jpg"] = NOW  # a job re-uploads its bytes

    report = await collect(storage)

    assert "products/1/old.jpg" not in storage.deleted
    assert report.young == 2


async def test_a_key_a_job_of_this_process_is_uploading_is_kept(referenced):
    storage = store()

    report = await collect(storage, held=lambda key: key == "products/1/old.jpg")

    assert "products/1/old.jpg" not in storage.deleted
    assert report.in_use == 1


async def test_a_failed_deletion_is_counted_and_the_rest_goes_on(referenced):
    storage = store()
    storage.add("products/2/old.jpg", 5, 3 * HOUR)

    async def delete(key: str) -> None:
        if key == "products/1/old.jpg":
            raise ConnectionResetError("reset")
        storage.deleted.append(key)

    storage.delete = delete  # type: ignore[method-assign]
    report = await collect(storage)

    assert report.failed == 1
    assert "products/2/old.jpg" in storage.deleted
    assert "1 failed" in report.summary()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("30m", 1800), ("90s", 90), ("0", 0), ("2d", 172800), ("1.5h", 5400)],
)
def test_durations_are_read_with_their_unit(text, seconds):
    assert gc.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1 week", "1y"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        gc.parse_duration(text)


def test_sizes_and_durations_are_printed_for_people():
    assert gc.human_bytes(999) == "999 B"
    assert gc.human_bytes(1_500_000) == "1.5 MB"
    assert gc.human_duration(3600) == "1h"
    assert gc.human_duration(90) == "90s"
