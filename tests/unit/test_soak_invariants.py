"""The soak's end-state checks on made-up observations: each one passes on a consistent state
and names what breaks it."""

from __future__ import annotations

from typing import Any

import orjson

from testkit.soak.invariants import (
    Answer,
    Creation,
    Expected,
    Letter,
    Served,
    check_creations,
    check_dead_letters,
    check_processes,
    check_replayed,
    check_served,
    check_server_errors,
    check_states,
    check_storage,
    check_terminal,
)

A, B = "http://127.0.0.1:1/img/a.jpg", "http://127.0.0.1:1/img/b.jpg"


def entry(source: str, status: str = "ready", revision: int = 1, **fields: Any) -> dict[str, Any]:
    done = status == "ready"
    return {
        "source": source,
        "status": status,
        "url": fields.get("url", f"http://x/{source[-5:]}" if done else None),
        "key": fields.get("key", f"products/1/{source[-5:]}" if done else None),
        "error": fields.get("error", "http_status: HTTP 404" if status == "failed" else None),
        "revision": revision,
    }


def row(product_id: int, key: str, *entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    statuses = {e["status"] for e in entries}
    status = "pending" if "pending" in statuses else "done"
    if "failed" in statuses:
        status = "failed" if statuses == {"failed"} else "partial"
    return {
        "id": product_id,
        "product_name": fields.get("name", "Lamp"),
        "product_description": key,
        "product_price": fields.get("price", 10.0),
        "images": orjson.dumps(list(entries)).decode(),
        "processing_status": fields.get("status", status),
        "product_images": [e["source"] for e in entries],
    }


def test_a_create_retried_with_its_key_that_made_one_product_passes_and_two_are_duplicates():
    expected = {1: Expected(1, "Lamp", 10.0, [A])}
    creations = [Creation("k1", 1)]
    assert check_creations(creations, expected, [row(1, "k1", entry(A))]).violations == []
    twice = check_creations(creations, expected, [row(1, "k1", entry(A)), row(2, "k1")])
    assert twice.counts["duplicates"] == 1
    assert "made 2 products" in twice.violations[0]


def test_a_product_answered_created_and_gone_is_lost_and_one_answered_deleted_and_there_is_back():
    gone = check_creations([Creation("k1", 1)], {1: Expected(1, "Lamp", 10.0, [])}, [])
    assert gone.counts["lost"] == 1
    deleted = Expected(1, "Lamp", 10.0, [], deleted=True)
    back = check_creations([Creation("k1", 1)], {1: deleted}, [row(1, "k1")])
    assert back.counts["resurrected"] == 1


def test_a_product_whose_last_operation_went_unanswered_may_be_either_way():
    unsure = Expected(1, "Lamp", 10.0, [], deleted=True, certain=False)
    assert check_creations([Creation("k1", 1)], {1: unsure}, [row(1, "k1")]).violations == []
    assert check_creations([Creation("k1", 1)], {1: unsure}, []).violations == []
    changed = Expected(1, "Renamed", 10.0, [], certain=False)
    assert check_states({1: changed}, [row(1, "k1", name="Lamp")]).violations == []


def test_an_answered_change_the_database_does_not_hold_is_a_lost_update():
    seen = {1: Expected(1, "Renamed", 12.5, [B])}
    assert check_states(seen, [row(1, "k", entry(B), name="Renamed", price=12.5)]).violations == []
    lost = check_states(seen, [row(1, "k", entry(A), name="Lamp", price=12.5)])
    assert lost.counts["lost_updates"] == 1


def test_terminal_products_pass_and_a_pending_one_or_a_wrong_status_column_does_not():
    rows = [row(1, "k", entry(A), entry(B, "failed")), row(2, "l")]
    verdict = check_terminal(rows)
    assert verdict.violations == []
    assert verdict.counts["status_partial"] == 1
    assert verdict.counts["status_done"] == 1
    pending = check_terminal([row(1, "k", entry(A, "pending"))])
    assert pending.counts["pending"] == 1
    wrong = check_terminal([row(1, "k", entry(A), status="pending")])
    assert "is marked pending" in wrong.violations[0]
    no_reason = check_terminal([row(1, "k", entry(A, "failed", error=None))])
    assert "without reason" in no_reason.violations[0]


def test_storage_must_hold_exactly_the_referenced_objects():
    assert check_storage({"a", "b"}, {"a", "b"}).violations == []
    verdict = check_storage({"a", "c"}, {"a", "b"})
    assert (verdict.counts["leaks"], verdict.counts["missing_objects"]) == (1, 1)


def test_every_reader_must_serve_the_database_bytes_and_nothing_for_deleted_products():
    database = {1: b'{"product_id":"1"}'}
    fine = [
        Served("redis", {1: None, 2: None}),  # nothing cached: the next read fills it
        Served("api-0", {1: database[1], 2: None}),
    ]
    assert check_served(database, [2], fine).violations == []
    stale = check_served(database, [2], [Served("api-1", {1: b'{"old"}', 2: b"{}"})])
    assert stale.counts["stale_reads"] == 2
    missing = check_served(database, [], [Served("api-1", {1: None})])
    assert "as missing" in missing.violations[0]


def test_a_dead_letter_is_accounted_for_by_its_entries_marked_failed_and_not_while_pending():
    letter = Letter(1, 2, (A,), "http_status")
    marked = entry(A, "failed", revision=2, error="dead_lettered: HTTP 503 (after 4 attempts)")
    assert check_dead_letters([letter], {1: row(1, "k", marked)}).violations == []
    assert check_dead_letters([letter], {}).counts["letters_product_gone"] == 1
    newer = {1: row(1, "k", entry(A, "pending", revision=3))}
    assert check_dead_letters([letter], newer).counts["letters_superseded"] == 1
    pending = check_dead_letters([letter], {1: row(1, "k", entry(A, "pending", revision=2))})
    assert "not accounted for" in pending.violations[0]


def test_a_replayed_dead_letter_must_leave_its_entries_ready_or_failed_for_a_reason_of_their_own():
    letter = Letter(1, 2, (A, B), "http_status")
    done = row(1, "k", entry(A, revision=2), entry(B, "failed", revision=2))
    verdict = check_replayed([letter], {1: done})
    assert verdict.violations == []
    assert verdict.counts["replayed_ready"] == 1
    still = row(1, "k", entry(A, "failed", revision=2, error="dead_lettered: x"))
    assert check_replayed([letter], {1: still}).violations


def test_only_a_503_while_postgresql_was_down_is_an_allowed_server_error():
    down = [(10.0, 20.0)]
    answers = [Answer(12.0, "get", 503), Answer(25.0, "get", 503), Answer(5.0, "create", 500)]
    verdict = check_server_errors(answers, down, slack_s=2.0)
    assert verdict.counts["503_while_postgres_down"] == 1
    assert verdict.counts["server_errors"] == 2
    assert check_server_errors([Answer(21.0, "get", 503)], down, slack_s=2.0).violations == []


def test_every_process_must_run_at_the_end_and_none_may_have_died_on_its_own():
    assert check_processes({"api-0": True, "worker-0": True}, []).violations == []
    verdict = check_processes({"api-0": False}, ["worker-1 (pid 9) exited with 1"])
    assert len(verdict.violations) == 2
