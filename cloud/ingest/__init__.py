"""MQTT -> PostgreSQL ingest: validate, dedupe by (vehicle_id, seq), store, acknowledge after commit."""
