"""Deleting stored objects nothing references (compressor.cleanup), never one a job of this
process is about to reference (compressor.claims), with in-memory products and storage."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import pytest

from catalogue.jobs import DeleteObjects
from catalogue.retry import RetryPolicy
from compressor.claims import JobUploads, KeyClaims
from compressor.cleanup import ObjectCleanup, belongs_to
from compressor.errors import JobExhausted
from compressor.metrics import WorkerMetrics
from tests.unit.test_pipeline_flow import Products

OLD, NEW, SHOWN = (f"products/7/{c * 64}.jpg" for c in "abc")


@dataclass
class Storage:
    failures: list[Exception] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def delete(self, key: str) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.deleted.append(key)


def shown(products: Products, key: str) -> None:
    products.add(7, ("http://img/a.jpg",))
    products.entries(7)[0].update(status="ready", url=f"http://cdn/{key}", key=key)


def cleanup_with(products: Products, storage: Storage, claims: KeyClaims | None = None):
    return ObjectCleanup(
        cast(asyncpg.Pool, products),
        storage,
        claims or KeyClaims(),
        WorkerMetrics(),
        retry_policy=RetryPolicy(base_s=0.0, cap_s=0.0, max_attempts=3),
    )


async def test_a_clean_up_deletes_what_no_entry_references_and_keeps_what_one_does():
    products, storage = Products(), Storage()
    shown(products, SHOWN)

    deleted = await cleanup_with(products, storage).run(DeleteObjects(7, (OLD, SHOWN, NEW)))

    assert deleted == 2
    assert sorted(storage.deleted) == sorted([OLD, NEW])


async def test_the_objects_of_a_product_that_is_gone_are_all_deleted():
    storage = Storage()

    assert await cleanup_with(Products(), storage).run(DeleteObjects(7, (OLD, NEW))) == 2


@pytest.mark.parametrize(
    "key",
    ["products/8/" + "a" * 64 + ".jpg", "products/7/../../etc/passwd", "elsewhere/x.jpg", ""],
)
async def test_only_keys_of_the_product_s_own_namespace_are_ever_deleted(key):
    storage = Storage()

    assert await cleanup_with(Products(), storage).run(DeleteObjects(7, (key,))) == 0

    assert storage.deleted == []
    assert not belongs_to(7, key)


async def test_a_key_a_job_of_this_process_holds_is_kept():
    claims, storage = KeyClaims(), Storage()
    uploads = JobUploads(claims)
    await uploads.hold(NEW)

    await cleanup_with(Products(), storage, claims).run(DeleteObjects(7, (OLD, NEW)))
    assert storage.deleted == [OLD]

    uploads.release()
    await cleanup_with(Products(), storage, claims).run(DeleteObjects(7, (NEW,)))
    assert storage.deleted == [OLD, NEW]


async def test_a_key_a_deletion_skipped_is_handed_to_the_job_that_releases_it_last():
    claims = KeyClaims()
    first, second = JobUploads(claims), JobUploads(claims)
    await first.hold(NEW)
    await second.hold(NEW)
    await first.hold(OLD)
    with claims.deleting([NEW, SHOWN]) as mine:
        assert mine == [SHOWN]  # NEW is held: skipped, and remembered
    first.release()
    assert first.deferred == set()  # the other job still holds NEW; OLD was never asked for
    second.release()
    assert second.deferred == {NEW}  # the last hold: this job deletes it (if unreferenced)
    with claims.deleting([NEW]) as again:
        assert again == [NEW]
    third = JobUploads(claims)
    await third.hold(NEW)
    third.release()
    assert third.deferred == set()  # handed over once, not again


async def test_transient_storage_errors_are_retried_then_the_job_is_exhausted():
    storage = Storage([ConnectionResetError("reset")])
    assert await cleanup_with(Products(), storage).run(DeleteObjects(7, (OLD,))) == 1

    storage = Storage([ConnectionResetError("reset")] * 3)
    with pytest.raises(JobExhausted) as exhausted:
        await cleanup_with(Products(), storage).run(DeleteObjects(7, (OLD,)))
    assert exhausted.value.attempts == 3


async def test_a_discard_that_fails_is_left_to_the_garbage_collection(caplog):
    storage = Storage([ConnectionResetError("reset")] * 3)

    assert await cleanup_with(Products(), storage).discard(7, {OLD}, reason="superseded") == 0

    assert "objects.discard_failed" in [r.getMessage() for r in caplog.records]


async def test_a_hold_waits_for_a_deletion_under_way_then_holds():
    claims = KeyClaims()
    with claims.deleting([OLD]) as mine:
        assert mine == [OLD]
        holding = asyncio.create_task(claims.hold(OLD))
        await asyncio.sleep(0)
        assert not holding.done()  # it would upload into a deletion: it waits
        with claims.deleting([OLD]) as theirs:
            assert theirs == []  # one deletion at a time takes a key
    await holding
    assert claims.held(OLD)
    with claims.deleting([OLD]) as after:
        assert after == []


async def test_one_job_holds_a_key_once_however_many_sources_share_it():
    claims = KeyClaims()
    first, second = JobUploads(claims), JobUploads(claims)
    await first.hold(NEW)
    await first.hold(NEW)  # two sources of one job, the same bytes
    await second.hold(NEW)
    first.release()
    assert claims.held(NEW)  # the second job still holds it
    second.release()
    second.release()  # released once only
    assert not claims.held(NEW)
