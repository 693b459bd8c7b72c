"""Every change a product's image entries go through (catalogue/image_state.py), as the pure
functions the API and the worker share."""

from __future__ import annotations

from catalogue import image_state as state
from catalogue.image_state import FAILED, PENDING, READY, Outcome


def ready(source: str, key: str, revision: int = 1, **extra: object) -> dict[str, object]:
    return {
        "source": source,
        "status": READY,
        "url": f"http://cdn.test/{key}",
        "key": key,
        "error": None,
        "revision": revision,
        **extra,
    }


def test_new_entries_are_pending_at_their_revision_in_source_order():
    entries = state.new_entries(["a", "b"], 3)
    assert [e["source"] for e in entries] == ["a", "b"]
    assert all(e["status"] == PENDING and e["revision"] == 3 for e in entries)
    assert all(e["url"] is None and e["key"] is None and e["error"] is None for e in entries)


def test_processing_status_derives_from_the_entries():
    a, b = ready("a", "k/a.jpg"), ready("b", "k/b.jpg")
    failed = {**b, "status": FAILED, "error": "x"}
    assert state.processing_status([]) == "done"
    assert state.processing_status([a, b]) == "done"
    assert state.processing_status([a, failed]) == "partial"
    assert state.processing_status([failed]) == "failed"
    assert state.processing_status([a, {**b, "status": PENDING}]) == "pending"


def test_referenced_keys_skip_entries_without_output():
    entries = [ready("a", "k/a.jpg"), state.new_entry("b", 1), ready("c", "k/a.jpg")]
    assert state.referenced_keys(entries) == {"k/a.jpg"}


def test_changing_sources_keeps_outputs_processes_new_ones_and_frees_removed_ones():
    entries = [ready("a", "k/a.jpg"), ready("b", "k/b.jpg")]
    change = state.change_sources(entries, ["b", "c"], 2)
    assert [e["source"] for e in change.entries] == ["b", "c"]
    assert change.entries[0] == entries[1]
    assert (change.entries[1]["status"], change.entries[1]["revision"]) == (PENDING, 2)
    assert change.to_process == ("c",)
    assert change.unreferenced == {"k/a.jpg"}


def test_a_pure_reorder_processes_nothing_and_frees_nothing():
    entries = [ready("a", "k/a.jpg"), ready("b", "k/b.jpg")]
    change = state.change_sources(entries, ["b", "a"], 2)
    assert change.to_process == ()
    assert change.unreferenced == set()


def test_reprocess_makes_every_entry_pending_at_the_new_revision_keeping_outputs():
    entries = [ready("a", "k/a.jpg"), {**ready("b", "k/b.jpg"), "status": FAILED, "error": "x"}]
    change = state.reprocess(entries, 5)
    assert change.to_process == ("a", "b")
    assert all(e["status"] == PENDING and e["revision"] == 5 for e in change.entries)
    assert [e["key"] for e in change.entries] == ["k/a.jpg", "k/b.jpg"]
    assert all(e["error"] is None for e in change.entries)
    assert change.unreferenced == set()


def test_outcomes_land_on_entries_pending_at_the_job_s_revision():
    entries = state.new_entries(["a", "b"], 1)
    change = state.apply_outcomes(
        entries, 1, [Outcome("a", url="u/a", key="k/a.jpg"), Outcome("b", error="HTTP 404")]
    )
    assert change is not None
    assert (change.entries[0]["status"], change.entries[0]["key"]) == (READY, "k/a.jpg")
    assert (change.entries[1]["status"], change.entries[1]["error"]) == (FAILED, "HTTP 404")
    assert "fingerprint" not in change.entries[0]  # none given: the entry shape is unchanged


def test_a_job_of_an_older_revision_lands_nothing():
    reprocessed = state.reprocess([ready("a", "k/a.jpg")], 2).entries
    assert state.apply_outcomes(reprocessed, 1, [Outcome("a", url="u", key="k/new.jpg")]) is None


