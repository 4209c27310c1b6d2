"""Event stores: JSON Lines, SQLite (embedded default), PostgreSQL (clusters)."""
