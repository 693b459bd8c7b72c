-- The W3C traceparent of the work that wrote a row (catalogue/tracing.py): an outbox message
-- carries it to Kafka as a header, a webhook delivery keeps its event's, so every log line of
-- one product's work, API, worker and dispatcher, carries one trace id.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN traceparent TEXT;
