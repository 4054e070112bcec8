"""PostgreSQL access: the pool, the schema migrations and one query module per table."""
