-- Per-image state (catalogue/image_state.py): one JSON entry per source, in source order,
-- {"source", "status", "url", "key", "error", "revision"}; `images_revision` counts the image
-- jobs queued for the product (a job's results land only on entries pending at its revision);
-- `version` counts every change of the row, so writers of the cache can tell newer from older.
ALTER TABLE products
    ADD COLUMN images JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN images_revision INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- Existing products: a source that failed is named in processing_errors; the others, when the
-- product is processed, got the compressed URLs in order; while pending, none did.
UPDATE products p
   SET images = coalesce((
       SELECT jsonb_agg(
                  jsonb_build_object(
                      'source', s.source,
                      'status', CASE WHEN p.processing_status = 'pending' THEN 'pending'
                                     WHEN s.error IS NOT NULL THEN 'failed'
                                     ELSE 'ready' END,
                      'url', s.url,
                      'key', substring(s.url FROM '(products/[0-9]+/[0-9a-f]{64}\.[a-z]+)$'),
                      'error', s.error,
                      'revision', 1)
                  ORDER BY s.position)
         FROM (
             SELECT src.source, src.position, err.error,
                    CASE WHEN p.processing_status <> 'pending' AND err.error IS NULL
                         THEN p.compressed_product_images[
                                  count(*) FILTER (WHERE err.error IS NULL)
                                      OVER (ORDER BY src.position)]
                    END AS url
               FROM unnest(p.product_images) WITH ORDINALITY AS src (source, position)
               LEFT JOIN LATERAL (
                   SELECT e ->> 'error' AS error
                     FROM jsonb_array_elements(p.processing_errors) AS e
                    WHERE e ->> 'image' = src.source
                    LIMIT 1
               ) err ON true
         ) s
   ), '[]');

-- compressed_product_images and processing_errors are derived from `images` from now on and
-- no longer written; API processes of the previous release, still serving during a rolling
-- deployment, read them. Dropping them is the next release's migration.
ALTER TABLE products
    ALTER COLUMN compressed_product_images SET DEFAULT '{}',
    ALTER COLUMN processing_errors SET DEFAULT '[]';
