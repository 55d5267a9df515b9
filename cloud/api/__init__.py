"""The HTTP API for R&D and marketing teams."""
