"""The push engine: catalogue, campaigns, decisions, delivery, and the measurement of what they earned."""
