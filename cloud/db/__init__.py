"""Database access: migrations and the SQL the services run."""
