"""The image worker: consumes image jobs from Kafka, downloads, compresses (in a process pool)
and stores each product's images, then records the result (compressor.supervisor wires it)."""
