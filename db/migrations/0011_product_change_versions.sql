-- The change feed's notification carries the committed version too, `<id>:<version>` (a
-- deletion: the tombstone's, 2^62), so each API process knows the newest version of a product
-- before its writer answers, and reads from PostgreSQL a product whose value in Redis is older
-- (server/version_floors.py). server/change_feed.py still reads a bare `<id>` as before.
CREATE OR REPLACE FUNCTION product_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('product_changes', OLD.id || ':4611686018427387904');
    ELSE
        PERFORM pg_notify('product_changes', NEW.id || ':' || NEW.version);
    END IF;
    RETURN NULL;
END
$$;
