"""Service reminders: due by mileage, by time and by severe fault codes (cloud/service/README.md)."""
