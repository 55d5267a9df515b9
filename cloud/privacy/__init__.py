"""Privacy: the audit log; consent per person, export and erasure."""
