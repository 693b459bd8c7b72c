"""The webhook dispatcher (`run_workers.py --role webhooks`): product events from Kafka become
deliveries in PostgreSQL (fanout), which are signed and sent to their endpoints, retried over
hours, and recorded attempt by attempt (dispatcher, delivery). Apart from the image workers, so
that a slow or dead endpoint never delays an image; it imports neither the API nor the worker.
"""
