-- Users, products, and the outbox of image jobs.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username    TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 255),
    email       TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TYPE processing_status AS ENUM ('pending', 'done', 'partial', 'failed');

CREATE TABLE products (
    id                          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                     BIGINT NOT NULL REFERENCES users (id),
    product_name                TEXT NOT NULL CHECK (length(product_name) BETWEEN 1 AND 255),
    product_description         TEXT NOT NULL DEFAULT '',
    product_images              TEXT[] NOT NULL DEFAULT '{}',
    compressed_product_images   TEXT[] NOT NULL DEFAULT '{}',
    product_price               NUMERIC(12, 2) NOT NULL CHECK (product_price >= 0),
    processing_status           processing_status NOT NULL DEFAULT 'pending',
    -- [{"image": url, "error": text}] for the images that failed permanently.
    processing_errors           JSONB NOT NULL DEFAULT '[]',
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The list query filters by user and pages newest first by id (the keyset cursor).
CREATE INDEX products_user_id_idx ON products (user_id, id DESC);
CREATE INDEX products_user_price_idx ON products (user_id, product_price);
-- Case-insensitive substring search on names (ILIKE '%…%').
CREATE INDEX products_name_trgm_idx ON products USING gin (product_name gin_trgm_ops);

-- Transactional outbox: a product and its image job commit together; the API's relay publishes
-- rows to Kafka and deletes them once Kafka has acknowledged.
CREATE TABLE outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic       TEXT NOT NULL,
    key         TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Wakes the relays at commit time, so a job reaches Kafka within milliseconds.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
-- Per row, so a statement that inserts nothing stays silent; PostgreSQL folds the identical
-- notifications of one transaction into one.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_notify();
