"""SQLite storage: schema, migrations and the repository."""