def test_a_removed_source_takes_nothing():
    entries = state.new_entries(["b"], 2)
    assert state.apply_outcomes(entries, 1, [Outcome("a", url="u", key="k/a.jpg")]) is None


def test_a_finished_entry_takes_nothing_again():
    entries = [ready("a", "k/a.jpg")]
    assert state.apply_outcomes(entries, 1, [Outcome("a", error="expired")]) is None


def test_a_reprocess_output_replaces_the_old_one_which_becomes_unreferenced():
    entries = state.reprocess([ready("a", "k/old.jpg", fingerprint="f1")], 2).entries
    change = state.apply_outcomes(
        entries, 2, [Outcome("a", url="u/new", key="k/new.jpg", fingerprint="f2")]
    )
    assert change is not None
    assert change.entries[0]["key"] == "k/new.jpg"
    assert change.entries[0]["fingerprint"] == "f2"
    assert change.unreferenced == {"k/old.jpg"}


def test_the_same_bytes_again_are_not_unreferenced():
    entries = state.reprocess([ready("a", "k/same.jpg")], 2).entries
    change = state.apply_outcomes(entries, 2, [Outcome("a", url="u", key="k/same.jpg")])
    assert change is not None
    assert change.unreferenced == set()


def test_a_failed_reprocess_keeps_showing_the_previous_output_and_its_fingerprint():
    entries = state.reprocess([ready("a", "k/old.jpg", fingerprint="f1")], 2).entries
    change = state.apply_outcomes(entries, 2, [Outcome("a", error="HTTP 503")])
    assert change is not None
    (entry,) = change.entries
    assert (entry["status"], entry["key"], entry["fingerprint"]) == (FAILED, "k/old.jpg", "f1")
    assert change.unreferenced == set()


def test_an_output_without_fingerprint_drops_the_previous_one():
    entries = state.reprocess([ready("a", "k/old.jpg", fingerprint="f1")], 2).entries
    change = state.apply_outcomes(entries, 2, [Outcome("a", url="u", key="k/new.jpg")])
    assert change is not None
    assert "fingerprint" not in change.entries[0]


def test_every_entry_of_a_source_gets_its_outcome():
    entries = state.new_entries(["a", "a"], 1)
    change = state.apply_outcomes(entries, 1, [Outcome("a", url="u", key="k/a.jpg")])
    assert change is not None
    assert [e["status"] for e in change.entries] == [READY, READY]


def test_fail_pending_fails_only_the_job_s_entries():
    entries = [*state.new_entries(["a"], 1), *state.new_entries(["b"], 2)]
    change = state.fail_pending(entries, 1, "dead_lettered")
    assert change is not None
    assert [e["status"] for e in change.entries] == [FAILED, PENDING]
    assert change.entries[0]["error"] == "dead_lettered"
    assert state.fail_pending(change.entries, 1, "again") is None


def test_reopen_failed_reopens_the_job_s_failures_only():
    failed = state.fail_pending(state.new_entries(["a"], 1), 1, "x")
    assert failed is not None
    reopened = state.reopen_failed(failed.entries, 1)
    assert reopened is not None
    assert (reopened[0]["status"], reopened[0]["error"]) == (PENDING, None)
    assert state.reopen_failed(failed.entries, 2) is None  # another revision's letter
    assert state.reopen_failed(reopened, 1) is None  # nothing failed any more


def test_awaiting_names_the_sources_pending_at_a_revision_once_each_in_order():
    entries = [
        *state.new_entries(["b", "a", "b"], 1),
        *state.new_entries(["c"], 2),
        ready("d", "k/d.jpg"),
    ]
    assert state.awaiting(entries, 1) == ("b", "a")
    assert state.awaiting(entries, 2) == ("c",)
    assert state.awaiting(entries, 3) == ()


