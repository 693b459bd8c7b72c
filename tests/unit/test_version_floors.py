"""The versions PostgreSQL announced at commit keep a value Redis holds from before a write from
being served (the soak, seed 202: a rename read back undone just after a frozen Redis resumed,
its writer having given up on Redis)."""

from __future__ import annotations

from catalogue.cache import TOMBSTONE_VERSION
from server.change_feed import parse_change
from server.version_floors import VersionFloors


def test_a_cached_version_below_the_committed_one_is_stale_until_one_reaches_it():
    floors = VersionFloors()
    floors.raise_to(7, 3)
    assert floors.stale(7, 2)
    assert floors.stale(7, 2)  # still: nobody replaced it yet
    assert not floors.stale(7, 3)
    assert len(floors) == 0  # reached: the floor is gone
    assert not floors.stale(7, 1)  # and no longer judged (the repair loop's debt remains)


def test_a_floor_only_rises_and_a_deletion_makes_every_cached_value_stale():
    floors = VersionFloors()
    floors.raise_to(7, 5)
    floors.raise_to(7, 4)  # a notification of an older commit, arriving late
    assert floors.stale(7, 4)
    floors.raise_to(7, TOMBSTONE_VERSION)
    assert floors.stale(7, 1_000_000)
    assert not floors.stale(7, TOMBSTONE_VERSION)


def test_storing_the_version_drops_the_floor_and_the_oldest_go_first_beyond_the_bound():
    floors = VersionFloors(max_items=2)
    floors.raise_to(1, 2)
    floors.stored(1, 1)  # an older version stored: the floor stays
    assert floors.stale(1, 1)
    floors.stored(1, 2)
    assert len(floors) == 0

    floors.raise_to(1, 2)
    floors.raise_to(2, 2)
    floors.raise_to(1, 3)  # raised again: the newest now
    floors.raise_to(3, 2)
    assert not floors.stale(2, 1)  # the oldest went
    assert floors.stale(1, 2)
    assert floors.stale(3, 1)


def test_a_change_notification_names_the_product_and_its_version():
    assert parse_change("42:7") == (42, 7)
    assert parse_change(f"42:{TOMBSTONE_VERSION}") == (42, TOMBSTONE_VERSION)
    assert parse_change("42") == (42, None)  # as sent before migration 0011
    for bad in ("", ":", "x:1", "42:x", "42:-1", None, 42):
        assert parse_change(bad) is None
