"""tchap-stats: Tchap's daily usage exports → DuckDB staging → partitioned PostgreSQL."""

__version__ = "0.1.0"
