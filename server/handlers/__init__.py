"""Request handlers: thin, they parse input, call a service (server/product_reads.py,
server/product_writes.py) or a query of db/, and answer."""
