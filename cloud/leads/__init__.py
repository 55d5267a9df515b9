"""Dealer leads: capture, cleaning, duplicates, rating, routing to dealers, follow-up and dealer KPIs."""
