"""Storage adapters: `sql.SqlStore` (SQLite, PostgreSQL). Import the submodule you use."""
