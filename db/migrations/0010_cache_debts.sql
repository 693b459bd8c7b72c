-- Products whose cached copy in Redis may be older than their row. Every change or deletion of
-- a product records one in its own transaction, so the debt commits with the write: a writer
-- SIGKILLed between its commit and its cache refresh (or one whose Redis stayed away through
-- its retries) leaves the debt here, not an old value served until the cache's TTL; the
-- 10-minute soak (seeds 202, 404) found deleted products still served that way. The writer
-- clears it once Redis holds the new version; otherwise any API or worker process repairs it
-- from the row (catalogue/cache_repair.py).
--
-- Inserts owe nothing: before its row exists a product can only be cached as a 404, which
-- lives CACHE_NEGATIVE_TTL_SECONDS (seconds), about as long as a repair would take.
CREATE TABLE cache_debts (
    product_id BIGINT PRIMARY KEY,
    -- The version the cache must hold at least; a deletion owes the tombstone's (2^62,
    -- catalogue.cache.TOMBSTONE_VERSION), above every row version.
    version BIGINT NOT NULL,
    owed_since TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION product_cache_debt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cache_debts (product_id, version)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
            CASE WHEN TG_OP = 'DELETE' THEN 4611686018427387904 ELSE NEW.version END)
    ON CONFLICT (product_id) DO UPDATE
        SET version = GREATEST(cache_debts.version, EXCLUDED.version), owed_since = now();
    RETURN NULL;
END
$$;
CREATE TRIGGER product_cache_debt AFTER UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION product_cache_debt();
