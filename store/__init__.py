"""The store: schema, migrations and small repository functions over SQLite or PostgreSQL."""
