"""The numbered migration files and how the migrator reads them (no database needed)."""

from __future__ import annotations

from db.migrate import NO_TRANSACTION, Migration, discover


def test_statements_end_at_semicolons_closing_a_line_and_keep_no_comment_only_parts():
    migration = Migration(
        9,
        "example",
        f"{NO_TRANSACTION}\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS a; -- trailing note\n"
        "CREATE INDEX CONCURRENTLY a\n    ON t (x);\n-- the end\n",
    )
    assert not migration.in_transaction
    assert migration.statements() == [
        f"{NO_TRANSACTION}\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS a",
        "CREATE INDEX CONCURRENTLY a\n    ON t (x)",
    ]


def test_a_file_without_the_marker_runs_in_one_transaction():
    assert Migration(1, "x", "-- plain\nCREATE TABLE t (x int);").in_transaction


def test_the_list_index_is_built_concurrently_and_the_old_one_is_left_for_a_rolling_deploy():
    migration = next(m for m in discover() if m.name == "list_order_index")
    assert not migration.in_transaction
    statements = [" ".join(s.split("\n")[-1].split()) for s in migration.statements()]
    assert statements == [
        "DROP INDEX CONCURRENTLY IF EXISTS products_user_newest_idx",
        "CREATE INDEX CONCURRENTLY products_user_newest_idx ON products (user_id, (-id))",
    ]


def test_only_the_exact_marker_line_takes_a_file_out_of_its_transaction():
    assert Migration(
        1, "x", f"{NO_TRANSACTION}  \nCREATE INDEX CONCURRENTLY a ON t (x);"
    ).statements()
    assert not Migration(1, "x", f"{NO_TRANSACTION}  \nSELECT 1;").in_transaction
    assert Migration(1, "x", f"{NO_TRANSACTION}al\nSELECT 1;").in_transaction
    assert Migration(1, "x", f"SELECT 1;\n{NO_TRANSACTION}\n").in_transaction


def test_every_no_transaction_migration_creates_and_drops_indexes_concurrently():
    for migration in discover():
        if migration.in_transaction:
            continue
        for statement in migration.statements():
            code = " ".join(line.split("--", 1)[0] for line in statement.splitlines()).upper()
            if "INDEX" in code:
                assert "CONCURRENTLY" in code, statement