def test_outdated_outputs_are_those_of_another_or_no_fingerprint():
    assert state.outdated([ready("a", "k/a.jpg", fingerprint="old")], "new")
    assert state.outdated([ready("a", "k/a.jpg")], "new")  # recorded before fingerprints
    assert not state.outdated([ready("a", "k/a.jpg", fingerprint="new")], "new")
    assert not state.outdated([state.new_entry("a", 1)], "new")  # no output: nothing outdated


def rendition(key: str, width: int, fmt: str = "jpeg") -> dict[str, object]:
    return {
        "key": key,
        "url": f"http://cdn.test/{key}",
        "width": width,
        "height": width * 3 // 4,
        "format": fmt,
        "bytes": width * 10,
    }


def test_public_hides_keys_revisions_and_fingerprints():
    renditions = [rendition("k/small.jpg", 320), rendition("k/a.jpg", 640)]
    (shown,) = state.public([ready("a", "k/a.jpg", fingerprint="f", renditions=renditions)])
    assert shown == {
        "source": "a",
        "status": READY,
        "url": "http://cdn.test/k/a.jpg",
        "error": None,
        "original": None,
        "renditions": [
            {
                "url": "http://cdn.test/k/small.jpg",
                "width": 320,
                "height": 240,
                "format": "jpeg",
                "bytes": 3200,
            },
            {
                "url": "http://cdn.test/k/a.jpg",
                "width": 640,
                "height": 480,
                "format": "jpeg",
                "bytes": 6400,
            },
        ],
    }


def test_an_entry_without_an_output_or_from_before_renditions_shows_none():
    old = ready("a", "k/a.jpg")  # written before renditions existed
    shown = state.public([old, state.new_entry("b", 1)])
    assert [e["renditions"] for e in shown] == [[], []]
    assert [e["original"] for e in shown] == [None, None]


def test_an_output_records_its_source_and_a_new_output_without_one_drops_it():
    source = {"bytes": 90_000, "width": 1200, "height": 1600, "format": "jpeg"}
    entries = [state.new_entry("a", 1)]
    change = state.apply_outcomes(entries, 1, [Outcome("a", url="u", key="k", original=source)])
    assert change is not None
    (shown,) = state.public(change.entries)
    assert shown["original"] == source

    again = state.reprocess(change.entries, 2).entries
    change = state.apply_outcomes(again, 2, [Outcome("a", url="u2", key="k2")])
    assert change is not None
    assert "original" not in change.entries[0]


def test_every_rendition_key_is_referenced_and_replaced_ones_are_unreferenced():
    first = [rendition("k/1.jpg", 320), rendition("k/1.webp", 320, "webp")]
    entries = [ready("a", "k/1.jpg", renditions=first)]
    assert state.referenced_keys(entries) == {"k/1.jpg", "k/1.webp"}
    reprocessing = state.reprocess(entries, 2).entries
    assert state.referenced_keys(reprocessing) == {"k/1.jpg", "k/1.webp"}  # shown meanwhile
    second = (rendition("k/2.jpg", 320), rendition("k/2.webp", 320, "webp"))
    change = state.apply_outcomes(
        reprocessing, 2, [state.Outcome("a", url="u", key="k/2.jpg", renditions=second)]
    )
    assert change is not None
    assert change.unreferenced == {"k/1.jpg", "k/1.webp"}
    assert change.entries[0]["renditions"] == [dict(r) for r in second]
    removed = state.change_sources(change.entries, [], 3)
    assert removed.unreferenced == {"k/2.jpg", "k/2.webp"}


def test_a_new_output_without_renditions_drops_the_old_ones():
    entries = [ready("a", "k/1.jpg", renditions=[rendition("k/1.webp", 320, "webp")])]
    reprocessing = state.reprocess(entries, 2).entries
    change = state.apply_outcomes(reprocessing, 2, [state.Outcome("a", url="u", key="k/2.jpg")])
    assert change is not None
    assert "renditions" not in change.entries[0]
    assert change.unreferenced == {"k/1.jpg", "k/1.webp"}
