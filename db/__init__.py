"""PostgreSQL access: migrations, the connection pool and one query module per table."""
