-- Every committed change of a product row notifies the API processes (server/change_feed.py),
-- which drop their in-process copy of it. Redis pub/sub carries the same news from the cache's
-- writers, but only when Redis takes the write: a writer that cannot reach Redis (frozen,
-- restarting) still commits here, and this notification, sent by PostgreSQL at commit, is what
-- keeps the other processes from serving the state from before it (the soak found exactly that).
CREATE FUNCTION product_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('product_changes', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    RETURN NULL;
END
$$;
-- Per row: the payload is the product id; PostgreSQL folds one transaction's identical
-- notifications into one.
CREATE TRIGGER product_changes_notify AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION product_changes_notify();
